"""Rows every device profile starts with: the electrical state at the
connection point (ids 1-5, the same in every profile)."""
from ..core.compat import const

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_R = const(1)
_M = const(1)
_O = const(0)

ELECTRICAL = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "p", _ANALOG, "W", _R, _M, -1e7, 1e7, 0),         # active power, + = consumption
    (2, "q", _ANALOG, "var", _R, _O, -1e7, 1e7, 0),       # reactive power
    (3, "v", _ANALOG, "V", _R, _M, 0, 1000, -1),          # voltage (phase-neutral)
    (4, "i", _ANALOG, "A", _R, _O, -1000, 1000, -2),      # current
    (5, "f", _ANALOG, "Hz", _R, _O, 40, 70, -2),          # frequency
)
