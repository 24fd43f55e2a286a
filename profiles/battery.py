"""Battery (stationary storage) profile: state of charge, capacity and
health, charge / discharge limits, a power set-point (+ charge,
- discharge, as p) and an operating mode."""
from ..core.compat import const
from .common import ELECTRICAL

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_ENUM = const(3)
_COUNTER = const(4)
_R = const(1)
_RW = const(3)
_M = const(1)
_O = const(0)

SERVICE = const(0x12)  # core.services.BATTERY, copied: a board imports no services
NAME = "battery"
VERSION = (1, 0)

# mode
IDLE = 0
CHARGE = 1       # charge at charge_limit
DISCHARGE = 2    # discharge at discharge_limit
BALANCE = 3      # self-consumption: absorb spare PV, cover the site's load
SETPOINT = 4     # follow power_setpoint

# state
ST_IDLE = 0
ST_CHARGING = 1
ST_DISCHARGING = 2
ST_FULL = 3
ST_EMPTY = 4
ST_FAULT = 5

OBJECTS = ELECTRICAL + (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (6, "soc", _ANALOG, "%", _R, _M, 0, 100, -1),
    (7, "power_setpoint", _ANALOG, "W", _RW, _M, -1e7, 1e7, 0),
    (8, "mode", _ENUM, "", _RW, _M, 0, 4, 0),
    (9, "capacity", _ANALOG, "Wh", _R, _M, 0, 1e8, 0),
    (10, "charge_limit", _ANALOG, "W", _RW, _M, 0, 1e7, 0),
    (11, "discharge_limit", _ANALOG, "W", _RW, _M, 0, 1e7, 0),
    (12, "state", _ENUM, "", _R, _M, 0, 5, 0),
    (13, "temperature", _ANALOG, "Cel", _R, _O, -40, 100, -1),
    (14, "soh", _ANALOG, "%", _R, _O, 0, 100, -1),
    (15, "energy_in", _COUNTER, "Wh", _R, _M, 0, None, 0),
    (16, "energy_out", _COUNTER, "Wh", _R, _M, 0, None, 0),
    (17, "cycles", _COUNTER, "1", _R, _O, 0, None, 0),
    (18, "soc_min", _ANALOG, "%", _RW, _O, 0, 100, -1),
    (19, "soc_max", _ANALOG, "%", _RW, _O, 0, 100, -1),
    (20, "q_setpoint", _ANALOG, "var", _RW, _O, -1e7, 1e7, 0),
    (21, "max_charge_power", _ANALOG, "W", _R, _O, 0, 1e7, 0),
    (22, "max_discharge_power", _ANALOG, "W", _R, _O, 0, 1e7, 0),
    (23, "stored_energy", _ANALOG, "Wh", _R, _O, 0, 1e8, 0),
    (24, "nominal_capacity", _ANALOG, "Wh", _R, _O, 0, 1e8, 0),
)
