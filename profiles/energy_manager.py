"""Energy manager profile (home / building EMS, the hybrid-control hub):
the resources behind it summed up, their flexibility, and the site-level
commands it turns into device commands (import / export limits, a
proportional reduction, an operating mode). Electrical rows are the site's
connection point."""
from ..core.compat import const
from .common import ELECTRICAL

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_ENUM = const(3)
_COUNTER = const(4)
_SCHEDULE = const(6)
_R = const(1)
_RW = const(3)
_M = const(1)
_O = const(0)

SERVICE = const(0x16)  # core.services.ENERGY_MANAGER, copied: a board imports no services
NAME = "energy_manager"
VERSION = (1, 0)

# mode
SELF_CONSUMPTION = 0
COST = 1          # follow the price signal
GRID_SUPPORT = 2  # follow grid / demand-response signals
MANUAL = 3        # pass commands only, no own optimisation

OBJECTS = ELECTRICAL + (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (6, "resources", _ANALOG, "1", _R, _M, 0, 10000, 0),
    (7, "consumption", _ANALOG, "W", _R, _M, 0, 1e7, 0),
    (8, "production", _ANALOG, "W", _R, _M, 0, 1e7, 0),
    (9, "deferrable_power", _ANALOG, "W", _R, _M, 0, 1e7, 0),
    (10, "deferrable_energy", _ANALOG, "Wh", _R, _M, 0, 1e8, 0),
    (11, "import_limit", _ANALOG, "W", _RW, _M, 0, 1e7, 0),
    (12, "export_limit", _ANALOG, "W", _RW, _O, 0, 1e7, 0),
    (13, "reduction", _ANALOG, "%", _RW, _O, 0, 100, -1),
    (14, "mode", _ENUM, "", _RW, _O, 0, 3, 0),
    (15, "energy_import", _COUNTER, "Wh", _R, _M, 0, None, 0),
    (16, "energy_export", _COUNTER, "Wh", _R, _M, 0, None, 0),
    (17, "boost_power", _ANALOG, "W", _R, _O, 0, 1e7, 0),
    (18, "storage_soc", _ANALOG, "%", _R, _O, 0, 100, -1),
    (19, "storage_energy", _ANALOG, "Wh", _R, _O, 0, 1e8, 0),
    (20, "net_forecast", _SCHEDULE, "W", _R, _O, -1e7, 1e7, 0),
)
