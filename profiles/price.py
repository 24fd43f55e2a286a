"""Price profile (informational): energy price now and ahead.

Served by a price source (the cloud bridge, an energy manager) and consumed
by devices that plan their own operation; nothing in it is commanded.
Prices are in `currency` per MWh (0.1 resolution = 0.01 cent/kWh)."""
from ..core.compat import const

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_SCHEDULE = const(6)
_TEXT = const(8)
_R = const(1)
_M = const(1)
_O = const(0)

SERVICE = const(0x05)  # core.services.PRICE, copied: a board imports no services
NAME = "price"
VERSION = (1, 0)

OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "price_forecast", _SCHEDULE, "{currency}/MWh", _R, _M, -10000, 10000, -1),
    (2, "currency", _TEXT, "", _R, _M, None, 3, 0),   # ISO 4217 code, e.g. "EUR"
    (3, "price_now", _ANALOG, "{currency}/MWh", _R, _O, -10000, 10000, -1),
    (4, "export_price_forecast", _SCHEDULE, "{currency}/MWh", _R, _O, -10000, 10000, -1),
    (5, "co2_forecast", _SCHEDULE, "g/kWh", _R, _O, 0, 2000, 0),
)
