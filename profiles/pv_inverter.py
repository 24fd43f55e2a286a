"""PV inverter profile: IEEE 1547 / Rule 21 functions (power limit, fixed
power factor, volt-var, frequency-watt, ramp rate, connect / cease to
energise) and production measurements. p is negative while producing."""
from ..core.compat import const
from .common import ELECTRICAL

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_NONE = const(0)
_ANALOG = const(1)
_BINARY = const(2)
_ENUM = const(3)
_COUNTER = const(4)
_CURVE = const(7)
_R = const(1)
_RW = const(3)
_X = const(4)
_M = const(1)
_O = const(0)

SERVICE = const(0x11)  # core.services.PV_INVERTER, copied: a board imports no services
NAME = "pv_inverter"
VERSION = (1, 0)

# state
OFF = 0          # disconnected or ceased to energise
SLEEPING = 1     # not enough sun
STARTING = 2
PRODUCING = 3    # at the maximum power point
THROTTLED = 4    # held below the available power by a limit or curve
FAULT = 5

# q_mode
Q_NONE = 0
Q_FIXED_PF = 1
Q_VOLT_VAR = 2
Q_FIXED_VAR = 3

OBJECTS = ELECTRICAL + (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (6, "power_limit_pct", _ANALOG, "%", _RW, _M, 0, 100, -1),
    (7, "connect", _BINARY, "", _RW, _M, None, None, 0),
    (8, "state", _ENUM, "", _R, _M, 0, 5, 0),
    (9, "energy_out", _COUNTER, "Wh", _R, _M, 0, None, 0),
    (10, "available_power", _ANALOG, "W", _R, _O, 0, 1e7, 0),
    (11, "dc_power", _ANALOG, "W", _R, _O, 0, 1e7, 0),
    (12, "irradiance", _ANALOG, "W/m2", _R, _O, 0, 1500, 0),
    (13, "power_limit", _ANALOG, "W", _RW, _O, 0, 1e7, 0),
    (14, "power_factor", _ANALOG, "1", _RW, _O, -1, 1, -3),
    (15, "q_mode", _ENUM, "", _RW, _O, 0, 3, 0),
    (16, "q_setpoint", _ANALOG, "var", _RW, _O, -1e7, 1e7, 0),
    (17, "volt_var", _CURVE, "1", _RW, _O, -2, 2, -3),
    (18, "freq_watt", _CURVE, "1", _RW, _O, 0, 2, -4),
    (19, "freq_watt_enabled", _BINARY, "", _RW, _O, None, None, 0),
    (20, "ramp_rate", _ANALOG, "%/s", _RW, _O, 0.01, 100, -2),
    (21, "cease_to_energise", _NONE, "", _X, _M, None, None, 0),
    (22, "energy_in", _COUNTER, "Wh", _R, _O, 0, None, 0),
    (23, "temperature", _ANALOG, "Cel", _R, _O, -40, 120, -1),
    (24, "rated_power", _ANALOG, "W", _R, _M, 0, 1e7, 0),
    (25, "dc_voltage", _ANALOG, "V", _R, _O, 0, 1500, -1),
)
