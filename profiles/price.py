"""Price profile (informational): energy price now and ahead.

Served by a price source (the cloud bridge, an energy manager) and consumed
by devices that plan their own operation; nothing in it is commanded.
Prices are in `currency` per MWh (0.1 resolution = 0.01 cent/kWh)."""
from ..core.model import ANALOG, SCHEDULE, TEXT, R, M, O
from ..core.services import PRICE

SERVICE = PRICE
NAME = "price"
VERSION = (1, 0)

OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "price_forecast", SCHEDULE, "{currency}/MWh", R, M, -10000, 10000, -1),
    (2, "currency", TEXT, "", R, M, None, 3, 0),   # ISO 4217 code, e.g. "EUR"
    (3, "price_now", ANALOG, "{currency}/MWh", R, O, -10000, 10000, -1),
    (4, "export_price_forecast", SCHEDULE, "{currency}/MWh", R, O, -10000, 10000, -1),
    (5, "co2_forecast", SCHEDULE, "g/kWh", R, O, 0, 2000, 0),
)
