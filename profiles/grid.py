"""Grid profile (informational): the state of the grid the device is on,
an emergency flag, a demand-response level and the expected import
capacity. Commands that act on a device go through its own profile."""
from ..core.compat import const

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ENUM = const(3)
_BINARY = const(2)
_TIME = const(5)
_SCHEDULE = const(6)
_R = const(1)
_M = const(1)
_O = const(0)

SERVICE = const(0x07)  # core.services.GRID, copied: a board imports no services
NAME = "grid"
VERSION = (1, 0)

# grid_state values
NORMAL = 0
ALERT = 1       # stressed: avoid extra load / injection
EMERGENCY = 2   # shed what you can
CEASE = 3       # cease to energise: inverters stop injecting

OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "grid_state", _ENUM, "", _R, _M, 0, 3, 0),
    (2, "emergency", _BINARY, "", _R, _M, None, None, 0),
    (3, "dr_level", _ENUM, "", _R, _O, 0, 3, 0),       # OpenADR SIMPLE level
    (4, "state_until", _TIME, "s", _R, _O, None, None, 0),
    (5, "import_capacity_forecast", _SCHEDULE, "W", _R, _O, 0, 1e7, 0),
)
