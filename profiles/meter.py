"""Meter profile: import / export energy, per-phase P, Q, V, I, power
factor, active tariff and alarm at the site's connection point. The
electrical rows hold the totals (v: mean phase voltage, i: largest phase)."""
from ..core.compat import const
from .common import ELECTRICAL

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_BINARY = const(2)
_ENUM = const(3)
_COUNTER = const(4)
_TEXT = const(8)
_ALARM = const(9)
_R = const(1)
_RW = const(3)
_M = const(1)
_O = const(0)

SERVICE = const(0x14)  # core.services.METER, copied: a board imports no services
NAME = "meter"
VERSION = (1, 0)

OBJECTS = ELECTRICAL + (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (6, "energy_import", _COUNTER, "Wh", _R, _M, 0, None, 0),
    (7, "energy_export", _COUNTER, "Wh", _R, _M, 0, None, 0),
    (8, "p_l1", _ANALOG, "W", _R, _O, -1e7, 1e7, 0),
    (9, "p_l2", _ANALOG, "W", _R, _O, -1e7, 1e7, 0),
    (10, "p_l3", _ANALOG, "W", _R, _O, -1e7, 1e7, 0),
    (11, "q_l1", _ANALOG, "var", _R, _O, -1e7, 1e7, 0),
    (12, "q_l2", _ANALOG, "var", _R, _O, -1e7, 1e7, 0),
    (13, "q_l3", _ANALOG, "var", _R, _O, -1e7, 1e7, 0),
    (14, "v_l1", _ANALOG, "V", _R, _O, 0, 1000, -1),
    (15, "v_l2", _ANALOG, "V", _R, _O, 0, 1000, -1),
    (16, "v_l3", _ANALOG, "V", _R, _O, 0, 1000, -1),
    (17, "i_l1", _ANALOG, "A", _R, _O, -1000, 1000, -2),
    (18, "i_l2", _ANALOG, "A", _R, _O, -1000, 1000, -2),
    (19, "i_l3", _ANALOG, "A", _R, _O, -1000, 1000, -2),
    (20, "power_factor", _ANALOG, "1", _R, _O, -1, 1, -3),
    (21, "tariff", _ENUM, "", _R, _O, 1, 8, 0),      # active tariff register
    (22, "alarm", _ALARM, "", _R, _O, None, None, 0),
    (23, "supply", _BINARY, "", _RW, _O, None, None, 0),  # breaker: connect / disconnect
    (24, "tariff_name", _TEXT, "", _R, _O, None, 16, 0),
    (25, "demand", _ANALOG, "W", _R, _O, -1e7, 1e7, 0),  # mean power of the last 15 min
)
