"""Profile registry: which profiles exist and their service ids, loading
each module only on demand (a device imports just the one it serves)."""
from ..core import services as S

# profile name -> module name (under this package)
PROFILES = {
    "device_info": "device_info",
    "alarms": "alarms",
    "diagnostics": "diagnostics",
    "price": "price",
    "weather": "weather",
    "grid": "grid",
    "heat_pump": "heat_pump",
    "pv_inverter": "pv_inverter",
    "battery": "battery",
    "ev_charger": "ev_charger",
    "meter": "meter",
    "generator": "generator",
    "energy_manager": "energy_manager",
}

# service id -> profile name
SERVICES = {
    S.DEVICE_INFO: "device_info",
    S.ALARMS: "alarms",
    S.DIAGNOSTICS: "diagnostics",
    S.PRICE: "price",
    S.WEATHER: "weather",
    S.GRID: "grid",
    S.HEAT_PUMP: "heat_pump",
    S.PV_INVERTER: "pv_inverter",
    S.BATTERY: "battery",
    S.EV_CHARGER: "ev_charger",
    S.METER: "meter",
    S.GENERATOR: "generator",
    S.ENERGY_MANAGER: "energy_manager",
}

_PACKAGE = __name__[:__name__.rfind(".")]  # "spot.profiles" when installed


def names():
    """Profile names ordered by service id."""
    return [SERVICES[sid] for sid in sorted(SERVICES)]


def load(name):
    """The profile module called name; KeyError if there is none."""
    mod = PROFILES[name]
    return __import__(_PACKAGE + "." + mod, None, None, [mod])


def by_service(sid):
    """The profile module serving service id sid, or None if unknown."""
    name = SERVICES.get(sid)
    return None if name is None else load(name)
