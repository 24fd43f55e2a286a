"""Heat pump profile: SG-Ready state, flow and hot-water set-points and
temperatures, power adjustment, pause and start-time adjustment."""
from ..core.model import ANALOG, ENUM, COUNTER, R, RW, X, M, O
from ..core.services import HEAT_PUMP
from .common import ELECTRICAL

SERVICE = HEAT_PUMP
NAME = "heat_pump"
VERSION = (1, 0)

# SG-Ready operating states
SG_BLOCKED = 1      # utility block: compressor off
SG_NORMAL = 2
SG_RECOMMENDED = 3  # increased operation recommended
SG_FORCED = 4       # forced on

OBJECTS = ELECTRICAL + (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (6, "sg_ready", ENUM, "", RW, M, 1, 4, 0),
    (7, "flow_setpoint", ANALOG, "Cel", RW, M, 20, 70, -1),
    (8, "flow_temp", ANALOG, "Cel", R, M, -20, 95, -1),
    (9, "dhw_setpoint", ANALOG, "Cel", RW, O, 35, 65, -1),
    (10, "dhw_temp", ANALOG, "Cel", R, O, 0, 95, -1),
    (11, "outdoor_temp", ANALOG, "Cel", R, M, -50, 60, -1),
    (12, "room_temp", ANALOG, "Cel", R, O, -10, 50, -1),
    (13, "room_setpoint", ANALOG, "Cel", RW, O, 10, 30, -1),
    (14, "compressor_power", ANALOG, "W", R, O, 0, 30000, 0),
    (15, "thermal_power", ANALOG, "W", R, O, 0, 100000, 0),
    (16, "cop", ANALOG, "1", R, O, 0, 10, -2),
    (17, "power_limit", ANALOG, "W", RW, O, 0, 30000, 0),
    (18, "pause", ANALOG, "s", X, O, 0, 86400, 0),
    (19, "start_delay", ANALOG, "s", X, O, 0, 86400, 0),
    (20, "deferrable_energy", ANALOG, "Wh", R, O, 0, 100000, 0),
    (21, "energy_in", COUNTER, "Wh", R, M, 0, None, 0),
    (22, "heat_out", COUNTER, "Wh", R, O, 0, None, 0),
    (23, "state", ENUM, "", R, M, 0, 6, 0),
)
