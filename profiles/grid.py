"""Grid profile (informational): the state of the grid the device is on,
an emergency flag, a demand-response level and the expected import
capacity. Commands that act on a device go through its own profile."""
from ..core.model import ENUM, BINARY, TIME, SCHEDULE, R, M, O
from ..core.services import GRID

SERVICE = GRID
NAME = "grid"
VERSION = (1, 0)

# grid_state values
NORMAL = 0
ALERT = 1       # stressed: avoid extra load / injection
EMERGENCY = 2   # shed what you can
CEASE = 3       # cease to energise: inverters stop injecting

OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "grid_state", ENUM, "", R, M, 0, 3, 0),
    (2, "emergency", BINARY, "", R, M, None, None, 0),
    (3, "dr_level", ENUM, "", R, O, 0, 3, 0),       # OpenADR SIMPLE level
    (4, "state_until", TIME, "s", R, O, None, None, 0),
    (5, "import_capacity_forecast", SCHEDULE, "W", R, O, 0, 1e7, 0),
)
