"""SPOT's error codes by name (core/errors.py), for code that names them (the bridge,
tests, firmware): `errors.MALFORMED` and `from spot.core.errors import MALFORMED` read
them here.

core/errors.py and the device-side modules use private copies (`_MALFORMED = const(9)`,
checked by tests/test_mp_private_constants.py), folded into their code by mpy-cross, so
a board imports this module only when something asks core.errors for a code by name.
"""
from .compat import const

UNKNOWN_SERVICE = const(1)  # the node does not serve this service
UNKNOWN_OBJECT = const(2)   # no such object (or subscription, or plan) in the service
READ_ONLY = const(3)        # the object does not allow this operation (access)
OUT_OF_RANGE = const(4)     # value outside the object's range or limits
WRONG_TYPE = const(5)       # value of the wrong CBOR type or shape for the object
NOT_AUTHORISED = const(6)   # peer not paired, or its role may not do this
TOO_LARGE = const(7)        # frame or value larger than the node accepts
BUSY = const(8)             # no room now (subscriptions, plans, queue); retry later
MALFORMED = const(9)        # body is not valid CBOR or not the operation's shape
UNSUPPORTED = const(10)     # protocol version or operation not supported
