"""OpenADR event translation (cloud_bridge/plugins/openadr/translate.py): events as
openleadr hands them to a VEN -> plans per device profile and price frames."""
from datetime import datetime, timedelta, timezone

import pytest

from spot.cloud_bridge.plugins.openadr import translate as T
from spot.core.plans import Plans, check_entries
from spot.core.services import (HEAT_PUMP, EV_CHARGER, BATTERY, PV_INVERTER, ENERGY_MANAGER,
                                METER)
from spot.ports.cpython.simulator import SimDevice

T0 = 1800000000   # 2027-01-15 08:00 UTC
START = datetime.fromtimestamp(T0, timezone.utc)


def event(signals, start=START, priority=0, startafter=None, targets=None, eid="ev-1", mod=0,
          status="far", measurement=None):
    """An event dict shaped as openleadr parses oadrDistributeEvent.

    signals: [(name, type, [(duration s, payload), ...])]
    """
    sigs = []
    total = 0
    for name, stype, ivs in signals:
        t = start
        intervals = []
        for k, (d, v) in enumerate(ivs):
            intervals.append({"dtstart": t, "duration": timedelta(seconds=d), "uid": k,
                              "signal_payload": v})
            t += timedelta(seconds=d)
        total = max(total, sum(d for d, _ in ivs))
        sig = {"intervals": intervals, "signal_name": name, "signal_type": stype,
               "signal_id": "s-" + name}
        if measurement is not None:
            sig["measurement"] = measurement
        sigs.append(sig)
    period = {"dtstart": start, "duration": timedelta(seconds=total)}
    if startafter is not None:
        period["tolerance"] = {"tolerate": {"startafter": timedelta(seconds=startafter)}}
    return {"event_descriptor": {"event_id": eid, "modification_number": mod,
                                 "priority": priority, "event_status": status,
                                 "market_context": "oadr://test"},
            "active_period": period, "event_signals": sigs,
            "targets": targets if targets is not None else [{"ven_id": "ven-1"}],
            "response_required": "always"}


def simple(*levels, step=600, **kw):
    return T.parse_event(event([("SIMPLE", "level", [(step, lv) for lv in levels])], **kw))


def view(profile, dev_id="d-1", **readings):
    sid = {"heat_pump": HEAT_PUMP, "ev_charger": EV_CHARGER, "battery": BATTERY,
           "pv_inverter": PV_INVERTER, "energy_manager": ENERGY_MANAGER, "meter": METER}[profile]
    return T.DeviceView(dev_id, sid, (), readings)


def plan(ev, v, views=None):
    return T.plans_for(ev, views or [v], now=T0 - 60).get(v.id)


# ------------------------------------------------------------------ parsing

@pytest.mark.parametrize("spoil, message", [
    (lambda e: e["event_descriptor"].pop("event_id"), "eventID"),
    (lambda e: e.__setitem__("event_signals", []), "no signals"),
    (lambda e: e["event_signals"][0]["intervals"][0].__setitem__("duration", timedelta(0)),
     "zero duration"),
    (lambda e: e["event_signals"][0]["intervals"][0].__setitem__("signal_payload", float("nan")),
     "finite"),
    (lambda e: e["event_signals"][0]["intervals"][0].__setitem__("signal_payload", "high"),
     "finite"),
    (lambda e: e["active_period"].__setitem__("dtstart", datetime(2027, 1, 1)), "UTC"),
    (lambda e: e["event_descriptor"].__setitem__("modification_number", -1), "modification"),
])
def test_malformed_events_raise_event_error_naming_the_problem(spoil, message):
    e = event([("SIMPLE", "level", [(600, 1.0)])])
    spoil(e)
    with pytest.raises(T.EventError, match=message):
        T.parse_event(e)


def test_simple_level_outside_0_to_3_is_an_event_error():
    with pytest.raises(T.EventError, match="0-3"):
        plan(simple(4.0), view("heat_pump"))
    with pytest.raises(T.EventError, match="0-3"):
        plan(simple(1.5), view("heat_pump"))


def test_event_needing_more_schedule_slots_than_a_device_holds_is_an_event_error():
    ev = T.parse_event(event([("SIMPLE", "level", [(60, 1.0)] * 200)]))
    with pytest.raises(T.EventError, match="slots"):
        T.plans_for(ev, [view("heat_pump")], now=T0)


# ------------------------------------------------------------------ SIMPLE per profile

def test_simple_level_blocks_a_heat_pump_with_sg_ready():
    p = plan(simple(2.0), view("heat_pump"))
    assert p == [T.plan_id("ev-1"), T0, T0 + 600, 100, {HEAT_PUMP: {6: 1}}]


def test_simple_level_0_leaves_devices_to_their_default_plan():
    assert plan(simple(0.0), view("heat_pump")) is None


def test_simple_levels_per_profile_follow_the_table():
    ev = simple(1.0)
    assert plan(ev, view("ev_charger", max_current=32.0))[4] == {EV_CHARGER: {8: 160}}  # 16.0 A
    assert plan(ev, view("battery"))[4] == {BATTERY: {8: 0}}                 # idle
    assert plan(simple(3.0), view("battery"))[4] == {BATTERY: {8: 2}}       # discharge
    assert plan(ev, view("energy_manager"))[4] == {ENERGY_MANAGER: {13: 300}}  # 30.0 %
    assert plan(ev, view("pv_inverter")) is None      # shedding load asks nothing of PV
    assert plan(ev, view("meter")) is None            # nothing to command


def test_ev_level_rule_without_the_rating_reading_sends_nothing():
    assert plan(simple(1.0), view("ev_charger")) is None


# ------------------------------------------------------------------ schedules

def test_intervals_become_one_schedule_on_their_common_grid():
    ev = T.parse_event(event([("SIMPLE", "level", [(900, 1.0), (1800, 0.0), (900, 3.0)])]))
    p = plan(ev, view("energy_manager"))
    assert p[1:3] == [T0, T0 + 3600]
    assert p[4] == {ENERGY_MANAGER: {13: [T0, 900, [300, None, None, 1000]]}}


def test_equal_slots_are_sent_as_one_constant():
    p = plan(simple(2.0, 3.0), view("heat_pump"))   # both levels block
    assert p[4] == {HEAT_PUMP: {6: 1}} and p[2] - p[1] == 1200


def test_plans_are_valid_for_the_devices_they_target():
    ev = T.parse_event(event([("SIMPLE", "level", [(900, 1.0), (900, 2.0), (900, 0.0)])]))
    for profile, readings in (("heat_pump", {}), ("ev_charger", {"max_current": 16.0}),
                              ("battery", {}), ("energy_manager", {})):
        dev = SimDevice(profile, "x-1", seed=1, t0=T0 - 60)
        p = plan(ev, view(profile, **readings))
        Plans().check_plan(p, T0 - 60)
        assert check_entries(dev.node.services, p[4]) == []


# ------------------------------------------------------------------ timing and precedence

def test_randomisation_spreads_starts_within_the_window_and_keeps_the_duration():
    ev = simple(2.0, startafter=300)
    views = [view("heat_pump", "hp-%03d" % i) for i in range(60)]
    plans = T.plans_for(ev, views, now=T0 - 60)
    starts = [p[1] for p in plans.values()]
    assert all(T0 <= s <= T0 + 300 for s in starts)
    assert len(set(starts)) > 30
    assert all(p[2] - p[1] == 600 for p in plans.values())
    assert T.plans_for(ev, views, now=T0 - 60) == plans   # the same on every retry


@pytest.mark.parametrize("priority, expected", [(0, 100), (1, 199), (50, 150), (99, 101),
                                                (500, 101)])
def test_openadr_priority_becomes_primacy_above_the_base(priority, expected):
    assert T.primacy(priority, 100) == expected
    assert plan(simple(2.0, priority=priority), view("heat_pump"))[3] == expected


def test_plan_id_is_stable_nonzero_and_fits_a_plan_header():
    a = T.plan_id("event-42")
    assert a == T.plan_id("event-42") and 0 < a <= 0x7FFFFFFF and a != T.plan_id("event-43")


def test_plans_already_over_are_left_out_and_long_ones_cut_at_the_device_horizon():
    ev = simple(2.0, step=3 * 86400)
    assert T.plans_for(ev, [view("heat_pump")], now=T0 + 4 * 86400) == {}
    p = T.plans_for(ev, [view("heat_pump")], now=T0)["d-1"]
    assert p[2] == T0 + T.MAX_PLAN_HORIZON


# ------------------------------------------------------------------ LOAD_DISPATCH / LOAD_CONTROL

def dispatch(stype, value):
    return T.parse_event(event([("LOAD_DISPATCH", stype, [(600, value)])]))


def test_dispatch_setpoint_is_shared_by_current_power_as_heat_pump_power_limits():
    views = [view("heat_pump", "hp-1", p=3000.0), view("heat_pump", "hp-2", p=1000.0)]
    plans = T.plans_for(dispatch("setpoint", 2000.0), views, now=T0)
    assert plans["hp-1"][4] == {HEAT_PUMP: {17: 1500}}
    assert plans["hp-2"][4] == {HEAT_PUMP: {17: 500}}


def test_dispatch_delta_reduces_each_device_by_its_share():
    views = [view("heat_pump", "hp-1", p=3000.0), view("heat_pump", "hp-2", p=1000.0)]
    plans = T.plans_for(dispatch("delta", -1000.0), views, now=T0)
    assert plans["hp-1"][4] == {HEAT_PUMP: {17: 2250}}
    assert plans["hp-2"][4] == {HEAT_PUMP: {17: 750}}


def test_dispatch_per_profile_current_limit_discharge_setpoint_export_limit():
    v = view("ev_charger", p=11040.0, phases=3, v=230.0)
    assert plan(dispatch("setpoint", 6900.0), v)[4] == {EV_CHARGER: {8: 100}}     # 10.0 A
    b = view("battery", p=0.0)
    assert plan(dispatch("setpoint", -3000.0), b)[4] == {BATTERY: {8: 4, 7: -3000}}
    pv = view("pv_inverter", p=-5000.0)
    assert plan(dispatch("setpoint", -2000.0), pv)[4] == {PV_INVERTER: {13: 2000}}
    assert plan(dispatch("multiplier", 0.5), pv)[4] == {PV_INVERTER: {13: 2500}}


def test_load_control_capacity_is_a_fraction_of_the_device_rating():
    ev = T.parse_event(event([("LOAD_CONTROL", "x-loadControlCapacity", [(600, 0.5)])]))
    assert plan(ev, view("ev_charger", max_current=32.0))[4] == {EV_CHARGER: {8: 160}}
    assert plan(ev, view("pv_inverter"))[4] == {PV_INVERTER: {6: 500}}          # 50.0 %


def test_load_control_level_offset_and_setpoint_on_a_heat_pump():
    ev = T.parse_event(event([("LOAD_CONTROL", "x-loadControlLevelOffset", [(600, 1.0)])]))
    assert plan(ev, view("heat_pump"))[4] == {HEAT_PUMP: {6: 3}}   # increased operation
    ev = T.parse_event(event([("LOAD_CONTROL", "x-loadControlSetpoint", [(600, 19.5)])]))
    assert plan(ev, view("heat_pump"))[4] == {HEAT_PUMP: {13: 195}}


def test_values_beyond_an_object_range_are_saturated():
    ev = T.parse_event(event([("LOAD_CONTROL", "x-loadControlSetpoint", [(600, 45.0)])]))
    assert plan(ev, view("heat_pump"))[4] == {HEAT_PUMP: {13: 300}}   # room set-point <= 30 C


# ------------------------------------------------------------------ targets

def test_targets_select_the_vens_devices():
    members = ["hp-1", "hp-2", "ev-1"]
    groups = {"north": ["hp-2", "ev-1", "elsewhere-9"]}
    assert T.select_devices([], members) == sorted(members)
    assert T.select_devices([{"ven_id": "ven-1"}], members, "ven-1") == sorted(members)
    assert T.select_devices([{"ven_id": "ven-other"}], members, "ven-1") == []
    assert T.select_devices([{"resource_id": "hp-2"}, {"resource_id": "nope"}], members) == ["hp-2"]
    assert T.select_devices([{"group_id": "north"}], members, groups=groups) == ["ev-1", "hp-2"]


# ------------------------------------------------------------------ prices

def price_event(values, unit="currencyPerKWh", currency="EUR", step=3600):
    m = {"name": unit, "description": unit, "unit": currency, "scale": "none"}
    return T.parse_event(event([("ELECTRICITY_PRICE", "price", [(step, v) for v in values])],
                               measurement=m))


def test_price_signal_becomes_one_price_forecast_for_the_whole_horizon():
    vals = T.price_values(price_event([0.25, 0.3125, -0.01]), "EUR")
    assert vals == {1: [T0, 3600, [2500, 3125, -100]], 2: "EUR"}   # 0.1 EUR/MWh units


def test_price_per_mwh_and_currency_of_the_signal_are_kept():
    vals = T.price_values(price_event([42.5, 50.0], unit="currencyPerMWh", currency="DKK"))
    assert vals == {1: [T0, 3600, [425, 500]], 2: "DKK"}


def test_unsupported_or_absurd_prices_are_event_errors():
    with pytest.raises(T.EventError, match="unit"):
        T.price_values(price_event([1.0], unit="currencyPerThm"))
    with pytest.raises(T.EventError, match="range"):
        T.price_values(price_event([25.0]))   # 25 000 EUR/MWh


def test_price_events_command_nothing_and_command_events_carry_no_price():
    ev = price_event([0.25])
    assert T.acts_on(ev) == (False, True)
    assert T.plans_for(ev, [view("heat_pump")], now=T0) == {}
    assert T.price_values(simple(2.0)) is None
