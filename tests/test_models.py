"""The simulator models behave physically: controls act on them (limits,
SG-Ready, SoC bounds, current limits, set-points), energy is conserved
where it must be, every reading fits its profile row, and a site runs much
faster than real time."""
import math
import time

import pytest

from spot.core import model as M
from spot.core.errors import SpotError
from spot.ports.cpython.models import (
    T0, Grid, Weather, HeatPumpModel, PVInverterModel, BatteryModel, GeneratorModel,
    EVChargerModel, Vehicle, MeterModel, HouseLoad, PriceModel,
    GridSignalModel, Site, MODELS, carnot_cop, clear_sky_ghi)

SUMMER = T0 + 171 * 86400      # 2024-06-20 00:00 UTC
WINTER = T0 + 14 * 86400       # 2024-01-15 00:00 UTC
NOON = 11 * 3600               # close to solar noon at 12.6 E, in UTC


def run(model, seconds, dt=10.0, each=None):
    """Step model for seconds in steps of dt; call each(model) after every step."""
    t = model.t
    end = t + seconds
    while t < end - 1e-9:
        h = min(dt, end - t)
        t += h
        model.step(h, t)
        if each is not None:
            each(model)


def env(t0, **weather):
    g = Grid(1, t0)
    w = Weather(1, t0, **weather)
    return {"grid": g, "weather": w}


def fits(row, value):
    if value is None:
        return True
    M.check(row, M.to_wire(row, value))
    return True


# ---------------------------------------------------------------- heat pump

def cold_heat_pump(**kw):
    return HeatPumpModel(3, WINTER, draws=False, **dict(env(WINTER, t_mean=-5.0, t_swing=2.0), **kw))


def test_heat_pump_keeps_the_room_near_its_setpoint_in_the_cold():
    hp = cold_heat_pump()
    run(hp, 86400, 30)
    rooms = []
    run(hp, 86400, 30, lambda m: rooms.append(m.read("room_temp")))
    assert 20.3 <= min(rooms) and max(rooms) <= 21.8
    seasonal_cop = hp.read("heat_out") / hp.read("energy_in")
    assert 2.0 < seasonal_cop < 4.5


def test_cop_rises_with_outdoor_temperature_and_falls_with_flow_temperature():
    assert 3.0 < carnot_cop(35, 7) < 5.0          # A7/W35, a typical rating point
    assert carnot_cop(35, -7) < carnot_cop(35, 7)
    assert carnot_cop(55, 7) < carnot_cop(35, 7)
    assert carnot_cop(55, -15) >= 1.0


def test_sg_ready_1_blocks_the_compressor_and_the_house_cools():
    hp = cold_heat_pump(room_temp=20.0)
    run(hp, 600, 10)
    assert hp.read("compressor_power") > 0
    start = hp.read("room_temp")
    hp.write("sg_ready", 1)
    seen = []
    run(hp, 4 * 3600, 10, lambda m: seen.append(m.read("compressor_power")))
    assert max(seen) == 0.0
    assert hp.read("room_temp") < start - 0.3
    assert hp.read("state") == 5  # blocked while there is demand


def test_sg_ready_4_forces_the_compressor_on_in_a_warm_house():
    normal = HeatPumpModel(3, WINTER, room_temp=22.5, dhw_temp=55.0, draws=False, **env(WINTER, t_mean=5.0))
    forced = HeatPumpModel(3, WINTER, room_temp=22.5, dhw_temp=55.0, draws=False, **env(WINTER, t_mean=5.0))
    forced.write("sg_ready", 4)
    run(normal, 60, 10)
    run(forced, 60, 10)
    assert normal.read("compressor_power") == 0.0
    assert forced.read("compressor_power") > 500.0
    run(forced, 6 * 3600, 30)
    assert forced.read("dhw_temp") <= 65.0 and forced.read("flow_temp") <= 73.0  # safety limits hold


def test_power_limit_caps_the_compressor_power():
    hp = cold_heat_pump(room_temp=19.0)
    hp.write("power_limit", 800.0)
    seen = []
    run(hp, 3 * 3600, 10, lambda m: seen.append(m.read("compressor_power")))
    assert max(seen) <= 800.0 + 1e-6
    assert max(seen) > 700.0


def test_pause_stops_the_compressor_for_its_duration_only():
    hp = cold_heat_pump(room_temp=19.0)
    run(hp, 60, 10)
    assert hp.read("compressor_power") > 0
    hp.invoke("pause", 1800)
    seen = []
    run(hp, 1800, 10, lambda m: seen.append(m.read("compressor_power")))
    assert max(seen) == 0.0
    run(hp, 60, 10)
    assert hp.read("compressor_power") > 0


def test_start_delay_defers_the_next_start():
    hp = cold_heat_pump(room_temp=21.2)  # warm enough to be idle now
    run(hp, 60, 10)
    assert hp.read("compressor_power") == 0.0
    hp.invoke("start_delay", 6 * 3600)
    seen = []
    run(hp, 3 * 3600, 30, lambda m: seen.append(m.read("compressor_power")))
    assert max(seen) == 0.0 and hp.read("room_temp") < 20.7  # it would have started by now


def test_heat_pump_energy_balance_closes():
    hp = HeatPumpModel(3, WINTER, **env(WINTER, t_mean=0.0))
    before = hp.stored_heat_j()
    run(hp, 2 * 86400, 20)
    change = hp.stored_heat_j() - before
    balance = hp.heat_j + hp.gain_j - hp.loss_j - hp.draw_j
    assert abs(change - balance) <= 1e-6 * (hp.heat_j + hp.loss_j)
    assert hp.read("heat_out") == pytest.approx(hp.heat_j / 3600.0)
    assert hp.read("energy_in") == pytest.approx(hp.e_net_wh)
    assert hp.draw_j > 0


def test_hot_water_draws_are_reheated():
    hp = HeatPumpModel(3, WINTER, **env(WINTER, t_mean=5.0))
    states = set()
    temps = []
    run(hp, 2 * 86400, 20, lambda m: (states.add(m.read("state")), temps.append(m.read("dhw_temp"))))
    assert 3 in states                       # it heated hot water
    assert min(temps) > 35.0                 # draws never left the tank cold
    assert hp.read("dhw_temp") > 42.0


# ---------------------------------------------------------------- PV

def sunny_pv(t0=SUMMER, cloudiness=0.0, seed=2, **kw):
    return PVInverterModel(seed, t0, **dict(env(t0, cloudiness=cloudiness), **kw))


def test_pv_follows_the_clear_sky_day():
    pv = sunny_pv()
    out = []
    run(pv, 86400, 60, lambda m: out.append((m.t, -m.read("p"))))
    night = [p for t, p in out if (t - SUMMER) < 2 * 3600]
    assert max(night) <= 0.0
    t_peak, p_peak = max(out, key=lambda x: x[1])
    assert 10 * 3600 <= t_peak - SUMMER <= 12.5 * 3600
    assert 0.7 * pv.rated < p_peak <= pv.rated
    assert pv.read("energy_out") == pytest.approx(sum(max(p, 0) for _, p in out) / 60.0, rel=0.02)


def test_clouds_reduce_pv_energy_and_are_reproducible_by_seed():
    clear = sunny_pv(cloudiness=0.0)
    cloudy_a = sunny_pv(cloudiness=0.8, seed=5)
    cloudy_b = sunny_pv(cloudiness=0.8, seed=5)
    for m in (clear, cloudy_a, cloudy_b):
        run(m, 86400, 60)
    assert cloudy_a.read("energy_out") < 0.85 * clear.read("energy_out")
    assert cloudy_a.read("energy_out") == cloudy_b.read("energy_out")


def test_power_limit_lowers_pv_output_within_the_ramp_rate():
    pv = sunny_pv()
    run(pv, NOON, 60)
    before = -pv.read("p")
    assert before > 3000.0
    pv.write("ramp_rate", 1.0)            # 50 W/s on 5 kW
    pv.write("power_limit_pct", 30.0)      # 1500 W
    outs = [before]
    run(pv, 150, 1, lambda m: outs.append(-m.read("p")))
    steps = [a - b for a, b in zip(outs, outs[1:])]
    assert max(steps) <= 50.0 + 1.0        # never faster than the ramp
    assert outs[1] > before - 51.0
    assert outs[-1] <= 1500.0 + 1e-6
    assert pv.read("state") == 4           # throttled


def test_cease_to_energise_stops_output_at_once_and_reconnection_ramps_up():
    pv = sunny_pv()
    run(pv, NOON, 60)
    assert -pv.read("p") > 3000.0
    pv.invoke("cease_to_energise")
    assert pv.read("p") == 0.0 and pv.read("connect") is False
    run(pv, 60, 10)
    assert 0.0 <= pv.read("p") <= 2.0 and pv.read("state") == 0   # no output, standby draw only
    pv.write("ramp_rate", 2.0)             # 100 W/s
    pv.write("connect", True)
    run(pv, 10, 1)
    assert 900.0 <= -pv.read("p") <= 1000.0 + 1e-6


def test_frequency_watt_reduces_output_at_over_frequency():
    pv = sunny_pv()
    run(pv, NOON, 60)
    pv.grid.set_frequency(51.2)            # 1.024 p.u.: cap 0.6 of rated
    run(pv, 10, 1)
    assert -pv.read("p") <= 0.6 * pv.rated + 1e-6
    pv.write("freq_watt_enabled", False)
    run(pv, 120, 1)
    assert -pv.read("p") > 0.6 * pv.rated + 100


def test_volt_var_absorbs_reactive_power_at_high_voltage():
    pv = sunny_pv()
    pv.write("q_mode", 2)
    run(pv, NOON, 60)
    pv.grid.set_voltage(230.0)
    run(pv, 10, 1)
    assert abs(pv.read("q")) < 1.0
    pv.grid.set_voltage(248.4)             # 1.08 p.u.: absorb 44 % of rated
    run(pv, 10, 1)
    p_out = -pv.read("p")
    expected = min(0.44 * pv.rated, math.sqrt((1.1 * pv.rated) ** 2 - p_out ** 2))
    assert pv.read("q") == pytest.approx(expected, rel=1e-6)   # + = absorbed


def test_fixed_power_factor_sets_reactive_power_from_active_power():
    pv = sunny_pv()
    pv.write("q_mode", 1)
    pv.write("power_factor", -0.9)         # under-excited: absorbs
    run(pv, NOON, 60)
    p_out = -pv.read("p")
    assert pv.read("q") == pytest.approx(p_out * math.tan(math.acos(0.9)), rel=1e-6)


# ---------------------------------------------------------------- battery

def battery(soc=50.0, **kw):
    return BatteryModel(4, SUMMER, soc=soc, **dict(env(SUMMER), **kw))


def test_battery_stops_charging_at_soc_max():
    b = battery(soc=90.0)
    b.write("soc_max", 95.0)
    b.write("mode", 1)
    run(b, 2 * 3600, 10)
    assert b.read("soc") == pytest.approx(95.0, abs=0.05)
    assert b.read("p") == pytest.approx(0.0, abs=1.0)
    assert b.read("state") == 3


def test_battery_stops_discharging_at_soc_min():
    b = battery(soc=20.0)
    b.write("soc_min", 10.0)
    b.write("mode", 2)
    run(b, 2 * 3600, 10)
    assert b.read("soc") == pytest.approx(10.0, abs=0.05)
    assert b.read("p") == pytest.approx(0.0, abs=1.0)
    assert b.read("state") == 4


def test_battery_power_limits_cap_the_setpoint():
    b = battery()
    b.write("mode", 4)
    b.write("charge_limit", 3000.0)
    b.write("discharge_limit", 2000.0)
    b.write("power_setpoint", 8000.0)
    run(b, 60, 10)
    assert b.read("p") == pytest.approx(3000.0)
    b.write("power_setpoint", -8000.0)
    run(b, 60, 10)
    assert b.read("p") == pytest.approx(-2000.0)
    b.write("power_setpoint", -1500.0)
    run(b, 60, 10)
    assert b.read("p") == pytest.approx(-1500.0)


def test_battery_round_trip_efficiency_is_ninety_percent():
    b = battery(soc=20.0)
    b.write("soc_max", 80.0)
    b.write("mode", 1)
    run(b, 3 * 3600, 10)
    assert b.read("soc") == pytest.approx(80.0, abs=0.05)
    b.write("soc_min", 20.0)
    b.write("mode", 2)
    run(b, 3 * 3600, 10)
    assert b.read("soc") == pytest.approx(20.0, abs=0.05)
    assert b.read("energy_out") / b.read("energy_in") == pytest.approx(0.90, abs=0.005)


def test_battery_energy_is_conserved():
    b = battery(soc=50.0)
    b.write("mode", 4)
    e0 = b.stored
    for sp in (4000.0, -2500.0, 1000.0, -5000.0):
        b.write("power_setpoint", sp)
        run(b, 1800, 10)
    eta = b.eta
    assert b.stored - e0 == pytest.approx(b.read("energy_in") * eta - b.read("energy_out") / eta, abs=1e-6)
    assert b.read("energy_in") - b.read("energy_out") == pytest.approx(b.e_net_wh, abs=1e-6)


def test_battery_balance_mode_absorbs_spare_pv():
    site = Site(seed=7, t0=SUMMER, heat_pump=False, ev=False, cloudiness=0.0)
    site.run(9 * 3600, dt=30)
    b = site.devices["battery"]
    b.stored = 0.2 * b.capacity()              # room to charge
    site.run(600, dt=10)
    pv = site.devices["pv_inverter"]
    assert -pv.read("p") > 2000.0
    assert 0 < b.read("p") < b.max_charge      # charging from the surplus, not at its limit
    assert abs(site.meter.read("p")) < 30.0    # the site neither imports nor exports
    site.run(12 * 3600, dt=30)                 # evening: it covers the load instead
    assert b.read("p") < 0 and abs(site.meter.read("p")) < 30.0


# ---------------------------------------------------------------- EV charger

def charger(**kw):
    return EVChargerModel(5, SUMMER, auto_sessions=False, **dict(env(SUMMER), **kw))


def test_ev_current_limit_caps_charging_power():
    ev = charger()
    ev.plug_in(Vehicle(60000.0, 30.0, max_current=32.0))
    ev.write("current_limit", 10.0)
    run(ev, 60, 5)
    v = ev.read("v")
    assert ev.read("p") == pytest.approx(10.0 * v * 3, rel=0.01)
    assert ev.read("i") == pytest.approx(10.0, rel=0.06)   # plus the small reactive part
    assert ev.read("session_state") == 2 and ev.read("plug_state") == 2
    ev.write("current_limit", 4.0)         # below the 6 A minimum: pause
    run(ev, 60, 5)
    assert ev.read("p") == 0.0
    assert ev.read("session_state") == 3 and ev.read("plug_state") == 1


def test_ev_vehicle_limits_the_current_below_the_charger_limit():
    ev = charger()
    ev.plug_in(Vehicle(60000.0, 30.0, max_current=16.0))
    run(ev, 60, 5)
    assert ev.read("p") == pytest.approx(16.0 * ev.read("v") * 3, rel=0.01)


def test_ev_disabled_does_not_charge():
    ev = charger()
    ev.plug_in(Vehicle())
    ev.write("enabled", False)
    run(ev, 600, 5)
    assert ev.read("p") == 0.0 and ev.read("session_energy") == 0.0
    ev.write("enabled", True)
    run(ev, 60, 5)
    assert ev.read("p") > 1000.0


def test_ev_stops_when_the_energy_request_is_met():
    ev = charger()
    ev.plug_in(Vehicle(60000.0, 30.0), energy_requested=2000.0)
    run(ev, 3600, 5)
    assert ev.read("session_energy") == pytest.approx(2000.0, abs=0.5)
    assert ev.read("session_state") == 5 and ev.read("p") == 0.0


def test_ev_vehicle_soc_rises_with_the_energy_delivered():
    ev = charger()
    car = Vehicle(50000.0, 20.0, max_current=16.0)
    ev.plug_in(car)
    run(ev, 3600, 5)
    gained = ev.read("session_energy") * car.efficiency / car.capacity * 100.0
    assert car.soc == pytest.approx(20.0 + gained)
    assert ev.read("vehicle_soc") == round(car.soc)


def test_ev_power_setpoint_discharges_only_with_v2g_on_both_sides():
    ev = charger(v2g=True)
    ev.plug_in(Vehicle(60000.0, 60.0, v2g=True))
    ev.write("power_setpoint", -5000.0)
    run(ev, 60, 5)
    assert ev.read("p") == pytest.approx(-5000.0)
    assert ev.read("v2g_capable") is True and ev.read("energy_out") > 0
    plain = charger()
    plain.plug_in(Vehicle(60000.0, 60.0, v2g=True))
    plain.write("power_setpoint", -5000.0)
    run(plain, 60, 5)
    assert plain.read("p") == 0.0 and plain.read("v2g_capable") is False


def test_seeded_ev_sessions_arrive_and_leave():
    def week(seed):
        ev = EVChargerModel(seed, SUMMER, **env(SUMMER))
        plugs = []
        run(ev, 7 * 86400, 60, lambda m: plugs.append(m.read("plug_state")))
        return ev, plugs
    ev, plugs = week(11)
    arrivals = sum(1 for a, b in zip(plugs, plugs[1:]) if a == 0 and b != 0)
    departures = sum(1 for a, b in zip(plugs, plugs[1:]) if a != 0 and b == 0)
    assert 4 <= ev.sessions_started <= 8
    assert arrivals >= 4 and departures >= 4
    assert ev.read("energy_in") > 20000.0
    again, _ = week(11)
    assert again.read("energy_in") == ev.read("energy_in")


# ---------------------------------------------------------------- meter

def test_meter_sums_its_sources_per_phase_and_in_total():
    site = Site(seed=3, t0=WINTER + 18 * 3600)
    site.run(600, dt=10)
    m = site.meter
    sources = list(site.devices.values()) + [site.house]
    assert m.read("p") == pytest.approx(sum(s.p_now for s in sources))
    for k in range(3):
        assert m.read("p_l%d" % (k + 1)) == pytest.approx(sum(s.phase_power()[k][0] for s in sources))
    assert m.read("p") == pytest.approx(m.read("p_l1") + m.read("p_l2") + m.read("p_l3"))


def test_meter_energy_is_conserved_over_a_day():
    site = Site(seed=4, t0=SUMMER, cloudiness=0.3)
    site.run(86400, dt=30)
    m = site.meter
    sources = list(site.devices.values()) + [site.house]
    net = sum(s.e_net_wh for s in sources)
    assert m.read("energy_import") - m.read("energy_export") == pytest.approx(net, abs=1e-6)
    assert m.read("energy_import") > 0 and m.read("energy_export") > 0


def test_opening_the_supply_breaker_de_energises_the_site():
    site = Site(seed=3, t0=WINTER + 18 * 3600)
    site.run(600, dt=10)
    assert site.meter.read("p") > 0
    site.meter.write("supply", False)
    site.run(60, dt=10)
    assert site.meter.read("p") == 0.0 and site.meter.read("v") == 0.0
    assert all(d.p_now == 0.0 for d in site.devices.values())
    site.meter.write("supply", True)
    site.run(600, dt=10)
    assert site.meter.read("p") > 0 and site.meter.read("v") > 200.0


def test_meter_raises_and_clears_an_overload_alarm():
    e = env(WINTER)
    ev = EVChargerModel(5, WINTER, auto_sessions=False, **e)
    house = HouseLoad(5, WINTER, grid=e["grid"])
    meter = MeterModel(5, WINTER, e["grid"], [ev, house], fuse_a=30.0)
    ev.plug_in(Vehicle(60000.0, 30.0, max_current=32.0))

    def step(seconds):
        t = meter.t
        for _ in range(int(seconds // 5)):
            t += 5
            ev.step(5, t)
            house.step(5, t)
            meter.step(5, t)
    step(30)
    alarm = meter.read("alarm")
    assert alarm is not None and alarm[1] == 7 and alarm[3] is True
    ev.write("current_limit", 16.0)
    step(10)
    assert meter.read("alarm")[3] is False


# ---------------------------------------------------------------- generator

def generator(t_mean=10.0, **kw):
    return GeneratorModel(6, SUMMER, **dict(env(SUMMER, t_mean=t_mean), **kw))


def test_generator_starts_synchronises_and_ramps_to_its_setpoint():
    g = generator()
    g.write("p_setpoint", 6000.0)
    run(g, 60, 1)
    assert g.read("status") == 0 and g.read("p") == 20.0    # stopped: only its auxiliaries
    g.invoke("start")
    statuses = []
    run(g, 16, 1, lambda m: statuses.append(m.read("status")))
    assert statuses[0] == 1 and 2 in statuses and statuses[-1] == 3
    outs = []
    run(g, 60, 1, lambda m: outs.append(-m.read("p")))
    steps = [b - a for a, b in zip(outs, outs[1:])]
    assert max(steps) <= 0.02 * g.rated + 1e-6               # 2 %/s ramp
    assert outs[-1] == pytest.approx(6000.0)
    assert g.read("reserve") == pytest.approx(g.read("capacity") - 6000.0)


def test_generator_output_stays_within_capacity_and_minimum():
    g = generator(t_mean=35.0)                               # hot: derated
    g.invoke("start")
    g.write("p_setpoint", 10000.0)
    run(g, 120, 1)
    assert g.read("capacity") < g.rated
    assert -g.read("p") == pytest.approx(g.read("capacity"))
    g.write("p_setpoint", 1000.0)                            # below the stable minimum
    run(g, 120, 1)
    assert -g.read("p") == pytest.approx(g.min_power)


def test_generator_stop_ramps_down_and_cools_down():
    g = generator()
    g.invoke("start")
    g.write("p_setpoint", 5000.0)
    run(g, 60, 1)
    g.invoke("stop")
    run(g, 10, 1)
    assert g.read("status") == 4 and 0 < -g.read("p") < 5000.0
    run(g, 120, 1)
    assert g.read("status") == 0 and g.read("p") == 20.0
    assert g.read("energy_out") > 0 and g.read("run_time") > 0


def test_generator_faults_when_fuel_runs_out():
    g = generator(fuel_wh=5000.0)
    g.invoke("start")
    g.write("p_setpoint", 8000.0)
    run(g, 3600, 1)
    assert g.read("status") == 5 and g.read("fuel_level") == 0.0 and -g.read("p") <= 0.0


# ---------------------------------------------------------------- energy manager

def test_energy_manager_aggregates_its_devices():
    site = Site(seed=8, t0=SUMMER + NOON, cloudiness=0.2)
    site.run(600, dt=10)
    em = site.energy_manager
    devs = list(site.devices.values())
    assert em.read("resources") == len(devs) == 4
    assert em.read("consumption") == pytest.approx(sum(max(d.p_now, 0) for d in devs))
    assert em.read("production") == pytest.approx(sum(max(-d.p_now, 0) for d in devs))
    assert em.read("p") == site.meter.read("p")
    start, step, slots = em.read("net_forecast")
    assert step == 3600 and len(slots) == 24 and min(slots) < 0   # PV surplus expected at noon


def evening_site_with_ev():
    site = Site(seed=9, t0=WINTER + 18 * 3600, pv=False, battery=False)
    ev = site.devices["ev_charger"]
    ev.auto = False
    ev.plug_in(Vehicle(77000.0, 20.0, max_current=32.0))
    return site, ev


def test_import_limit_caps_site_import_by_throttling_the_ev():
    site, ev = evening_site_with_ev()
    site.run(60, dt=5)
    assert site.meter.read("p") > 20000.0                    # 22 kW charging plus the house
    site.energy_manager.write("import_limit", 10000.0)
    peak = []
    site.run(120, dt=5)
    t_end = site.t + 600
    while site.t < t_end:
        site.step(5, site.t + 5)
        peak.append(site.meter.read("p"))
    assert max(peak) <= 10000.0 * 1.05
    assert ev.read("current_limit") < 32.0 and ev.read("p") > 0


def test_reduction_scales_down_the_flexible_loads():
    site, ev = evening_site_with_ev()
    site.energy_manager.write("reduction", 50.0)
    site.run(120, dt=5)
    assert ev.read("current_limit") <= 16.0 + 1e-6
    assert site.devices["heat_pump"].read("power_limit") <= 3000.0 + 1e-6


def test_export_limit_curtails_pv():
    site = Site(seed=10, t0=SUMMER + NOON - 1800, heat_pump=False, ev=False, battery=False, cloudiness=0.0)
    site.run(300, dt=5)
    assert -site.meter.read("p") > 2500.0
    site.energy_manager.write("export_limit", 1000.0)
    site.run(600, dt=5)
    assert -site.meter.read("p") <= 1000.0 * 1.1
    assert site.devices["pv_inverter"].read("state") == 4


# ---------------------------------------------------------------- every model

def all_models_of_a_day():
    site = Site(seed=12, t0=WINTER + 6 * 3600, generator=True, t_mean=-2.0)
    site.devices["generator"].invoke("start")
    site.devices["generator"].write("p_setpoint", 4000.0)
    site.devices["ev_charger"].write("power_setpoint", 6000.0)
    return site


def test_every_model_reading_fits_its_profile_row():
    site = all_models_of_a_day()
    checked = 0
    for _ in range(12):
        site.run(7200, dt=30)
        for name, m in site.models().items():
            assert m.PROFILE == name
            for obj, value in m.readings().items():
                assert fits(m.rows[obj], value), (name, obj, value)
                checked += 1
    assert checked > 1000


def test_every_mandatory_readable_object_has_a_value():
    site = all_models_of_a_day()
    site.run(3600, dt=30)
    for name, m in site.models().items():
        for r in m.profile.OBJECTS:
            if r[M.MANDATORY] == M.M and r[M.ACCESS] & M.R:
                assert m.read(r[M.NAME]) is not None, (name, r[M.NAME])


def test_models_accept_their_writable_objects_and_refuse_bad_values():
    site = all_models_of_a_day()
    for name, m in site.models().items():
        for obj in m.names(M.W):
            m.write(obj, m.values.get(obj))  # the value in force is always acceptable
        for r in m.profile.OBJECTS:
            if r[M.ACCESS] & M.W and r[M.TYPE] == M.ANALOG:
                with pytest.raises(SpotError):
                    m.write(r[M.NAME], r[M.HI] * 2 + 1)
            if not r[M.ACCESS] & M.W:
                with pytest.raises(SpotError):
                    m.write(r[M.NAME], m.values.get(r[M.NAME]))
    assert sorted(MODELS) == sorted(site.models())


def test_a_site_runs_much_faster_than_real_time():
    site = Site(seed=13, t0=SUMMER, generator=True)
    start = time.perf_counter()
    site.run(86400, dt=10)
    elapsed = time.perf_counter() - start
    assert 86400 / elapsed > 2000, "only %.0fx real time" % (86400 / elapsed)


def test_signal_models_serve_forecasts():
    p = PriceModel(1, SUMMER)
    start, step, prices = p.read("price_forecast")
    assert step == 900 and len(prices) == 192 and start <= SUMMER
    assert p.read("price_now") == prices[0]
    w = Weather(1, SUMMER + NOON, cloudiness=0.0)
    assert w.read("irradiance") == pytest.approx(clear_sky_ghi(SUMMER + NOON, 55.7, 12.6))
    g = GridSignalModel(1, SUMMER)
    g.set_state(2, until=SUMMER + 600)
    assert g.read("emergency") is True
    g.step(600, SUMMER + 600)
    assert g.read("grid_state") == 0 and g.read("emergency") is False
