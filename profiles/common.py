"""Rows every device profile starts with: the electrical state at the
connection point (ids 1-5, the same in every profile)."""
from ..core.model import ANALOG, R, M, O

P = 1
Q = 2
V = 3
I = 4
HZ = 5

ELECTRICAL = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (P, "p", ANALOG, "W", R, M, -1e7, 1e7, 0),         # active power, + = consumption
    (Q, "q", ANALOG, "var", R, O, -1e7, 1e7, 0),       # reactive power
    (V, "v", ANALOG, "V", R, M, 0, 1000, -1),          # voltage (phase-neutral)
    (I, "i", ANALOG, "A", R, O, -1000, 1000, -2),      # current
    (HZ, "f", ANALOG, "Hz", R, O, 40, 70, -2),         # frequency
)
