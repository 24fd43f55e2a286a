"""Heat pump profile: SG-Ready state, flow and hot-water set-points and
temperatures, power adjustment, pause and start-time adjustment."""
from ..core.compat import const
from .common import ELECTRICAL

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_ENUM = const(3)
_COUNTER = const(4)
_R = const(1)
_RW = const(3)
_X = const(4)
_M = const(1)
_O = const(0)

SERVICE = const(0x10)  # core.services.HEAT_PUMP, copied: a board imports no services
NAME = "heat_pump"
VERSION = (1, 0)

# SG-Ready operating states
SG_BLOCKED = 1      # utility block: compressor off
SG_NORMAL = 2
SG_RECOMMENDED = 3  # increased operation recommended
SG_FORCED = 4       # forced on

OBJECTS = ELECTRICAL + (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (6, "sg_ready", _ENUM, "", _RW, _M, 1, 4, 0),
    (7, "flow_setpoint", _ANALOG, "Cel", _RW, _M, 20, 70, -1),
    (8, "flow_temp", _ANALOG, "Cel", _R, _M, -20, 95, -1),
    (9, "dhw_setpoint", _ANALOG, "Cel", _RW, _O, 35, 65, -1),
    (10, "dhw_temp", _ANALOG, "Cel", _R, _O, 0, 95, -1),
    (11, "outdoor_temp", _ANALOG, "Cel", _R, _M, -50, 60, -1),
    (12, "room_temp", _ANALOG, "Cel", _R, _O, -10, 50, -1),
    (13, "room_setpoint", _ANALOG, "Cel", _RW, _O, 10, 30, -1),
    (14, "compressor_power", _ANALOG, "W", _R, _O, 0, 30000, 0),
    (15, "thermal_power", _ANALOG, "W", _R, _O, 0, 100000, 0),
    (16, "cop", _ANALOG, "1", _R, _O, 0, 10, -2),
    (17, "power_limit", _ANALOG, "W", _RW, _O, 0, 30000, 0),
    (18, "pause", _ANALOG, "s", _X, _O, 0, 86400, 0),
    (19, "start_delay", _ANALOG, "s", _X, _O, 0, 86400, 0),
    (20, "deferrable_energy", _ANALOG, "Wh", _R, _O, 0, 100000, 0),
    (21, "energy_in", _COUNTER, "Wh", _R, _M, 0, None, 0),
    (22, "heat_out", _COUNTER, "Wh", _R, _O, 0, None, 0),
    (23, "state", _ENUM, "", _R, _M, 0, 6, 0),
)
