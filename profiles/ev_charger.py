"""EV charger (EVSE) profile: session and plug state (IEC 61851 control
pilot A-F), current limits, enable, the driver's energy request and
departure time (ISO 15118), vehicle SoC and V2G capability. p and i of the
electrical rows are the charging power and the per-phase current."""
from ..core.compat import const
from .common import ELECTRICAL

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_BINARY = const(2)
_ENUM = const(3)
_COUNTER = const(4)
_TIME = const(5)
_R = const(1)
_RW = const(3)
_M = const(1)
_O = const(0)

SERVICE = const(0x13)  # core.services.EV_CHARGER, copied: a board imports no services
NAME = "ev_charger"
VERSION = (1, 0)

# session_state
NO_SESSION = 0
CONNECTED = 1        # plugged in, waiting (authorisation, schedule)
CHARGING = 2
SUSPENDED_EVSE = 3   # held at 0 by the charger (disabled, limit below minimum)
SUSPENDED_EV = 4     # the vehicle draws nothing
FINISHED = 5         # energy request met or vehicle full, still plugged in
SESSION_FAULT = 6

# plug_state: IEC 61851-1 control pilot states
PLUG_A = 0   # no vehicle
PLUG_B = 1   # vehicle connected, not ready
PLUG_C = 2   # vehicle ready / charging
PLUG_D = 3   # charging, ventilation required
PLUG_E = 4   # no power (short to earth, mains failure)
PLUG_F = 5   # EVSE error

OBJECTS = ELECTRICAL + (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (6, "session_state", _ENUM, "", _R, _M, 0, 6, 0),
    (7, "plug_state", _ENUM, "", _R, _M, 0, 5, 0),
    (8, "current_limit", _ANALOG, "A", _RW, _M, 0, 80, -1),
    (9, "enabled", _BINARY, "", _RW, _M, None, None, 0),
    (10, "session_energy", _ANALOG, "Wh", _R, _M, 0, 1e6, 0),
    (11, "min_current", _ANALOG, "A", _R, _M, 0, 80, -1),
    (12, "max_current", _ANALOG, "A", _R, _M, 0, 80, -1),
    (13, "energy_requested", _ANALOG, "Wh", _RW, _O, 0, 1e6, 0),
    (14, "departure_time", _TIME, "s", _RW, _O, None, None, 0),
    (15, "vehicle_soc", _ANALOG, "%", _R, _O, 0, 100, 0),
    (16, "v2g_capable", _BINARY, "", _R, _O, None, None, 0),
    (17, "energy_in", _COUNTER, "Wh", _R, _M, 0, None, 0),
    (18, "energy_out", _COUNTER, "Wh", _R, _O, 0, None, 0),
    (19, "phases", _ENUM, "", _R, _O, 1, 3, 0),
    (20, "power_setpoint", _ANALOG, "W", _RW, _O, -1e6, 1e6, 0),
    (21, "session_start", _TIME, "s", _R, _O, None, None, 0),
)
