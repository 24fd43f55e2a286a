"""Battery (stationary storage) profile: state of charge, capacity and
health, charge / discharge limits, a power set-point (+ charge,
- discharge, as p) and an operating mode."""
from ..core.model import ANALOG, ENUM, COUNTER, R, RW, M, O
from ..core.services import BATTERY
from .common import ELECTRICAL

SERVICE = BATTERY
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
    (6, "soc", ANALOG, "%", R, M, 0, 100, -1),
    (7, "power_setpoint", ANALOG, "W", RW, M, -1e7, 1e7, 0),
    (8, "mode", ENUM, "", RW, M, 0, 4, 0),
    (9, "capacity", ANALOG, "Wh", R, M, 0, 1e8, 0),
    (10, "charge_limit", ANALOG, "W", RW, M, 0, 1e7, 0),
    (11, "discharge_limit", ANALOG, "W", RW, M, 0, 1e7, 0),
    (12, "state", ENUM, "", R, M, 0, 5, 0),
    (13, "temperature", ANALOG, "Cel", R, O, -40, 100, -1),
    (14, "soh", ANALOG, "%", R, O, 0, 100, -1),
    (15, "energy_in", COUNTER, "Wh", R, M, 0, None, 0),
    (16, "energy_out", COUNTER, "Wh", R, M, 0, None, 0),
    (17, "cycles", COUNTER, "1", R, O, 0, None, 0),
    (18, "soc_min", ANALOG, "%", RW, O, 0, 100, -1),
    (19, "soc_max", ANALOG, "%", RW, O, 0, 100, -1),
    (20, "q_setpoint", ANALOG, "var", RW, O, -1e7, 1e7, 0),
    (21, "max_charge_power", ANALOG, "W", R, O, 0, 1e7, 0),
    (22, "max_discharge_power", ANALOG, "W", R, O, 0, 1e7, 0),
    (23, "stored_energy", ANALOG, "Wh", R, O, 0, 1e8, 0),
    (24, "nominal_capacity", ANALOG, "Wh", R, O, 0, 1e8, 0),
)
