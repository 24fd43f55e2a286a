"""The XMPP plugin end to end: a real Prosody (STARTTLS, SASL), the bridge with the
plugin, a `spot sim` fleet over CoAP, and operators in separate processes (slixmpp)
whose MMS payloads are built and checked independently of the plugin's codec
(tests/xmpp_rig.py)."""
import asyncio

from waiting import until
from xmpp_rig import (XPNS, OPERATOR, MONITOR, NOROLE, OperatorProcess, XmppBridge, xmpp_setup, mms_of,
                      read, read_data_set, data_set_attributes, get_name_list, write,
                      oper_value, error_condition, float_of, float_value, variable_attributes)
from spot.cloud_bridge.iec61850 import model as X
from spot.core import frame as F
from spot.core import model as CM
from spot.core.services import HEAT_PUMP

SG_READY = 6
OUTDOOR_TEMP = 11


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 120))


def domain_of(rig, device="hp-0001"):
    """The MMS domain of a device: IED name + LD instance (IEC 61850-8-1)."""
    return "SPOT" + X.ld_inst(device)


def identifiers(answer):
    return [e.text for e in mms_of(answer).iterfind(".//m:listOfIdentifier/m:Identifier", XPNS)]


async def device_value(rig, sid, oid, device="hp-0001"):
    """What the device itself says now: a READ through the bridge's command queue."""
    cmd = await rig.bridge.submit("operator", device, sid, F.READ, [oid])

    async def done():
        return (await rig.store.get_command(cmd.id)).status == "done"
    assert await until(done, 15)
    return (await rig.store.get_command(cmd.id)).result[oid]


async def commands_for(rig, device="hp-0001"):
    """The WRITE / INVOKE commands the plugin queued for a device (its own READ of the
    device's name plate aside)."""
    return [c for c in await rig.store.list_commands(device)
            if c.actor == "plugin:xmpp" and c.op != F.READ]


# ------------------------------------------------------------------ reads

def test_operator_lists_the_fleet_and_reads_a_measurement_that_matches_the_store(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            op, domain = ops[OPERATOR], domain_of(rig)
            answer = await op.ask(rig.full_jid(), get_name_list(1, 9))
            assert answer.get("type") == "result"
            assert identifiers(answer) == [domain]

            async def telemetry():
                return (HEAT_PUMP, OUTDOOR_TEMP) in await rig.store.latest("hp-0001")
            assert await until(telemetry, 20)
            row = rig.plugin.acsi.acsi.model.by_device["hp-0001"].lns["MMET1"].dos["EnvTmp"].point.row
            before = (await rig.store.latest("hp-0001"))[(HEAT_PUMP, OUTDOOR_TEMP)][0]
            answer = await op.ask(rig.full_jid(), read(2, (domain, "MMET1$MX$EnvTmp$mag$f")))
            after = (await rig.store.latest("hp-0001"))[(HEAT_PUMP, OUTDOOR_TEMP)][0]
            pdu = mms_of(answer)
            assert pdu.findtext(".//m:invokeID", namespaces=XPNS) == "2"
            got = float_of(pdu.findtext(".//m:listOfAccessResult/m:success/m:floating-point",
                                        namespaces=XPNS))
            assert any(abs(got - CM.from_wire(row, w)) < 1e-4 for w in (before, after)), \
                (got, before, after)
    run(main())


def test_name_plate_the_device_does_not_send_as_telemetry_is_read_from_it(tmp_path, prosody):
    async def main():
        from spot.core.services import DEVICE_INFO
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            vendor = await device_value(rig, DEVICE_INFO, 1)
            assert vendor

            async def plate():
                answer = await ops[OPERATOR].ask(rig.full_jid(), read(1, (domain_of(rig), "LPHD1$DC$PhyNam$vendor")))
                return mms_of(answer).findtext(".//m:success/m:visible-string", namespaces=XPNS)
            assert await until(lambda: plate(), 20, every=0.5)
            assert await plate() == vendor
    run(main())


def test_data_set_directory_and_data_set_read_answer_every_member(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            op, domain = ops[OPERATOR], domain_of(rig)
            names = identifiers(await op.ask(rig.full_jid(), get_name_list(1, 2, domain)))
            assert "LLN0$All" in names and "LLN0$ZHPU1" in names
            attrs = mms_of(await op.ask(rig.full_jid(), data_set_attributes(2, domain, "LLN0$ZHPU1")))
            members = [e.text for e in attrs.iterfind(".//m:listOfVariable/m:SEQUENCE//m:itemId", XPNS)]
            assert "ZHPU1$ST$SgRdy" in members and "ZHPU1$MX$Cop" in members
            values = mms_of(await op.ask(rig.full_jid(), read_data_set(3, domain, "LLN0$ZHPU1")))
            results = values.find(".//m:listOfAccessResult", XPNS)
            assert len(results) == len(members)
            assert all(etree_local(r) == "success" for r in results)
    run(main())


def etree_local(el):
    return el.tag.rsplit("}", 1)[-1]


def test_variable_access_attributes_describe_a_data_object_as_iec_61850_8_1_types(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            answer = await ops[OPERATOR].ask(rig.full_jid(), variable_attributes(1, domain_of(rig), "MMET1$MX$EnvTmp"))
            comps = mms_of(answer).find(".//m:typeDescription/m:structure/m:components", XPNS)
            names = [c.findtext("m:componentName", namespaces=XPNS) for c in comps]
            assert names == ["mag", "q", "t"]
            mag, q, t = (c.find("m:componentType/m:typeDescription", XPNS) for c in comps)
            assert mag.find(".//m:floating-point/m:format-width", XPNS).text == "32"
            assert q.findtext("m:bit-string", namespaces=XPNS) == "13"
            assert t.find("m:utc-time", XPNS) is not None
    run(main())


def test_unknown_object_is_an_mms_failure_in_a_normal_result(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            answer = await ops[OPERATOR].ask(rig.full_jid(), read(1, (domain_of(rig), "ZHPU1$ST$Nope$stVal")))
            assert answer.get("type") == "result"
            assert mms_of(answer).findtext(".//m:listOfAccessResult/m:failure",
                                           namespaces=XPNS) == "10"   # object-non-existent
    run(main())


# ------------------------------------------------------------------ controls

def test_operator_selects_and_operates_a_control_the_simulated_device_follows(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            op, domain = ops[OPERATOR], domain_of(rig)
            target = 4 if await device_value(rig, HEAT_PUMP, SG_READY) != 4 else 3
            sel = await op.ask(rig.full_jid(), write(1, domain, "ZHPU1$CO$SgRdy$SBOw",
                                                     oper_value(target)), "set")
            assert mms_of(sel).find(".//m:write/m:success", XPNS) is not None
            opr = await op.ask(rig.full_jid(), write(2, domain, "ZHPU1$CO$SgRdy$Oper",
                                                     oper_value(target)), "set")
            assert mms_of(opr).find(".//m:write/m:success", XPNS) is not None
            assert await device_value(rig, HEAT_PUMP, SG_READY) == target
            assert [c.status for c in await commands_for(rig)] == ["done"]
    run(main())


def test_operator_sets_a_setting_the_simulated_device_takes(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            target = 47.5 if await device_value(rig, HEAT_PUMP, 7) != 475 else 42.5
            w = await ops[OPERATOR].ask(rig.full_jid(), write(1, domain_of(rig), "ZHPU1$SP$FlwTmpSpt$setMag$f",
                                                              float_value(target)), "set")
            assert mms_of(w).find(".//m:write/m:success", XPNS) is not None
            assert await device_value(rig, HEAT_PUMP, 7) == round(target * 10)   # 0.1 Cel on the wire
    run(main())


def test_setting_out_of_the_devices_range_is_refused_and_sends_nothing(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            w = await ops[OPERATOR].ask(rig.full_jid(), write(1, domain_of(rig), "ZHPU1$SP$FlwTmpSpt$setMag$f",
                                                              float_value(95.0)), "set")
            assert mms_of(w).findtext(".//m:write/m:failure", namespaces=XPNS) == "11"  # value invalid
            assert await commands_for(rig) == []
    run(main())


def test_operate_without_select_on_an_sbo_control_is_refused_and_sends_nothing(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            opr = await ops[OPERATOR].ask(rig.full_jid(), write(1, domain_of(rig), "ZHPU1$CO$SgRdy$Oper",
                                                                oper_value(3)), "set")
            assert mms_of(opr).findtext(".//m:write/m:failure", namespaces=XPNS) == "3"
            assert await commands_for(rig) == []
    run(main())


def test_monitor_reads_but_its_control_is_denied_and_reaches_no_device(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody, users=(MONITOR,)) as (rig, fleet, ops):
            mon, domain = ops[MONITOR], domain_of(rig)
            answer = await mon.ask(rig.full_jid(), read(1, (domain, "LLN0$ST$Beh$stVal")))
            assert mms_of(answer).findtext(".//m:success/m:integer", namespaces=XPNS) == "1"
            for i, part in enumerate(("SBOw", "Oper"), 2):
                w = await mon.ask(rig.full_jid(), write(i, domain, "ZHPU1$CO$SgRdy$" + part,
                                                        oper_value(1)), "set")
                assert mms_of(w).findtext(".//m:write/m:failure", namespaces=XPNS) == "3"
            assert await commands_for(rig) == []
    run(main())


def test_jid_without_a_role_is_forbidden_and_reaches_no_device(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody, users=(NOROLE,)) as (rig, fleet, ops):
            for i, payload in enumerate((read(1, (domain_of(rig), "LLN0$ST$Beh$stVal")),
                                         write(2, domain_of(rig), "ZHPU1$CO$SgRdy$Oper",
                                               oper_value(1)))):
                answer = await ops[NOROLE].ask(rig.full_jid(), payload, "set")
                assert error_condition(answer) == ("auth", "forbidden")
                assert answer.find(".//m:MMSpdu", XPNS) is None
            assert await commands_for(rig) == []
    run(main())


def test_jid_without_a_role_is_refused_presence_and_gets_no_reports(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody, users=(NOROLE, OPERATOR)) as (rig, fleet, ops):
            operator, norole = ops[OPERATOR], ops[NOROLE]
            # the operator (subscribed at the same time) gets device presence and reports
            assert await until(lambda: operator.presence_of(rig.full_jid("hp-0001")) == "available", 20)
            assert await until(lambda: len(operator.stanzas("message")) >= 2, 20)
            # (slixmpp follows its "unsubscribed" with an "unavailable", which says nothing)
            seen = [p for p in norole.stanzas("presence") + norole.stanzas("message")
                    if p.get("from", "").startswith(rig.jid + "/") and p.get("type") != "unavailable"]
            assert seen == []
            roster = rig.plugin.main.client.roster[rig.jid]
            assert roster[operator.jid]["from"] and not roster[norole.jid]["from"]
    run(main())


def test_wrong_password_is_refused_by_the_server(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody, users=()) as (rig, fleet, ops):
            bad = OperatorProcess(prosody, OPERATOR, "not-the-password")
            try:
                assert await until(lambda: bad.seen("auth_failed"), 20)
                assert not bad.seen("ready")
            finally:
                bad.stop()
    run(main())


# ------------------------------------------------------------------ presence and reports

def test_device_presence_goes_unavailable_when_it_stops_and_available_when_it_returns(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            op, device = ops[OPERATOR], rig.full_jid("hp-0001")
            assert await until(lambda: op.presence_of(device) == "available", 20)
            fleet.stop()
            assert await until(lambda: op.presence_of(device) == "unavailable", 30)
            fleet.start()
            assert await until(lambda: op.presence_of(device) == "available", 30)
    run(main())


def test_sleepy_device_shows_away_while_it_sleeps_and_available_when_it_wakes(tmp_path, prosody):
    async def main():
        import time
        from spot.cloud_bridge.local_transport import LocalTransport
        from spot.ports.cpython.simulator import SimDevice
        prosody.register(OPERATOR, OPERATOR + "-pw")
        rig = await XmppBridge(tmp_path, prosody).start(offline_after=2)
        op = None
        try:
            local = LocalTransport(rig.bridge)
            t0 = int(time.time())
            dev = SimDevice("heat_pump", "hp-sleepy", seed=1, t0=t0, telemetry=60)
            dev.node.sleepy = True
            await local.connect("hp-sleepy", dev)
            op = await OperatorProcess(prosody, OPERATOR, OPERATOR + "-pw").ready()
            op.command(op="subscribe", to=rig.jid)
            op.command(op="presence")
            device = rig.full_jid("hp-sleepy")
            assert await until(lambda: op.presence_of(device) == "available"
                               and op.show_of(device) == "away", 30)
            await local.uplink("hp-sleepy", dev.advance(t0 + 60))     # it wakes and reports
            assert await until(lambda: op.presence_of(device) == "available"
                               and op.show_of(device) == "", 20)
        finally:
            if op is not None:
                op.stop()
            await rig.stop()
    run(main())


def test_operator_receives_an_information_report_from_the_device_resource(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            op, device = ops[OPERATOR], rig.full_jid("hp-0001")

            def report():
                return next((m for m in op.stanzas("message") if m.get("from") == device), None)
            assert await until(lambda: report() is not None, 20)
            pdu = mms_of(report())
            rpt = pdu.find("m:unconfirmed-PDU/m:unconfirmedService/m:informationReport", XPNS)
            assert rpt.findtext(".//m:variableListName/m:vmd-specific", namespaces=XPNS) == "RPT"
            results = list(rpt.find("m:listOfAccessResult", XPNS))
            rpt_id = results[0].findtext("m:visible-string", namespaces=XPNS)
            assert rpt_id == domain_of(rig) + "/LLN0$RP$urcbAll"
            assert results[4].findtext("m:visible-string", namespaces=XPNS) == \
                domain_of(rig) + "/LLN0$All"
            inclusion = results[5].findtext("m:bit-string", namespaces=XPNS)
            included = inclusion.count("1")
            # RptID, OptFlds, SeqNum, TimeOfEntry, DatSet, inclusion, values, reason codes
            assert included >= 1 and len(results) == 6 + 2 * included
    run(main())


def test_prosody_restart_mid_session_then_presence_reports_and_a_control_work_again(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            ops[OPERATOR].stop()
            connects = rig.plugin.main.connects
            prosody.restart()
            assert await until(lambda: rig.plugin.main.connects > connects
                               and rig.plugin.main.up.is_set(), 40), "the plugin did not reconnect"
            op = await OperatorProcess(prosody, OPERATOR, OPERATOR + "-pw").ready()
            try:
                op.command(op="presence")
                assert await until(lambda: op.presence_of(rig.full_jid("hp-0001")) == "available", 40)
                target = 4 if await device_value(rig, HEAT_PUMP, SG_READY) != 4 else 3
                domain = domain_of(rig)
                for i, part in enumerate(("SBOw", "Oper"), 1):
                    w = await op.ask(rig.full_jid(), write(i, domain, "ZHPU1$CO$SgRdy$" + part,
                                                           oper_value(target)), "set")
                    assert mms_of(w).find(".//m:write/m:success", XPNS) is not None
                assert await device_value(rig, HEAT_PUMP, SG_READY) == target
                assert await until(lambda: any(m.get("from") == rig.full_jid("hp-0001")
                                               for m in op.stanzas("message")), 20), "no reports"
            finally:
                op.stop()
    run(main())


# ------------------------------------------------------------------ bad stanzas

NS_CTX = '<AssociationContext xmlns="http://www.iec.ch/61850/2015/SCSM_8_2" id="x">%s</AssociationContext>'


def test_payload_that_is_not_valid_xer_gets_bad_request(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            bad = NS_CTX % "<MMSpdu><confirmed-RequestPDU><invokeID>x</invokeID></confirmed-RequestPDU></MMSpdu>"
            assert error_condition(await ops[OPERATOR].ask(rig.full_jid(), bad)) == \
                ("modify", "bad-request")
    run(main())


def test_association_context_without_one_mms_pdu_gets_bad_request(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            assert error_condition(await ops[OPERATOR].ask(rig.full_jid(), NS_CTX % "")) == \
                ("modify", "bad-request")
    run(main())


def test_iq_of_an_unknown_namespace_gets_feature_not_implemented(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            answer = await ops[OPERATOR].ask(rig.full_jid(), '<query xmlns="urn:example:nothing"/>')
            assert error_condition(answer) == ("cancel", "feature-not-implemented")
    run(main())


def test_stanza_over_the_size_limit_gets_policy_violation_and_the_bridge_keeps_serving(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody) as (rig, fleet, ops):
            op, domain = ops[OPERATOR], domain_of(rig)
            huge = read(1, *[(domain, "ZHPU1$MX$Cop$mag$f")] * 300)
            assert len(huge) > rig.plugin.guard.max_stanza_bytes
            assert error_condition(await op.ask(rig.full_jid(), huge)) == ("modify", "policy-violation")
            answer = await op.ask(rig.full_jid(), read(2, (domain, "LLN0$ST$Beh$stVal")))
            assert answer.get("type") == "result"
    run(main())


def test_iq_flood_gets_resource_constraint_then_the_bridge_serves_again(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody, rate=2, burst=5) as (rig, fleet, ops):
            op, domain = ops[OPERATOR], domain_of(rig)
            answers = await asyncio.gather(*(op.ask(rig.full_jid(), read(i, (domain, "LLN0$ST$Beh$stVal")))
                                             for i in range(1, 31)))
            refused = [a for a in answers if a.get("type") == "error"]
            assert len(refused) >= 20
            assert {error_condition(a) for a in refused} == {("wait", "resource-constraint")}
            await asyncio.sleep(1.5)
            answer = await op.ask(rig.full_jid(), read(40, (domain, "LLN0$ST$Beh$stVal")))
            assert answer.get("type") == "result"
    run(main())


def test_malformed_xml_ends_only_the_senders_stream_and_the_bridge_keeps_serving(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody, users=(OPERATOR, MONITOR)) as (rig, fleet, ops):
            ops[OPERATOR].command(op="send", xml="<iq type='get' to='%s' id='m1'><unclosed></iq>"
                                  % rig.full_jid())
            assert await until(lambda: ops[OPERATOR].seen("disconnected"), 20)
            answer = await ops[MONITOR].ask(rig.full_jid(), read(1, (domain_of(rig), "LLN0$ST$Beh$stVal")))
            assert answer.get("type") == "result"
            assert rig.plugin.main.up.is_set()
    run(main())


def test_device_resource_serves_only_its_own_logical_device(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody, count=2) as (rig, fleet, ops):
            op = ops[OPERATOR]
            mine, other = domain_of(rig, "hp-0001"), domain_of(rig, "hp-0002")
            assert identifiers(await op.ask(rig.full_jid("hp-0001"), get_name_list(1, 9))) == [mine]
            answer = await op.ask(rig.full_jid("hp-0001"), read(2, (other, "LLN0$ST$Beh$stVal")))
            assert mms_of(answer).findtext(".//m:listOfAccessResult/m:failure", namespaces=XPNS) == "10"
    run(main())


def test_bridge_with_a_refused_password_retries_with_back_off_and_keeps_running(tmp_path, prosody):
    async def main():
        rig = await XmppBridge(tmp_path, prosody, password="wrong").start(wait_up=False)
        try:
            main_session = rig.plugin.main
            assert await until(lambda: main_session.auth_failures >= 2, 20)
            await asyncio.sleep(3)
            # back-off 0, 1, 2, 4 s: a handful of attempts, not a tight loop
            assert main_session.auth_failures <= 5 and not main_session.up.is_set()
            assert (await rig.bridge.store.list_devices()) == []   # the bridge still answers
        finally:
            await rig.stop()
    run(main())


def test_disco_items_list_the_device_resources_to_a_role_holder_only(tmp_path, prosody):
    async def main():
        async with xmpp_setup(tmp_path, prosody, users=(OPERATOR, NOROLE), count=2) as (rig, fleet, ops):
            disco = '<query xmlns="http://jabber.org/protocol/disco#items"/>'
            answer = await ops[OPERATOR].ask(rig.full_jid(), disco)
            items = answer.findall("{http://jabber.org/protocol/disco#items}query/"
                                   "{http://jabber.org/protocol/disco#items}item")
            assert sorted((i.get("jid"), i.get("name")) for i in items) == [
                (rig.full_jid("hp-0001"), domain_of(rig, "hp-0001")),
                (rig.full_jid("hp-0002"), domain_of(rig, "hp-0002"))]
            assert error_condition(await ops[NOROLE].ask(rig.full_jid(), disco)) == ("auth", "forbidden")
    run(main())
