"""SPOT error codes, carried in ERROR frames as [code] or [code, detail]."""
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

NAMES = {
    UNKNOWN_SERVICE: "unknown-service",
    UNKNOWN_OBJECT: "unknown-object",
    READ_ONLY: "read-only",
    OUT_OF_RANGE: "out-of-range",
    WRONG_TYPE: "wrong-type",
    NOT_AUTHORISED: "not-authorised",
    TOO_LARGE: "too-large",
    BUSY: "busy",
    MALFORMED: "malformed",
    UNSUPPORTED: "unsupported",
}


class SpotError(Exception):
    """A request that must be answered with ERROR(code, detail) and change nothing."""

    def __init__(self, code, detail=None):
        super().__init__(NAMES.get(code, "error"), detail)
        self.code = code
        self.detail = detail
