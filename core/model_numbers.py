"""The object model's numbers by name: value types, access rights, the mandatory flag,
limits, the fields of a profile row, and the types' names (core/model.py), for code
that names them (the bridge, tests, firmware): `model.ANALOG` and `from spot.core.model
import ANALOG` read them here.

core/model.py and the device-side modules use private copies (`_ANALOG = const(1)`,
checked by tests/test_mp_private_constants.py), folded into their code by mpy-cross, so
a board imports this module only when something asks core.model for a number by name.
"""
from .compat import const

# object types
NONE = const(0)      # no value: an INVOKE action without argument
ANALOG = const(1)    # number with unit; scaled integer or float on the wire
BINARY = const(2)    # true / false
ENUM = const(3)      # unsigned integer from lo to hi
COUNTER = const(4)   # unsigned, monotonic (energy, events); scaled integer
TIME = const(5)      # unsigned Unix seconds (UTC)
SCHEDULE = const(6)  # [start, step, [v0, v1, ...]]: slot i covers start+i*step
CURVE = const(7)     # [x0, y0, x1, y1, ...]: points of a piecewise-linear curve
TEXT = const(8)      # UTF-8 string of at most hi characters
ALARM = const(9)     # [time, code, severity, active]
PLAN = const(10)     # [id, start, expiry, primacy, {service: {object: value}}]
MAP = const(11)      # a CBOR map checked by the service itself (plan entries)

# the types' names, at their numbers
TYPE_NAMES = ("none", "analog", "binary", "enum", "counter", "time",
              "schedule", "curve", "text", "alarm", "plan", "map")

# access rights
R = const(1)
W = const(2)
X = const(4)  # INVOKE
RW = const(3)
RX = const(5)

M = const(1)  # mandatory
O = const(0)  # optional

MAX_SLOTS = const(192)  # schedule slots (two days of quarter hours)
MAX_POINTS = const(16)  # curve points

# row fields
ID = const(0)
NAME = const(1)
TYPE = const(2)
UNIT = const(3)
ACCESS = const(4)
MANDATORY = const(5)
LO = const(6)
HI = const(7)
SCALE = const(8)
