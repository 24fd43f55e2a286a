"""PV inverter profile: IEEE 1547 / Rule 21 functions (power limit, fixed
power factor, volt-var, frequency-watt, ramp rate, connect / cease to
energise) and production measurements. p is negative while producing."""
from ..core.model import (NONE, ANALOG, BINARY, ENUM, COUNTER, CURVE,
                          R, RW, X, M, O)
from ..core.services import PV_INVERTER
from .common import ELECTRICAL

SERVICE = PV_INVERTER
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
    (6, "power_limit_pct", ANALOG, "%", RW, M, 0, 100, -1),
    (7, "connect", BINARY, "", RW, M, None, None, 0),
    (8, "state", ENUM, "", R, M, 0, 5, 0),
    (9, "energy_out", COUNTER, "Wh", R, M, 0, None, 0),
    (10, "available_power", ANALOG, "W", R, O, 0, 1e7, 0),
    (11, "dc_power", ANALOG, "W", R, O, 0, 1e7, 0),
    (12, "irradiance", ANALOG, "W/m2", R, O, 0, 1500, 0),
    (13, "power_limit", ANALOG, "W", RW, O, 0, 1e7, 0),
    (14, "power_factor", ANALOG, "1", RW, O, -1, 1, -3),
    (15, "q_mode", ENUM, "", RW, O, 0, 3, 0),
    (16, "q_setpoint", ANALOG, "var", RW, O, -1e7, 1e7, 0),
    (17, "volt_var", CURVE, "1", RW, O, -2, 2, -3),
    (18, "freq_watt", CURVE, "1", RW, O, 0, 2, -4),
    (19, "freq_watt_enabled", BINARY, "", RW, O, None, None, 0),
    (20, "ramp_rate", ANALOG, "%/s", RW, O, 0.01, 100, -2),
    (21, "cease_to_energise", NONE, "", X, M, None, None, 0),
    (22, "energy_in", COUNTER, "Wh", R, O, 0, None, 0),
    (23, "temperature", ANALOG, "Cel", R, O, -40, 120, -1),
    (24, "rated_power", ANALOG, "W", R, M, 0, 1e7, 0),
    (25, "dc_voltage", ANALOG, "V", R, O, 0, 1500, -1),
)
