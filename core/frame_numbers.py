"""The SPOT frame's numbers by name (core/frame.py): protocol version, header size, the
default largest frame and the operations, for code that names them (the bridge, tests,
firmware): `F.RESULT` and `from spot.core.frame import RESULT` read them here.

core/frame.py and the device-side modules use private copies (`_RESULT = const(8)`,
checked by tests/test_mp_private_constants.py), folded into their code by mpy-cross, so
a board imports this module only when something asks core.frame for a number by name.
"""
from .compat import const

VERSION = const(1)
HEADER_SIZE = const(4)
MAX_FRAME = const(1024)  # default largest frame a node accepts

READ = const(1)
WRITE = const(2)
INVOKE = const(3)
SUBSCRIBE = const(4)
UNSUBSCRIBE = const(5)
NOTIFY = const(6)
ANNOUNCE = const(7)
RESULT = const(8)
ERROR = const(9)

OP_NAMES = ("", "READ", "WRITE", "INVOKE", "SUBSCRIBE", "UNSUBSCRIBE",
            "NOTIFY", "ANNOUNCE", "RESULT", "ERROR")

REQUESTS = (READ, WRITE, INVOKE, SUBSCRIBE, UNSUBSCRIBE)
