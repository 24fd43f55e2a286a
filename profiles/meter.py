"""Meter profile: import / export energy, per-phase P, Q, V, I, power
factor, active tariff and alarm at the site's connection point. The
electrical rows hold the totals (v: mean phase voltage, i: largest phase)."""
from ..core.model import ANALOG, BINARY, ENUM, COUNTER, TEXT, ALARM, R, RW, M, O
from ..core.services import METER
from .common import ELECTRICAL

SERVICE = METER
NAME = "meter"
VERSION = (1, 0)

OBJECTS = ELECTRICAL + (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (6, "energy_import", COUNTER, "Wh", R, M, 0, None, 0),
    (7, "energy_export", COUNTER, "Wh", R, M, 0, None, 0),
    (8, "p_l1", ANALOG, "W", R, O, -1e7, 1e7, 0),
    (9, "p_l2", ANALOG, "W", R, O, -1e7, 1e7, 0),
    (10, "p_l3", ANALOG, "W", R, O, -1e7, 1e7, 0),
    (11, "q_l1", ANALOG, "var", R, O, -1e7, 1e7, 0),
    (12, "q_l2", ANALOG, "var", R, O, -1e7, 1e7, 0),
    (13, "q_l3", ANALOG, "var", R, O, -1e7, 1e7, 0),
    (14, "v_l1", ANALOG, "V", R, O, 0, 1000, -1),
    (15, "v_l2", ANALOG, "V", R, O, 0, 1000, -1),
    (16, "v_l3", ANALOG, "V", R, O, 0, 1000, -1),
    (17, "i_l1", ANALOG, "A", R, O, -1000, 1000, -2),
    (18, "i_l2", ANALOG, "A", R, O, -1000, 1000, -2),
    (19, "i_l3", ANALOG, "A", R, O, -1000, 1000, -2),
    (20, "power_factor", ANALOG, "1", R, O, -1, 1, -3),
    (21, "tariff", ENUM, "", R, O, 1, 8, 0),      # active tariff register
    (22, "alarm", ALARM, "", R, O, None, None, 0),
    (23, "supply", BINARY, "", RW, O, None, None, 0),  # breaker: connect / disconnect
    (24, "tariff_name", TEXT, "", R, O, None, 16, 0),
    (25, "demand", ANALOG, "W", R, O, -1e7, 1e7, 0),  # mean power of the last 15 min
)
