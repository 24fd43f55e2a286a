"""The XMPP plugin's parts without a server: option checks, roles and rate limits,
and the IEC 61850-8-1 mapping of values to MMS Data."""
import struct

import pytest

from spot.cloud_bridge.plugins.xmpp import check_options
from spot.cloud_bridge.plugins.xmpp import mms_data as D
from spot.cloud_bridge.plugins.xmpp.guard import Guard, check_roles

BASE = {"jid": "bridge@example.net", "password": "pw"}


def test_options_fill_in_defaults():
    opts = check_options(BASE)
    assert opts["resource"] == "gateway" and opts["operators"] == {} and opts["server"] is None


def test_unknown_option_is_refused():
    with pytest.raises(ValueError, match="unknown option"):
        check_options(dict(BASE, colour="blue"))


def test_full_jid_as_the_bridge_jid_is_refused():
    with pytest.raises(ValueError, match="bare JID"):
        check_options(dict(BASE, jid="bridge@example.net/x"))


def test_missing_password_is_refused():
    with pytest.raises(ValueError, match="password"):
        check_options({"jid": "bridge@example.net"})


def test_password_comes_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("SPOT_TEST_XMPP_PW", "from-env")
    assert check_options({"jid": "b@x", "password_env": "SPOT_TEST_XMPP_PW"})["password"] == "from-env"


def test_server_must_be_host_and_port():
    with pytest.raises(ValueError, match="host:port"):
        check_options(dict(BASE, server="example.net"))
    assert check_options(dict(BASE, server="127.0.0.1:5222"))["server"] == ("127.0.0.1", 5222)


def test_operator_role_other_than_monitor_or_operator_is_refused():
    with pytest.raises(ValueError, match="role"):
        check_roles({"op@example.net": "owner"})


def test_roles_are_looked_up_by_bare_jid_case_insensitively():
    g = Guard(check_roles({"Op@Example.net": "operator", "mon@example.net": "monitor"}))
    assert g.role("op@example.net") == "operator" and g.can_control("op@example.net")
    assert g.role("mon@example.net") == "monitor" and not g.can_control("mon@example.net")
    assert g.role("stranger@example.net") is None


def test_rate_limit_admits_the_burst_then_refills_at_the_rate():
    now = [0.0]
    g = Guard({}, rate=2, burst=3, clock=lambda: now[0])
    assert [g.admit("a@x") for _ in range(4)] == [True, True, True, False]
    assert g.admit("b@x")                       # per JID
    now[0] = 0.5                                # one token back after 1/rate s
    assert g.admit("a@x") and not g.admit("a@x")


def test_float32_is_exponent_width_8_then_ieee_single():
    assert D.to_data({"name": "f", "btype": "FLOAT32"}, 21.5) == \
        ("floating-point", b"\x08" + struct.pack(">f", 21.5))


def test_quality_is_a_13_bit_string_with_bit_0_first():
    # validity invalid (bits 0-1 = 01), oldData (bit 7)
    assert D.to_data({"name": "q", "btype": "Quality"}, (1 << 1) | (1 << 7)) == \
        ("bit-string", (bytes([0b01000001, 0]), 13))


def test_dbpos_on_is_bit_string_10():
    assert D.to_data({"name": "stVal", "btype": "Dbpos"}, 2) == ("bit-string", (b"\x80", 2))
    assert D.from_data({"name": "stVal", "btype": "Dbpos"}, ("bit-string", (b"\x80", 2))) == 2


def test_timestamp_round_trips_to_a_24_bit_fraction():
    data = D.to_data({"name": "t", "btype": "Timestamp"}, 1700000000.25)
    assert data[0] == "utc-time" and len(data[1]) == 8
    assert D.from_data({"name": "t", "btype": "Timestamp"}, data) == 1700000000.25


def test_structure_becomes_named_members():
    t = {"name": "Oper", "members": [{"name": "ctlVal", "btype": "INT32"},
                                     {"name": "Test", "btype": "BOOLEAN"}]}
    assert D.from_data(t, ("structure", [("integer", 3), ("boolean", False)])) == \
        {"ctlVal": 3, "Test": False}


def test_data_of_the_wrong_kind_is_refused():
    with pytest.raises(D.DataError):
        D.from_data({"name": "ctlVal", "btype": "INT32"}, ("boolean", True))


def test_integer_beyond_its_width_is_refused():
    with pytest.raises(D.DataError):
        D.from_data({"name": "ctlNum", "btype": "INT8U"}, ("unsigned", 256))


def test_visible_string_type_is_variable_length_up_to_its_size():
    assert D.type_description({"name": "d", "btype": "VisString255"}) == ("visible-string", -255)


def test_acsi_read_many_answers_like_read_and_names_the_unknown_item(tmp_path):
    import asyncio
    from iec61850_rig import bridge_with_devices
    from spot.cloud_bridge.iec61850 import acsi as A

    async def main():
        async with bridge_with_devices(tmp_path, ("heat_pump", "hp-1")) as (bridge, ctx, local, devs):
            acsi = A.Acsi(ctx)
            await acsi.refresh()
            domain = acsi.server_directory()[0]
            items = ["LLN0$ST$Beh", "ZHPU1$MX$Cop$mag$f", "ZHPU1$ST$Nope"]
            got = await acsi.read_many(domain, items)
            beh, cop = await acsi.read(domain, items[0]), await acsi.read(domain, items[1])
            assert got[0]["stVal"] == beh["stVal"] and got[1] == cop   # (Beh's t is "now")
            assert isinstance(got[2], A.AcsiError) and got[2].code == A.OBJECT_NON_EXISTENT
    asyncio.run(main())


def _session():
    from spot.cloud_bridge.plugins.xmpp.session import Session

    async def on_iq(session, iq):
        pass
    return Session("bridge@example.net", "pw", "hp-1", on_iq)


def test_stanzas_sent_while_down_are_kept_in_order_up_to_the_bound(monkeypatch):
    import asyncio
    from spot.cloud_bridge.plugins.xmpp import session as S

    async def main():
        monkeypatch.setattr(S, "MAX_PENDING", 3)
        s = _session()
        for i in range(5):
            s.send(i)
        assert list(s._pending) == [2, 3, 4] and s.dropped == 2
    asyncio.run(main())


def test_registry_presence_maps_to_xmpp_presence():
    import asyncio

    async def main():
        s = _session()
        sent = []
        s.client.send_presence = lambda **kw: sent.append(kw)
        s.up.set()
        for p in ("online", "sleeping", "offline"):
            s.set_presence(p)
        assert sent == [{"pstatus": "online"}, {"pstatus": "sleeping", "pshow": "away"},
                        {"pstatus": "offline", "ptype": "unavailable"}]
    asyncio.run(main())


def _services_on_a_heat_pump(tmp_path, check):
    """MmsServices on a bridge with one in-process heat pump; check(services, domain)."""
    import asyncio
    from iec61850_rig import bridge_with_devices
    from spot.cloud_bridge.plugins.xmpp.mms_services import MmsServices

    async def main():
        async with bridge_with_devices(tmp_path, ("heat_pump", "hp-1")) as (bridge, ctx, local, devs):
            s = MmsServices(ctx, check_options(BASE))
            await s.fresh()
            try:
                await check(s, s.acsi.server_directory()[0])
            finally:
                await s.stop()
    asyncio.run(main())


def _request(kind, body, invoke_id=1):
    return {"invokeID": invoke_id, "confirmedServiceRequest": (kind, body)}


def test_get_name_list_pages_with_more_follows_and_continue_after(tmp_path):
    async def check(s, domain):
        body = {"objectClass": ("basicObjectClass", 0), "objectScope": ("domainSpecific", domain)}
        names = []
        while True:
            kind, resp = await s.handle(_request("getNameList", dict(body)), None, False, "m@x")
            page = resp["confirmedServiceResponse"][1]
            names += page["listOfIdentifier"]
            if not page["moreFollows"]:
                break
            body["continueAfter"] = page["listOfIdentifier"][-1]
        assert names == sorted(s.acsi.name_list(domain)) and len(names) > 100
    _services_on_a_heat_pump(tmp_path, check)


def test_read_of_a_functional_constraint_answers_all_its_data_objects(tmp_path):
    async def check(s, domain):
        spec = ("listOfVariable", [{"variableSpecification": ("name", ("domain-specific", {
            "domainId": domain, "itemId": "STMP1$MX"}))}])
        kind, resp = await s.handle(_request("read", {"variableAccessSpecificatn": spec}),
                                    None, False, "m@x")
        (result,) = resp["confirmedServiceResponse"][1]["listOfAccessResult"]
        tmp = result[1][1][0]                    # STMP1$MX: {Tmp: {mag: {f}, q, t}}
        assert result[0] == "success" and tmp[0] == "structure"
        assert [d[0] for d in tmp[1]] == ["structure", "bit-string", "utc-time"]
    _services_on_a_heat_pump(tmp_path, check)
