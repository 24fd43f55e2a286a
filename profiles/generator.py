"""Generator profile (CHP, diesel, fuel cell): P and Q set-points,
available capacity and overload capacity, status and start / stop.
Set-points and capacities count generation positive; p (load convention)
is negative while generating."""
from ..core.compat import const
from .common import ELECTRICAL

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_NONE = const(0)
_ANALOG = const(1)
_ENUM = const(3)
_COUNTER = const(4)
_R = const(1)
_RW = const(3)
_X = const(4)
_M = const(1)
_O = const(0)

SERVICE = const(0x15)  # core.services.GENERATOR, copied: a board imports no services
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
    (6, "p_setpoint", _ANALOG, "W", _RW, _M, 0, 1e7, 0),
    (7, "q_setpoint", _ANALOG, "var", _RW, _O, -1e7, 1e7, 0),
    (8, "capacity", _ANALOG, "W", _R, _M, 0, 1e7, 0),
    (9, "capacity_over_max", _ANALOG, "W", _R, _O, 0, 1e7, 0),
    (10, "status", _ENUM, "", _R, _M, 0, 6, 0),
    (11, "start", _NONE, "", _X, _M, None, None, 0),
    (12, "stop", _NONE, "", _X, _M, None, None, 0),
    (13, "energy_out", _COUNTER, "Wh", _R, _M, 0, None, 0),
    (14, "reserve", _ANALOG, "W", _R, _O, 0, 1e7, 0),
    (15, "ramp_rate", _ANALOG, "%/s", _RW, _O, 0.01, 100, -2),
    (16, "min_power", _ANALOG, "W", _R, _O, 0, 1e7, 0),
    (17, "fuel_level", _ANALOG, "%", _R, _O, 0, 100, -1),
    (18, "temperature", _ANALOG, "Cel", _R, _O, -40, 200, -1),
    (19, "run_time", _COUNTER, "s", _R, _O, 0, None, 0),
    (20, "rated_power", _ANALOG, "W", _R, _M, 0, 1e7, 0),
)
