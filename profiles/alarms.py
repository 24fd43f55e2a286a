"""Alarms profile: the active alarm, an event count and acknowledgement.

An ALARM value is [time, code, severity, active]; codes below 0x100 are
common to all devices, 0x100-0xFFFF are profile or vendor specific."""
from ..core.compat import const

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_ENUM = const(3)
_COUNTER = const(4)
_ALARM = const(9)
_R = const(1)
_X = const(4)
_M = const(1)
_O = const(0)

SERVICE = const(0x03)  # core.services.ALARMS, copied: a board imports no services
NAME = "alarms"
VERSION = (1, 0)

# severities
INFO = 0
WARNING = 1
MAJOR = 2
CRITICAL = 3

# common alarm codes
NO_ID = 1           # no valid identification / pairing
NO_COMMS = 2        # no communication with the provider
OVER_TEMP = 3
GRID_FAULT = 4      # voltage or frequency outside the trip limits
HW_FAULT = 5
TAMPER = 6
OVERLOAD = 7
LOW_ENERGY = 8      # fuel, state of charge or supply running out

OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "active", _ALARM, "", _R, _M, None, None, 0),
    (2, "active_count", _ANALOG, "1", _R, _O, 0, 255, 0),
    (3, "event_count", _COUNTER, "1", _R, _M, 0, None, 0),
    (4, "acknowledge", _ENUM, "", _X, _M, 0, 0xFFFF, 0),  # alarm code, 0 = all
    (5, "last_event", _ALARM, "", _R, _O, None, None, 0),
)
