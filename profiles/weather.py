"""Weather profile (informational): outdoor temperature and solar
irradiance, now and forecast, for devices that plan heat or PV output."""
from ..core.compat import const

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_SCHEDULE = const(6)
_R = const(1)
_M = const(1)
_O = const(0)

SERVICE = const(0x06)  # core.services.WEATHER, copied: a board imports no services
NAME = "weather"
VERSION = (1, 0)

OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "outdoor_temp_forecast", _SCHEDULE, "Cel", _R, _M, -50, 60, -1),
    (2, "irradiance_forecast", _SCHEDULE, "W/m2", _R, _O, 0, 1500, 0),
    (3, "outdoor_temp", _ANALOG, "Cel", _R, _O, -50, 60, -1),
    (4, "irradiance", _ANALOG, "W/m2", _R, _O, 0, 1500, 0),
    (5, "cloud_cover_forecast", _SCHEDULE, "%", _R, _O, 0, 100, 0),
    (6, "wind_speed", _ANALOG, "m/s", _R, _O, 0, 75, -1),
)
