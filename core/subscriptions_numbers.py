"""The observe attributes' keys by name (core/subscriptions.py), for code that names
them (the bridge, the CoAP REST view, tests): `from spot.core.subscriptions import PMIN`
reads them here.

core/subscriptions.py uses private copies (`_PMIN = const(0)`, checked by
tests/test_mp_private_constants.py), folded into its code by mpy-cross, so a board
imports this module only when something asks core.subscriptions for a key by name.
"""
from .compat import const

PMIN = const(0)   # minimum seconds between two notifications
PMAX = const(1)   # maximum seconds without a notification
ST = const(2)     # change threshold
GT = const(3)     # notify on crossing above or below gt
LT = const(4)     # notify on crossing above or below lt
