"""Weather profile (informational): outdoor temperature and solar
irradiance, now and forecast, for devices that plan heat or PV output."""
from ..core.model import ANALOG, SCHEDULE, R, M, O
from ..core.services import WEATHER

SERVICE = WEATHER
NAME = "weather"
VERSION = (1, 0)

OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "outdoor_temp_forecast", SCHEDULE, "Cel", R, M, -50, 60, -1),
    (2, "irradiance_forecast", SCHEDULE, "W/m2", R, O, 0, 1500, 0),
    (3, "outdoor_temp", ANALOG, "Cel", R, O, -50, 60, -1),
    (4, "irradiance", ANALOG, "W/m2", R, O, 0, 1500, 0),
    (5, "cloud_cover_forecast", SCHEDULE, "%", R, O, 0, 100, 0),
    (6, "wind_speed", ANALOG, "m/s", R, O, 0, 75, -1),
)
