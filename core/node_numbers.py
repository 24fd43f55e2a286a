"""The device node's numbers by name (core/node.py): its event kinds, the time service's
object and the ANNOUNCE body's keys and flags, for code that names them (the bridge,
tests, firmware): `node.EV_WRITE` and `from spot.core.node import A_ID` read them here.

core/node.py uses private copies (`_EV_WRITE = const(1)`, checked by
tests/test_mp_private_constants.py), folded into its code by mpy-cross, so a board
imports this module only when something asks core.node for a number by name.
"""
from .compat import const

# event kinds in node.events
EV_WRITE = const(1)     # (EV_WRITE, sid, oid, None): a value was set remotely or by a plan
EV_INVOKE = const(2)    # (EV_INVOKE, sid, oid, arg): an action to carry out
EV_SIGNAL = const(3)    # (EV_SIGNAL, sid, None, body): informational broadcast received
EV_PLAN = const(4)      # (EV_PLAN, PLANS, None, plan id): the active plan changed
EV_FALLBACK = const(5)  # (EV_FALLBACK, PLANS, None, bool): fallback entered / left

UNIX_TIME = const(1)  # object of the TIME service

# ANNOUNCE body keys
A_ID = const(0)
A_SERVICES = const(1)
A_CONSUMES = const(2)
A_FLAGS = const(3)
FLAG_SLEEPY = const(1)
FLAG_CLOCK = const(2)   # takes the clock from the registration's RESULT (spec 3.1)
