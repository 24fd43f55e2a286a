"""Generator profile (CHP, diesel, fuel cell): P and Q set-points,
available capacity and overload capacity, status and start / stop.
Set-points and capacities count generation positive; p (load convention)
is negative while generating."""
from ..core.model import (NONE, ANALOG, ENUM, COUNTER, R, RW, X, M, O)
from ..core.services import GENERATOR
from .common import ELECTRICAL

SERVICE = GENERATOR
NAME = "generator"
VERSION = (1, 0)

# status
STOPPED = 0
STARTING = 1
SYNCHRONISING = 2
RUNNING = 3
STOPPING = 4
FAULT = 5
MAINTENANCE = 6

OBJECTS = ELECTRICAL + (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (6, "p_setpoint", ANALOG, "W", RW, M, 0, 1e7, 0),
    (7, "q_setpoint", ANALOG, "var", RW, O, -1e7, 1e7, 0),
    (8, "capacity", ANALOG, "W", R, M, 0, 1e7, 0),
    (9, "capacity_over_max", ANALOG, "W", R, O, 0, 1e7, 0),
    (10, "status", ENUM, "", R, M, 0, 6, 0),
    (11, "start", NONE, "", X, M, None, None, 0),
    (12, "stop", NONE, "", X, M, None, None, 0),
    (13, "energy_out", COUNTER, "Wh", R, M, 0, None, 0),
    (14, "reserve", ANALOG, "W", R, O, 0, 1e7, 0),
    (15, "ramp_rate", ANALOG, "%/s", RW, O, 0.01, 100, -2),
    (16, "min_power", ANALOG, "W", R, O, 0, 1e7, 0),
    (17, "fuel_level", ANALOG, "%", R, O, 0, 100, -1),
    (18, "temperature", ANALOG, "Cel", R, O, -40, 200, -1),
    (19, "run_time", COUNTER, "s", R, O, 0, None, 0),
    (20, "rated_power", ANALOG, "W", R, M, 0, 1e7, 0),
)
