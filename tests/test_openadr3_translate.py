"""OpenADR 3 JSON -> the shared flat event -> plans (cloud_bridge/plugins/openadr3/translate.py).

Pure functions, no network: the same event sent as OpenADR 2.0b and as
OpenADR 3 gives the same plans, because both go through dr_translate.
"""
import json

import pytest

from openadr3_vtn_double import event_object, validator
from test_openadr_translate import event as event_2b, view, T0
from spot.cloud_bridge.plugins import dr_translate as D
from spot.cloud_bridge.plugins.openadr import translate as T2
from spot.cloud_bridge.plugins.openadr3 import translate as T
from spot.core.services import HEAT_PUMP, ENERGY_MANAGER, EV_CHARGER, BATTERY, PV_INVERTER

PROG = "program-1"


def parsed(payload_type, values, step=600, **kw):
    return T.parse_event(dict(event_object(PROG, payload_type, values, T0, step, **kw),
                              id="ev-1"))


# ------------------------------------------------------------------ scalars

@pytest.mark.parametrize("text,seconds", [("PT0S", 0), ("PT15M", 900), ("PT1H30M", 5400),
                                          ("P1D", 86400), ("P1W", 604800), ("PT0.4S", 0),
                                          ("P1DT2H", 93600), ("PT2.5S", 2)])
def test_iso_durations_become_seconds(text, seconds):
    assert T.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["P1M", "P1Y", "-PT5S", "PT", "P", "1H", "PT5X", None, 60])
def test_durations_without_a_fixed_length_or_malformed_are_refused(text):
    with pytest.raises(D.EventError):
        T.parse_duration(text)


def test_date_times_need_a_zone():
    assert T.parse_time("2027-01-15T08:00:00Z") == T0
    assert T.parse_time("2027-01-15T09:00:00+01:00") == T0
    assert T.format_time(T0) == "2027-01-15T08:00:00Z"
    for bad in ("2027-01-15T08:00:00", "yesterday", 1800000000):
        with pytest.raises(D.EventError):
            T.parse_time(bad)


# ------------------------------------------------------------------ the same plans as 2.0b

def test_simple_event_gives_the_plans_2_0b_gives():
    ev3 = parsed("SIMPLE", [1, 3, 0], step=900)
    ev2 = T2.parse_event(event_2b([("SIMPLE", "level", [(900, 1), (900, 3), (900, 0)])]))
    for profile in ("heat_pump", "energy_manager", "battery"):
        v = view(profile)
        assert D.plans_for(ev3, [v], T0 - 60) == D.plans_for(
            dict(ev2, id="ev-1"), [v], T0 - 60)
        assert D.plans_for(ev3, [v], T0 - 60)   # something to compare


def test_price_event_gives_the_price_frame_2_0b_gives():
    ev3 = parsed("PRICE", [0.25, 0.31], step=900, units="KWH", currency="EUR")
    ev2 = T2.parse_event(event_2b([("ELECTRICITY_PRICE", "price", [(900, 0.25), (900, 0.31)])],
                                  measurement={"name": "currencyPerKWh", "unit": "EUR"}))
    assert D.price_values(ev3) == D.price_values(ev2)
    assert D.acts_on(ev3) == (False, True)


def test_price_per_mwh_and_currency_come_from_the_payload_descriptor():
    ev = parsed("PRICE", [80.0], units="MWH", currency="CHF")
    assert ev["signals"][0][3] == {"name": "currencyPerMWh", "unit": "CHF"}
    values = D.price_values(ev)
    assert "CHF" in values.values()


def test_import_capacity_limit_in_kw_becomes_watts_shared_over_the_devices():
    ev = parsed("IMPORT_CAPACITY_LIMIT", [6.0], units="KW")
    assert ev["signals"][0][:2] == ("IMPORT_CAPACITY_LIMIT", "setpoint")
    em = view("energy_manager", "em-1", p=2000.0)
    hp = view("heat_pump", "hp-1", p=1000.0)
    assert D.plans_for(ev, [em], T0 - 60)["em-1"][4] == {ENERGY_MANAGER: {11: 6000}}
    # two heat pumps share the limit by their present power
    hps = [view("heat_pump", "hp-1", p=3000.0), view("heat_pump", "hp-2", p=1000.0)]
    plans = D.plans_for(ev, hps, T0 - 60)
    assert plans["hp-1"][4] == {HEAT_PUMP: {17: 4500}}
    assert plans["hp-2"][4] == {HEAT_PUMP: {17: 1500}}
    assert D.capable(ev, hp.sid) and D.capable(ev, EV_CHARGER) and D.capable(ev, BATTERY)
    assert not D.capable(ev, PV_INVERTER)


def test_export_capacity_limit_caps_generation_and_discharge():
    ev = parsed("EXPORT_CAPACITY_LIMIT", [2000.0], units="W")
    pv = view("pv_inverter", "pv-1", p=-3000.0)
    assert D.plans_for(ev, [pv], T0 - 60)["pv-1"][4] == {PV_INVERTER: {13: 2000}}
    assert D.capable(ev, BATTERY) and not D.capable(ev, HEAT_PUMP)


def test_a_power_payload_in_an_unknown_unit_is_refused():
    with pytest.raises(D.EventError, match="power unit"):
        parsed("IMPORT_CAPACITY_LIMIT", [6.0], units="HP")


def test_payload_types_this_ven_does_not_know_are_carried_and_act_on_nothing():
    obj = dict(event_object(PROG, "SIMPLE", [2], T0, 600), id="ev-1")
    obj["intervals"][0]["payloads"].append({"type": "GHG", "values": [120.0]})
    ev = T.parse_event(obj)
    assert [s[0] for s in ev["signals"]] == ["SIMPLE", "GHG"]
    assert D.plans_for(ev, [view("heat_pump")], T0 - 60)["d-1"][4] == {HEAT_PUMP: {6: 1}}


# ------------------------------------------------------------------ times, priority, targets

def test_intervals_follow_each_other_unless_they_carry_their_own_period():
    obj = dict(event_object(PROG, "SIMPLE", [1, 2, 3], T0, 300), id="ev-1")
    obj["intervals"][2]["intervalPeriod"] = {"start": T.format_time(T0 + 1200),
                                             "duration": "PT600S"}
    ev = T.parse_event(obj)
    assert ev["start"] == T0 and ev["duration"] == 1800
    assert ev["signals"][0][2] == [(0, 300, 1.0), (300, 300, 2.0), (1200, 600, 3.0)]


def test_randomize_start_and_priority_map_to_the_2_0b_meaning():
    obj = dict(event_object(PROG, "SIMPLE", [1], T0, 600, priority=0), id="ev-1")
    obj["intervalPeriod"]["randomizeStart"] = "PT2M"
    ev = T.parse_event(obj)
    assert ev["startafter"] == 120 and ev["priority"] == 1    # 3.0 highest -> 2.0b highest
    assert parsed("SIMPLE", [1])["priority"] == 0             # none -> unspecified


def test_targets_become_resource_group_and_ven_targets():
    ev = parsed("SIMPLE", [1], targets=[{"type": "RESOURCE_NAME", "values": ["hp-2"]},
                                        {"type": "GROUP", "values": ["north"]}])
    chosen = D.select_devices(ev["targets"], ["hp-1", "hp-2", "hp-3"], "spot",
                              {"north": ["hp-3"]})
    assert chosen == ["hp-2", "hp-3"]
    ev = parsed("SIMPLE", [1], targets=[{"type": "VEN_NAME", "values": ["spot"]}])
    assert D.select_devices(ev["targets"], ["a", "b"], "spot") == ["a", "b"]


def test_an_event_aimed_at_a_target_type_we_cannot_place_selects_no_device():
    ev = parsed("SIMPLE", [1], targets=[{"type": "POSTAL_CODE", "values": ["8001"]}])
    assert D.select_devices(ev["targets"], ["a", "b"], "spot") == []


# ------------------------------------------------------------------ malformed events

@pytest.mark.parametrize("change,reason", [
    ({"id": "ev 1"}, "object id"),
    ({"programID": None}, "programID"),
    ({"priority": -1}, "priority"),
    ({"intervals": []}, "no intervals"),
    ({"intervalPeriod": {"start": "soon", "duration": "PT1H"}}, "date-time"),
    ({"intervalPeriod": {"start": "2027-01-15T08:00:00Z", "duration": "PT0S"}}, "open-ended"),
    ({"intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": ["high"]}]}]},
     "finite number"),
    ({"intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1, 2]}]}]},
     "one value"),
    ({"intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]},
                    {"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}]}, "twice"),
    ({"intervals": [{"id": 0, "payloads": "SIMPLE"}]}, "no payloads"),
    ({"targets": {"type": "GROUP"}}, "targets"),
])
def test_malformed_event_is_refused_with_the_reason(change, reason):
    obj = dict(event_object(PROG, "SIMPLE", [1], T0, 600), id="ev-1")
    obj.update(change)
    with pytest.raises(D.EventError, match=reason):
        T.parse_event(obj)


def test_overlapping_intervals_of_one_payload_type_are_refused():
    obj = dict(event_object(PROG, "SIMPLE", [1, 2], T0, 600), id="ev-1")
    obj["intervals"][1]["intervalPeriod"] = {"start": T.format_time(T0 + 300),
                                             "duration": "PT600S"}
    with pytest.raises(D.EventError, match="overlap"):
        T.parse_event(obj)


def test_a_simple_level_out_of_range_is_refused_when_planned():
    ev = parsed("SIMPLE", [7])
    with pytest.raises(D.EventError, match="0-3"):
        D.plans_for(ev, [view("heat_pump")], T0 - 60)


def test_fingerprint_changes_with_the_content_only():
    a = dict(event_object(PROG, "SIMPLE", [1], T0, 600), id="ev-1")
    b = json.loads(json.dumps(a))
    assert T.fingerprint(a) == T.fingerprint(b)
    b["intervals"][0]["payloads"][0]["values"] = [2]
    assert T.fingerprint(a) != T.fingerprint(b)


# ------------------------------------------------------------------ overlaps between events

def test_events_overlapping_at_the_same_priority_on_the_same_signal_are_found():
    a = T.parse_event(dict(event_object(PROG, "SIMPLE", [1], T0, 600), id="a"))
    b = T.parse_event(dict(event_object(PROG, "SIMPLE", [2], T0 + 300, 600), id="b"))
    c = T.parse_event(dict(event_object(PROG, "SIMPLE", [2], T0 + 600, 600), id="c"))
    d = T.parse_event(dict(event_object(PROG, "SIMPLE", [2], T0, 600, priority=1), id="d"))
    p = T.parse_event(dict(event_object(PROG, "PRICE", [0.2], T0, 600), id="p"))
    assert T.overlapping([a, b, c, d, p]) == [("a", "b"), ("b", "c")]


# ------------------------------------------------------------------ notifications

def test_notification_body_is_checked():
    obj = dict(event_object(PROG, "SIMPLE", [1], T0, 600), id="ev-1")
    body = json.dumps({"objectType": "EVENT", "operation": "PUT", "object": obj}).encode()
    assert T.parse_notification(body) == ("EVENT", "PUT", obj)
    for bad, reason in ((b"{", "not JSON"), (b"[]", "not an object"),
                        (b'{"objectType": "CAT", "operation": "PUT", "object": {}}', "objectType"),
                        (b'{"objectType": "EVENT", "operation": "EAT", "object": {}}', "operation"),
                        (b'{"objectType": "EVENT", "operation": "PUT"}', "no object"),
                        (b'{"objectType": "EVENT", "operation": "PUT", '
                         b'"object": {"objectType": "VEN"}}', "not a EVENT")):
        with pytest.raises(D.EventError, match=reason):
            T.parse_notification(bad)


# ------------------------------------------------------------------ reports

def test_report_body_conforms_to_the_document_and_carries_the_store_sums():
    sums = {"power": 3200.0, "energy": 41000.0, "online": 2, "reporting": 2}
    ivs = [T.report_interval(k, T0 + 60 * k, 60, sums, ["DEMAND", "USAGE"]) for k in range(2)]
    body = T.report_body(PROG, "ev-1", "spot", ["DEMAND", "USAGE"], ivs)
    assert list(validator("report").iter_errors(body)) == []
    payloads = body["resources"][0]["intervals"][1]["payloads"]
    assert payloads == [{"type": "DEMAND", "values": [3.2]}, {"type": "USAGE", "values": [41.0]}]
    assert body["resources"][0]["intervals"][1]["intervalPeriod"] == \
        {"start": T.format_time(T0 + 60), "duration": "PT60S"}


def test_only_report_types_the_ven_can_measure_are_wanted():
    obj = event_object(PROG, "SIMPLE", [1], T0, 600,
                       report=[("USAGE", "KWH"), ("STORAGE_CHARGE_LEVEL", "PERCENT"),
                               ("USAGE", "KWH")])
    assert T.wanted_reports(obj) == ["USAGE"]
    assert T.wanted_reports(event_object(PROG, "SIMPLE", [1], T0, 600)) == []


def test_an_event_of_payload_types_this_ven_does_not_know_is_valid_and_acts_on_nothing():
    obj = dict(event_object(PROG, "GHG", [120.0, "x"], T0, 600), id="ev-1")
    ev = T.parse_event(obj)
    assert ev["duration"] == 1200 and ev["signals"][0][:2] == ("GHG", None)
    assert D.acts_on(ev) == (False, False)
    assert D.plans_for(ev, [view("heat_pump")], T0 - 60) == {}
