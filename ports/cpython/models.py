"""Plausible physics models of SPOT devices for simulators and tests.

Pure CPython, no I/O, deterministic for a seed and faster than real time:
each model steps with model.step(dt_seconds, t_unix) and is read and
commanded by profile object name in SI units (read / write / invoke), so a
simulator binds it to a Node object by object. The models live in:

    models_base   Model, Grid (connection point), Weather (sun, clouds)
    models_heat   HeatPumpModel (house 1R1C, water loop, hot-water tank)
    models_der    PVInverterModel, BatteryModel, GeneratorModel
    models_site   EVChargerModel, Vehicle, HouseLoad, MeterModel,
                  EnergyManagerModel, PriceModel, GridSignalModel, Site
"""
from .models_base import (Model, Device, Grid, Weather, T0, clear_sky_ghi,  # noqa: F401
                          solar_elevation, cloud_factor, interp)
from .models_heat import HeatPumpModel, carnot_cop  # noqa: F401
from .models_der import PVInverterModel, BatteryModel, GeneratorModel  # noqa: F401
from .models_site import (EVChargerModel, Vehicle, HouseLoad, MeterModel,  # noqa: F401
                          EnergyManagerModel, PriceModel, GridSignalModel, Site)

# profile name -> model class
MODELS = {
    "heat_pump": HeatPumpModel,
    "pv_inverter": PVInverterModel,
    "battery": BatteryModel,
    "ev_charger": EVChargerModel,
    "meter": MeterModel,
    "generator": GeneratorModel,
    "energy_manager": EnergyManagerModel,
    "weather": Weather,
    "price": PriceModel,
    "grid": GridSignalModel,
}
