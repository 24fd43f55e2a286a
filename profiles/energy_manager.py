"""Energy manager profile (home / building EMS, the hybrid-control hub):
the resources behind it summed up, their flexibility, and the site-level
commands it turns into device commands (import / export limits, a
proportional reduction, an operating mode). Electrical rows are the site's
connection point."""
from ..core.model import ANALOG, ENUM, COUNTER, SCHEDULE, R, RW, M, O
from ..core.services import ENERGY_MANAGER
from .common import ELECTRICAL

SERVICE = ENERGY_MANAGER
NAME = "energy_manager"
VERSION = (1, 0)

# mode
SELF_CONSUMPTION = 0
COST = 1          # follow the price signal
GRID_SUPPORT = 2  # follow grid / demand-response signals
MANUAL = 3        # pass commands only, no own optimisation

OBJECTS = ELECTRICAL + (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (6, "resources", ANALOG, "1", R, M, 0, 10000, 0),
    (7, "consumption", ANALOG, "W", R, M, 0, 1e7, 0),
    (8, "production", ANALOG, "W", R, M, 0, 1e7, 0),
    (9, "deferrable_power", ANALOG, "W", R, M, 0, 1e7, 0),
    (10, "deferrable_energy", ANALOG, "Wh", R, M, 0, 1e8, 0),
    (11, "import_limit", ANALOG, "W", RW, M, 0, 1e7, 0),
    (12, "export_limit", ANALOG, "W", RW, O, 0, 1e7, 0),
    (13, "reduction", ANALOG, "%", RW, O, 0, 100, -1),
    (14, "mode", ENUM, "", RW, O, 0, 3, 0),
    (15, "energy_import", COUNTER, "Wh", R, M, 0, None, 0),
    (16, "energy_export", COUNTER, "Wh", R, M, 0, None, 0),
    (17, "boost_power", ANALOG, "W", R, O, 0, 1e7, 0),
    (18, "storage_soc", ANALOG, "%", R, O, 0, 100, -1),
    (19, "storage_energy", ANALOG, "Wh", R, O, 0, 1e8, 0),
    (20, "net_forecast", SCHEDULE, "W", R, O, -1e7, 1e7, 0),
)
