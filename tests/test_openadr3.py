"""The OpenADR 3 plugin in a real bridge, against FakeVtn3 (a test double) on loopback.

FakeVtn3 (tests/openadr3_vtn_double.py) is a stateful in-memory VTN written
for the tests from the 3.0.1 OpenAPI document; it validates every body the
VEN sends against that document (`vtn.invalid` stays empty). Devices are
`spot sim` fleets over CoAP or in-process SimDevices, with the helpers of
the 2.0b tests (bridge_rig.py).
"""
import asyncio
import contextlib
import logging
import time

import pytest

from netutil import free_tcp_port
from openadr3_vtn_double import FakeVtn3, event_object
from bridge_rig import PluginRig, local_devices, fleet_over_coap, run
from waiting import until
from spot.cloud_bridge import config as C
from spot.cloud_bridge.plugin_api import PluginHost
from spot.cloud_bridge.plugins.openadr3 import factory
from spot.cloud_bridge.plugins.openadr3.ven import plan_id
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store
from spot.core import frame as F
from spot.core.plans import PUSH, CANCEL
from spot.core.services import HEAT_PUMP, ENERGY_MANAGER, PV_INVERTER
from spot.ports.cpython.fleet import Fleet

SG_READY = 6
IMPORT_LIMIT = 11       # energy_manager
REDUCTION = 13          # energy_manager, 0.1 %
PV_POWER_LIMIT = 13     # pv_inverter, W


class Rig3(PluginRig):
    """A bridge with the openadr3 plugin, its VEN as rig.ven."""

    def __init__(self, tmp_path, vtn, role="aggregator", **options):
        PluginRig.__init__(self, tmp_path, "openadr3", factory, dict(
            dict(role=role, vtn_url=vtn.url, client_id="ven-client", client_secret="ven-secret",
                 ven_name="spot-test", poll_interval=0.3, report_interval=1), **options))
        self.vtn = vtn

    async def start(self, coap=False):
        await PluginRig.start(self, coap)
        self.ven = self.plugin.ven
        return self


@contextlib.asynccontextmanager
async def openadr3_rig(tmp_path, *local, coap=False, webhook=False, synced=True, **options):
    """FakeVtn3 with program "flex", and a bridge whose VEN follows it; `local` are
    (profile, id) SimDevices as rig.devs. Yields (vtn, rig, program id); both stop after."""
    vtn = await FakeVtn3(free_tcp_port()).start()
    program = vtn.add_program("flex")
    if webhook:
        options.setdefault("webhook_listen", "127.0.0.1:%d" % free_tcp_port())
    try:
        rig = await Rig3(tmp_path, vtn, **options).start(coap=coap)
        try:
            rig.devs = await local_devices(rig, *local)
            if synced:
                assert await until(lambda: rig.ven.synced.is_set(), 10), "VEN did not sync"
            yield vtn, rig, program["id"]
        finally:
            await rig.stop()
    finally:
        await vtn.stop()


def now():
    return time.time()


def entries(node, pid):
    """The entries of plan pid on the node, or None while it has no such plan."""
    plan = node.plans.find(pid)
    return None if plan is None else plan[4]


async def follows(node, sid, oid, value, timeout=10):
    return await until(lambda: node.get(sid, oid) == value, timeout)


# ------------------------------------------------------------------ end to end over CoAP

def test_simple_event_becomes_acknowledged_plans_on_coap_devices_that_follow_it(tmp_path):
    async def main():
        fleet = Fleet({"heat_pump": 2}, seed=5, t0=int(now()), telemetry=2)
        async with openadr3_rig(tmp_path, coap=True) as (vtn, rig, prog), \
                fleet_over_coap(rig, fleet):
            assert await until(lambda: len(rig.bridge.known) == 2, 10)
            ev = await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 1, 120))
            nodes = [fleet.by_id[h].node for h in ("hp-0001", "hp-0002")]
            assert await until(lambda: all(n.get(HEAT_PUMP, SG_READY) == 1 for n in nodes), 10)
            for h in ("hp-0001", "hp-0002"):
                async def acknowledged(h=h):
                    return [c.status for c in await rig.plan_commands(h)] == ["done"]
                assert await until(acknowledged, 10)
                assert fleet.by_id[h].node.plans.find(plan_id(ev["id"])) is not None
            # the VEN registered itself and one resource per device, all schema-valid
            assert [v["venName"] for v in vtn.vens.values()] == ["spot-test"]
            assert sorted(r["resourceName"] for r in vtn.resources.values()) == \
                ["hp-0001", "hp-0002"]
            assert vtn.invalid == []
    run(main())


def test_report_of_the_event_reaches_the_vtn_with_the_fleets_demand(tmp_path):
    async def main():
        fleet = Fleet({"heat_pump": 2}, seed=5, t0=int(now()), telemetry=1)
        async with openadr3_rig(tmp_path, coap=True) as (vtn, rig, prog), \
                fleet_over_coap(rig, fleet):
            assert await until(lambda: len(rig.bridge.known) == 2, 10)
            ev = await vtn.add_event(event_object(
                prog, "PRICE", [0.3, 0.2], now() - 1, 300, units="KWH", currency="EUR",
                report=[("DEMAND", "KW"), ("USAGE", "KWH")]))

            def reported():
                reps = [r for r in vtn.reports.values() if r["eventID"] == ev["id"]]
                return reps and len(reps[0]["resources"][0]["intervals"]) >= 3 and reps[0]
            assert await until(reported, 15)
            rep = reported()
            assert rep["clientName"] == "spot-test" and rep["programID"] == prog
            assert [d["payloadType"] for d in rep["payloadDescriptors"]] == ["DEMAND", "USAGE"]
            last = rep["resources"][0]["intervals"][-1]["payloads"]
            demand = {p["type"]: p["values"][0] for p in last}["DEMAND"]
            power = 0.0
            for h in ("hp-0001", "hp-0002"):
                power += (await rig.store.latest(h))[(HEAT_PUMP, 1)][0]
            assert demand > 0 and abs(demand - power / 1000) < max(1.0, power / 1000)
            assert vtn.report_puts >= 2 and vtn.invalid == []
    run(main())


def test_report_intervals_made_while_the_vtn_is_away_arrive_when_it_is_back(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig, prog):
            ev = await vtn.add_event(event_object(prog, "SIMPLE", [1], now() - 1, 600,
                                                  report=[("DEMAND", "KW")]))

            def intervals():
                reps = [r for r in vtn.reports.values() if r["eventID"] == ev["id"]]
                return reps[0]["resources"][0]["intervals"] if reps else []
            assert await until(lambda: len(intervals()) >= 1, 10)
            await vtn.stop()
            await asyncio.sleep(3.2)                  # about three intervals fall due
            made = len(rig.ven.reports[ev["id"]]["intervals"])
            assert made >= len(intervals()) + 2
            await vtn.start()
            assert await until(lambda: len(intervals()) >= made, 10)
            assert [iv["id"] for iv in intervals()] == list(range(len(intervals())))
            assert vtn.invalid == []
    run(main())


# ------------------------------------------------------------------ payload types

def test_import_capacity_limit_becomes_an_import_limit_plan(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("energy_manager", "em-1"), ("heat_pump", "hp-1")) \
                as (vtn, rig, prog):
            ev = await vtn.add_event(event_object(
                prog, "IMPORT_CAPACITY_LIMIT", [5.0], now() - 1, 600, units="KW",
                targets=[{"type": "RESOURCE_NAME", "values": ["em-1"]}]))
            node = rig.devs["em-1"].node
            assert await until(lambda: node.plans.find(plan_id(ev["id"])) is not None, 10)
            assert entries(node, plan_id(ev["id"])) == {ENERGY_MANAGER: {IMPORT_LIMIT: 5000}}
            assert await rig.plan_commands("hp-1") == []      # not targeted
    run(main())


def test_export_capacity_limit_caps_the_pv_inverter(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("pv_inverter", "pv-1")) as (vtn, rig, prog):
            ev = await vtn.add_event(event_object(prog, "EXPORT_CAPACITY_LIMIT", [3.0, 1.5],
                                                  now() - 1, 300))
            node = rig.devs["pv-1"].node
            assert await until(lambda: node.plans.find(plan_id(ev["id"])) is not None, 10)
            pv = entries(node, plan_id(ev["id"]))[PV_INVERTER]
            assert pv[PV_POWER_LIMIT][1:] == [300, [3000, 1500]]   # step 300 s, W
            assert await follows(node, PV_INVERTER, PV_POWER_LIMIT, 3000.0)
    run(main())


def test_price_event_reaches_price_consumers_as_one_forecast_frame(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("energy_manager", "em-1"), ("heat_pump", "hp-1")) \
                as (vtn, rig, prog):
            frames = []
            em = rig.devs["em-1"]
            receive = em.receive

            def spy(frame, t, peer=None):
                if peer is None:
                    frames.append(frame)
                return receive(frame, t, peer)
            em.receive = spy
            start = int(now())
            await vtn.add_event(event_object(prog, "PRICE", [0.25, 0.31, 0.12, 0.40] * 9,
                                             start, 900, units="KWH", currency="EUR"))
            assert await until(lambda: frames, 10)
            await asyncio.sleep(0.5)
            assert len(frames) == 1
            op, sid, _, body = F.decode(frames[0])
            assert op == F.NOTIFY and sid == 0x05
            assert body[1][1] == [start, 900, [2500, 3100, 1200, 4000] * 9]
            assert body[1][2] == "EUR"
            assert await rig.plan_commands("hp-1") == []   # prices command nothing
    run(main())


# ------------------------------------------------------------------ changes

def test_changed_event_replaces_the_plan_and_a_deleted_one_withdraws_it(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("energy_manager", "em-1")) as (vtn, rig, prog):
            node = rig.devs["em-1"].node
            ev = await vtn.add_event(event_object(prog, "SIMPLE", [1], now() - 1, 600))
            pid = plan_id(ev["id"])
            assert await until(lambda: node.plans.find(pid) is not None, 10)
            assert entries(node, pid) == {ENERGY_MANAGER: {REDUCTION: 300}}
            changed = dict(ev["intervals"][0], payloads=[{"type": "SIMPLE", "values": [3]}])
            await vtn.change_event(ev["id"], intervals=[changed])
            assert await until(lambda: entries(node, pid) ==
                               {ENERGY_MANAGER: {REDUCTION: 1000}}, 10)
            assert len(node.plans.temp) == 1
            await vtn.delete_event(ev["id"])
            assert await until(lambda: node.plans.find(pid) is None, 10)
            cmds = sorted(await rig.plan_commands("em-1"), key=lambda c: c.id)
            assert [c.body[0] for c in cmds] == [PUSH, PUSH, CANCEL]
            assert await until(lambda: rig.audit("openadr3.withdrawn"), 5)
    run(main())


def test_owner_override_during_an_event_takes_that_device_out_of_it(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1"), ("heat_pump", "hp-2")) \
                as (vtn, rig, prog):
            devs = rig.devs
            ev = await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 1, 600))
            pid = plan_id(ev["id"])
            assert await until(lambda: all(d.node.get(HEAT_PUMP, SG_READY) == 1
                                           for d in devs.values()), 10)
            t = int(now())      # the owner (the operator) forces hp-1 on with its own plan
            await rig.bridge.push_plan("operator", "hp-1", 77, t, t + 600, 250,
                                       {HEAT_PUMP: {SG_READY: 4}})
            assert await until(lambda: devs["hp-1"].node.plans.find(pid) is None, 10)
            assert devs["hp-1"].node.get(HEAT_PUMP, SG_READY) == 4
            assert devs["hp-2"].node.get(HEAT_PUMP, SG_READY) == 1     # still in the event
            assert [a.detail["device"] for a in await rig.audit("openadr3.override")] == ["hp-1"]
            # a change of the event does not bring it back to hp-1
            changed = dict(ev["intervals"][0], payloads=[{"type": "SIMPLE", "values": [3]}])
            await vtn.change_event(ev["id"], intervals=[changed])
            assert await until(lambda: rig.ven.events[ev["id"]]["signals"][0][2][0][2] == 3.0,
                               10)
            await asyncio.sleep(0.3)
            assert devs["hp-1"].node.plans.find(pid) is None
            cmds = sorted(await rig.plan_commands("hp-1"), key=lambda c: c.id)
            assert [c.body[0] for c in cmds] == [PUSH, CANCEL]
    run(main())


# ------------------------------------------------------------------ notifications

def test_notified_event_is_applied_without_waiting_for_a_poll(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1"), webhook=True,
                                poll_interval=3600) as (vtn, rig, prog):
            assert [s["programID"] for s in vtn.subscriptions.values()] == [prog]
            polls = rig.ven.syncs
            node = rig.devs["hp-1"].node
            ev = await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 1, 600))
            assert vtn.deliveries[-1][1:] == ("EVENT", "POST", 200)
            assert await follows(node, HEAT_PUMP, SG_READY, 1, 5)
            await vtn.delete_event(ev["id"])
            assert vtn.deliveries[-1][1:] == ("EVENT", "DELETE", 200)
            assert await follows(node, HEAT_PUMP, SG_READY, 2, 5)
            assert rig.ven.syncs == polls          # all of it through the webhook
            assert vtn.invalid == []
    run(main())


def test_webhook_refuses_a_wrong_token_and_malformed_notifications(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1"), webhook=True,
                                poll_interval=3600) as (vtn, rig, prog):
            url, token = rig.ven.webhook.url, rig.ven.webhook.token
            good = {"objectType": "EVENT", "operation": "POST",
                    "object": dict(event_object(prog, "SIMPLE", [3], now() - 1, 600),
                                   id="ev-x")}
            assert await vtn.deliver(url, "not-the-token", good) == 401
            assert await vtn.deliver(url, None, good) == 401
            assert await vtn.deliver(url, token, None, raw=b"{\"objectType\": ") == 400
            assert await vtn.deliver(url, token, {"objectType": "EVENT", "operation": "EAT",
                                                  "object": {}}) == 400
            bad_event = dict(good, object=dict(good["object"], intervals=[{"id": 0}]))
            assert await vtn.deliver(url, token, bad_event) == 200   # taken, then refused

            async def reasons():
                return sorted(a.detail["reason"] for a in await rig.audit("openadr3.rejected"))
            assert await until(lambda: reasons(), 5)
            await asyncio.sleep(0.3)
            assert await reasons() == ["malformed_event", "webhook_auth", "webhook_auth",
                                       "webhook_malformed", "webhook_malformed"]
            assert await rig.plan_commands("hp-1") == []
            assert rig.devs["hp-1"].node.get(HEAT_PUMP, SG_READY) == 2
            # the same endpoint still takes a good notification
            assert await vtn.deliver(url, token, good) == 200
            assert await follows(rig.devs["hp-1"].node, HEAT_PUMP, SG_READY, 1, 5)
    run(main())


def test_a_poll_that_read_the_list_before_a_notification_does_not_undo_it(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("energy_manager", "em-1"), webhook=True,
                                poll_interval=3600) as (vtn, rig, prog):
            node = rig.devs["em-1"].node
            a = await vtn.add_event(event_object(prog, "SIMPLE", [1], now() - 1, 600))
            b = await vtn.add_event(event_object(prog, "SIMPLE", [1], now() - 1, 600,
                                                 priority=3))
            stale = [dict(a), dict(b)]                      # what a slow poll read
            changed = dict(b["intervals"][0], payloads=[{"type": "SIMPLE", "values": [3]}])
            await vtn.change_event(b["id"], intervals=[changed])
            await vtn.delete_event(a["id"])
            assert await until(lambda: node.plans.find(plan_id(a["id"])) is None, 5)
            assert await until(lambda: entries(node, plan_id(b["id"])) ==
                               {ENERGY_MANAGER: {REDUCTION: 1000}}, 5)
            await rig.ven.reconcile(stale, complete=True)
            await asyncio.sleep(0.3)
            assert node.plans.find(plan_id(a["id"])) is None
            assert entries(node, plan_id(b["id"])) == {ENERGY_MANAGER: {REDUCTION: 1000}}
            assert len(await rig.plan_commands("em-1")) == 4   # push a, push b, push b', cancel a
    run(main())


def test_a_vtn_that_forgot_the_ven_gets_it_registered_again(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig, prog):
            first = rig.ven.ven_id
            vtn.vens.clear()
            vtn.resources.clear()
            await local_devices(rig, ("heat_pump", "hp-2"))   # a resource to create: 404
            assert await until(lambda: [v["venName"] for v in vtn.vens.values()] ==
                               ["spot-test"], 10)
            assert await until(lambda: sorted(r["resourceName"] for r in
                                              vtn.resources.values()) == ["hp-1", "hp-2"], 10)
            assert rig.ven.ven_id != first
    run(main())


# ------------------------------------------------------------------ bad input

def test_malformed_event_is_refused_once_and_changes_nothing(tmp_path, caplog):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig, prog):
            vtn.put_raw_event(dict(event_object(prog, "SIMPLE", [2], now(), 600),
                                   id="ev-bad", intervalPeriod={"start": "yesterday"}))
            assert await until(lambda: rig.audit("openadr3.rejected"), 10)
            await asyncio.sleep(1.0)                  # several polls: still one record
            rejected = await rig.audit("openadr3.rejected")
            assert [a.detail["reason"] for a in rejected] == ["malformed_event"]
            assert "not a date-time" in rejected[0].detail["detail"]
            assert "rejected (malformed_event)" in caplog.text
            assert await rig.plan_commands("hp-1") == []
            # a good event next to it is carried out
            await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 1, 600))
            assert await follows(rig.devs["hp-1"].node, HEAT_PUMP, SG_READY, 1)
    with caplog.at_level(logging.WARNING):
        run(main())


def test_malformed_program_is_refused_once_and_the_others_are_followed(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig, prog):
            vtn.programs["bad"] = {"id": "bad", "objectType": "PROGRAM", "programName": ""}
            assert await until(lambda: rig.audit("openadr3.rejected"), 10)
            await asyncio.sleep(1.0)
            rejected = await rig.audit("openadr3.rejected")
            assert [a.detail["reason"] for a in rejected] == ["malformed_program"]
            await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 1, 600))
            assert await follows(rig.devs["hp-1"].node, HEAT_PUMP, SG_READY, 1)
    run(main())


def test_event_changed_into_garbage_keeps_the_plan_the_devices_have(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig, prog):
            node = rig.devs["hp-1"].node
            ev = await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 1, 600))
            assert await follows(node, HEAT_PUMP, SG_READY, 1)
            vtn.events[ev["id"]] = dict(ev, intervals=[{"id": 0, "payloads": [
                {"type": "SIMPLE", "values": ["high"]}]}])
            assert await until(lambda: rig.audit("openadr3.rejected"), 10)
            await asyncio.sleep(0.7)
            assert node.plans.find(plan_id(ev["id"])) is not None
            assert [c.body[0] for c in await rig.plan_commands("hp-1")] == [PUSH]
    run(main())


def test_event_already_over_is_ignored(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig, prog):
            ev = await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 7200, 600))
            assert await until(lambda: rig.audit("openadr3.ignored"), 10)
            ignored = await rig.audit("openadr3.ignored")
            assert [(a.detail["event"], a.detail["reason"]) for a in ignored] == \
                [(ev["id"], "over")]
            assert await rig.plan_commands("hp-1") == []
    run(main())


def test_overlapping_events_are_flagged_and_the_one_changed_last_governs(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("energy_manager", "em-1")) as (vtn, rig, prog):
            node = rig.devs["em-1"].node
            a = await vtn.add_event(event_object(prog, "SIMPLE", [1], now() - 1, 600))
            assert await until(lambda: node.plans.find(plan_id(a["id"])) is not None, 10)
            b = await vtn.add_event(event_object(prog, "SIMPLE", [3], now() + 60, 600))
            assert await until(lambda: rig.audit("openadr3.overlap"), 10)
            overlap = await rig.audit("openadr3.overlap")
            assert [sorted(o.detail["events"]) for o in overlap] == [sorted([a["id"], b["id"]])]
            # a is changed after b: a governs where they overlap
            changed = dict(a["intervals"][0], payloads=[{"type": "SIMPLE", "values": [2]}])
            await vtn.change_event(a["id"], intervals=[changed])
            assert await until(lambda: entries(node, plan_id(a["id"])) ==
                               {ENERGY_MANAGER: {REDUCTION: 600}}, 10)
            order = [p[0] for p in node.plans.temp]
            assert set(order) == {plan_id(a["id"]), plan_id(b["id"])}
    run(main())


def test_wrong_credentials_are_refused_logged_and_nothing_is_sent(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1"), synced=False,
                                client_secret="wrong") as (vtn, rig, prog):
            await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 1, 600))
            assert await until(lambda: len(vtn.token_requests) >= 3, 10)   # it keeps trying
            assert all(ok is False for _, ok in vtn.token_requests)
            rejected = await rig.audit("openadr3.rejected")     # recorded once, not per try
            assert [a.detail["reason"] for a in rejected] == ["auth"]
            assert rig.bridge.metrics.value("openadr3_auth_refused") >= 3
            assert "invalid_client" in rejected[0].detail["detail"]
            assert vtn.vens == {} and not rig.ven.synced.is_set()
            assert await rig.plan_commands("hp-1") == []
            # the bridge keeps serving its devices
            t = int(now())
            await rig.bridge.push_plan("operator", "hp-1", 7, t, t + 60, 100,
                                       {HEAT_PUMP: {SG_READY: 3}})
            assert await follows(rig.devs["hp-1"].node, HEAT_PUMP, SG_READY, 3)
    run(main())


def test_expired_token_is_fetched_again(tmp_path):
    async def main():
        vtn_ttl = 1
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig, prog):
            vtn.token_ttl = vtn_ttl
            vtn.tokens.clear()                           # the token we hold is now unknown
            await asyncio.sleep(2.5)
            ev = await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 1, 600))
            assert await follows(rig.devs["hp-1"].node, HEAT_PUMP, SG_READY, 1)
            assert rig.ven.client.tokens_fetched >= 3
            assert await rig.audit("openadr3.rejected") == []
            assert ev["id"] in rig.ven.active
    run(main())


def test_vtn_going_away_is_logged_once_and_its_events_apply_when_it_is_back(tmp_path, caplog):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig, prog):
            await vtn.stop()
            await asyncio.sleep(1.5)
            assert rig.ven.link_up is False
            assert rig.bridge.metrics.value("openadr3_unreachable") >= 2
            assert caplog.text.count("VTN unreachable") == 1
            await vtn.start()
            await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 1, 600))
            assert await follows(rig.devs["hp-1"].node, HEAT_PUMP, SG_READY, 1)
            assert "VTN reachable again" in caplog.text
    with caplog.at_level(logging.WARNING):
        run(main())


def test_malformed_answer_from_the_vtn_is_an_error_and_changes_nothing(tmp_path):
    async def main():
        async with openadr3_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig, prog):
            node = rig.devs["hp-1"].node
            ev = await vtn.add_event(event_object(prog, "SIMPLE", [2], now() - 1, 600))
            assert await follows(node, HEAT_PUMP, SG_READY, 1)
            for fault in ("json", "500"):
                vtn.fault = fault
                assert await until(lambda: vtn.fault is None, 5)
            assert await until(lambda: rig.bridge.metrics.value("openadr3_vtn_errors") >= 2, 5)
            await asyncio.sleep(0.7)
            assert node.plans.find(plan_id(ev["id"])) is not None   # nothing withdrawn
            assert [c.body[0] for c in await rig.plan_commands("hp-1")] == [PUSH]
    run(main())


# ------------------------------------------------------------------ configuration

def test_unknown_or_missing_option_stops_the_plugin_at_load(tmp_path):
    async def main():
        config = C.load(None, data=str(tmp_path))
        store = await open_store(config.store_url)
        bridge = Bridge(config, store)
        base = {"vtn_url": "http://127.0.0.1:1/openadr3", "ven_name": "v",
                "client_id": "c", "client_secret": "s"}
        try:
            with pytest.raises(ValueError, match="vtn_urll"):
                PluginHost(bridge, {"openadr3": dict(base, vtn_urll="x")}).load(
                    factories={"openadr3": factory})
            for key in ("client_id", "client_secret", "ven_name"):
                opts = {k: v for k, v in base.items() if k != key}
                with pytest.raises(ValueError, match=key):
                    PluginHost(bridge, {"openadr3": opts}).load(factories={"openadr3": factory})
            with pytest.raises(ValueError, match="webhook_listen"):
                PluginHost(bridge, {"openadr3": dict(base, webhook_listen="nowhere")}).load(
                    factories={"openadr3": factory})
        finally:
            await store.close()
    run(main())


def test_entry_point_names_the_plugin():
    from importlib.metadata import entry_points
    eps = {ep.name: ep for ep in entry_points(group="spot.bridge.plugins")}
    assert eps["openadr3"].load() is factory
