"""The plans service's numbers by name (core/plans.py): its objects and the highest
primacy, for code that names them (the bridge, tests, firmware): `plans.PUSH` and
`from spot.core.plans import CANCEL` read them here.

core/plans.py and core/node.py use private copies (`_PUSH = const(1)`, checked by
tests/test_mp_private_constants.py), folded into their code by mpy-cross, so a board
imports this module only when something asks core.plans for a number by name.
"""
from .compat import const

PUSH = const(1)
CANCEL = const(2)
DEFAULT = const(3)
ACTIVE = const(4)
LIST = const(6)
FALLBACK = const(7)

MAX_PRIMACY = const(255)
