"""The bridge service: registry, telemetry, command queue, access control,
store-and-forward and restarts (in-process devices, real SQLite store)."""
import asyncio
import contextlib

import pytest

from spot.cloud_bridge import config as C
from spot.cloud_bridge.local_transport import LocalTransport
from spot.cloud_bridge.service import Bridge, Forbidden, BadRequest
from spot.cloud_bridge.store import open_store
from spot.core import frame as F
from spot.core.services import HEAT_PUMP, PRICE
from spot.ports.cpython.simulator import SimDevice

T0 = 1704067200.0


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


async def make_bridge(tmp_path, clock, **cfg):
    config = C.load(None, data=str(tmp_path), **cfg)
    store = await open_store(config.store_url)
    bridge = Bridge(config, store, clock=clock)
    await bridge.start()
    return bridge, LocalTransport(bridge)


async def settle(bridge):
    for _ in range(5):  # deliveries may start one another (a device heard again)
        await asyncio.sleep(0.01)
        await bridge.deliveries_done()


def run(coro):
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def heat_pump_on_bridge(tmp_path, **cfg):
    """A started bridge (config cfg, clock at T0) with heat pump hp-1 registered on its
    in-process transport: (bridge, local transport, clock, device); the bridge stops after."""
    clock = Clock()
    bridge, local = await make_bridge(tmp_path, clock, **cfg)
    try:
        dev = hp()
        await local.connect("hp-1", dev)
        await settle(bridge)   # the clock set that follows a registration
        yield bridge, local, clock, dev
    finally:
        await bridge.stop()


def hp(device_id="hp-1", t=T0):
    return SimDevice("heat_pump", device_id, seed=1, t0=int(t))


def test_announce_registers_device_with_profiles_and_operator_as_owner(tmp_path):
    async def main():
        clock = Clock()
        bridge, local = await make_bridge(tmp_path, clock)
        reply = await local.connect("hp-1", hp())
        op, _, _, body = F.decode(reply)
        assert op == F.RESULT and body == {0: int(T0)}
        device = await bridge.store.get_device("hp-1")
        assert device.presence == "online"
        assert [HEAT_PUMP, 1, 0] in device.services
        assert await bridge.store.role_of("hp-1", "operator") == "owner"
        await bridge.stop()
    run(main())


def test_a_command_queued_as_the_delivery_finds_the_queue_empty_is_delivered(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            claim, late = bridge.writes.claim_and_send, []

            async def claim_then_a_command_comes(device, mid):
                cmd = await claim(device, mid)
                if cmd is None and not late:   # the queue looked empty: now one is queued
                    late.append(await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE,
                                                    {6: 1}))
                return cmd
            bridge.writes.claim_and_send = claim_then_a_command_comes
            bridge._kick("hp-1")   # a delivery with nothing queued
            await settle(bridge)
            assert (await bridge.store.get_command(late[0].id)).status == "done"
            assert dev.node.get(HEAT_PUMP, 6) == 1
    run(main())


def test_a_command_queued_as_the_completion_finds_no_other_is_delivered(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            finish, late, claims = bridge.writes.finish, [], []

            async def finish_then_a_command_comes(command_id, status, result):
                finished, more = await finish(command_id, status, result)
                if not more and not late:   # nothing else was queued: now one is
                    late.append(await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE,
                                                    {6: 1}))
                return finished, more
            bridge.writes.finish = finish_then_a_command_comes
            claim = bridge.writes.claim_and_send

            async def counted_claim(device, mid):
                claims.append(device)
                return await claim(device, mid)
            bridge.writes.claim_and_send = counted_claim
            first = await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 3})
            await settle(bridge)
            assert [c.status for c in await bridge.store.get_commands([first.id, late[0].id])] \
                == ["done", "done"]
            assert dev.node.get(HEAT_PUMP, 6) == 1
            # each command was claimed, and the completion of the last said nothing more
            # was queued: no write to find the queue empty
            assert claims == ["hp-1", "hp-1"]
    run(main())


def test_telemetry_is_stored_and_becomes_latest(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            clock.t = T0 + 120
            await local.uplink("hp-1", dev.advance(int(clock.t)))
            latest = await bridge.store.latest("hp-1")
            assert (HEAT_PUMP, 11) in latest  # outdoor temperature
            assert bridge.metrics.value("telemetry_rows") >= 9
    run(main())


def test_write_command_is_delivered_acknowledged_and_logged_with_actor(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            cmd = await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 1})
            await settle(bridge)
            done = await bridge.store.get_command(cmd.id)
            assert done.status == "done" and done.actor == "operator"
            assert dev.node.get(HEAT_PUMP, 6) == 1
    run(main())


def test_out_of_range_command_ends_in_error_with_the_device_answer(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            cmd = await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 9})
            await settle(bridge)
            done = await bridge.store.get_command(cmd.id)
            assert done.status == "error" and done.result == [4, 6]
            assert dev.node.get(HEAT_PUMP, 6) == 2
    run(main())


def test_unpaired_or_monitor_actor_is_refused_recorded_and_nothing_queued(tmp_path):
    async def main():
        clock = Clock()
        bridge, local = await make_bridge(tmp_path, clock)
        await local.connect("hp-1", hp())
        await bridge.pair("operator", "hp-1", "watcher", "monitor")
        for actor in ("stranger", "watcher"):
            with pytest.raises(Forbidden):
                await bridge.submit(actor, "hp-1", HEAT_PUMP, F.WRITE, {6: 1})
        await bridge.submit("watcher", "hp-1", HEAT_PUMP, F.READ, [6])  # reading is allowed
        cmds = await bridge.store.list_commands("hp-1")
        assert [c.op for c in cmds] == [F.READ]
        audit = await bridge.store.list_audit(target="hp-1")
        assert sum(1 for a in audit if a.action == "refused") == 2
        assert bridge.metrics.value("frames_rejected", reason="not_authorised") == 2
        await bridge.stop()
    run(main())


def test_only_owner_may_pair(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, _, _):
            await bridge.pair("operator", "hp-1", "agg", "aggregator")
            with pytest.raises(Forbidden):
                await bridge.pair("agg", "hp-1", "agg2", "owner")
            with pytest.raises(BadRequest):
                await bridge.pair("operator", "hp-1", "x", "emperor")
    run(main())


def test_commands_for_a_sleeping_device_wait_and_are_delivered_on_wake(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path, offline_after=60) as (bridge, local, clock, dev):
            local.asleep.add("hp-1")
            clock.t = T0 + 120
            await bridge.sweep()
            assert (await bridge.store.get_device("hp-1")).presence == "offline"
            cmd = await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 3})
            await settle(bridge)
            assert (await bridge.store.get_command(cmd.id)).status == "queued"
            assert local.requests == 1   # the clock set after registration only
            local.asleep.discard("hp-1")
            clock.t = T0 + 180
            await local.uplink("hp-1", dev.advance(int(clock.t)))  # heard again
            await settle(bridge)
            assert (await bridge.store.get_command(cmd.id)).status == "done"
            assert dev.node.get(HEAT_PUMP, 6) == 3
    run(main())


def test_queued_commands_survive_a_bridge_restart(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            local.asleep.add("hp-1")
            bridge.presence["hp-1"] = "offline"
            cmd = await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 4})
        await bridge.store.close()
        bridge2, local2 = await make_bridge(tmp_path, clock)
        assert (await bridge2.store.get_command(cmd.id)).status == "queued"
        await local2.connect("hp-1", dev)  # the device comes back
        await settle(bridge2)
        assert (await bridge2.store.get_command(cmd.id)).status == "done"
        assert dev.node.get(HEAT_PUMP, 6) == 4
        await bridge2.stop()
    run(main())


def test_plan_push_is_accepted_by_the_device_and_recorded(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            t = int(T0)
            cmd = await bridge.push_plan("operator", "hp-1", 5, t, t + 3600, 10, {HEAT_PUMP: {6: 1}})
            await settle(bridge)
            assert (await bridge.store.get_command(cmd.id)).status == "done"
            plans = await bridge.store.list_plans("hp-1", T0)
            assert [(p.plan_id, p.status) for p in plans] == [(5, "accepted")]
            assert dev.node.plans.find(5) is not None
    run(main())


def test_group_command_reaches_every_member(tmp_path):
    async def main():
        bridge, local = await make_bridge(tmp_path, Clock())
        devs = {"hp-%d" % i: hp("hp-%d" % i) for i in range(3)}
        for i, d in devs.items():
            await local.connect(i, d)
            await bridge.store.set_groups(i, ["north"])
        done, refused = await bridge.submit_group("operator", "north", HEAT_PUMP, F.WRITE, {6: 3})
        await settle(bridge)
        assert len(done) == 3 and refused == []
        assert all(d.node.get(HEAT_PUMP, 6) == 3 for d in devs.values())
        await bridge.stop()
    run(main())


def test_group_command_skips_and_lists_the_members_the_actor_may_not_command(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, _, dev):
            other = hp("hp-2")
            await local.connect("hp-2", other)
            for device in ("hp-1", "hp-2"):
                await bridge.store.set_groups(device, ["north"])
            await bridge.pair("operator", "hp-2", "agg", "aggregator")
            done, refused = await bridge.submit_group("agg", "north", HEAT_PUMP, F.WRITE, {6: 3})
            await settle(bridge)
            assert [c.device for c in done] == ["hp-2"] and refused == ["hp-1"]
            assert other.node.get(HEAT_PUMP, 6) == 3 and dev.node.get(HEAT_PUMP, 6) == 2
            audit = await bridge.store.list_audit(target="hp-1")
            assert [a.action for a in audit if a.actor == "agg"] == ["refused"]
    run(main())


def test_broadcast_reaches_only_consumers(tmp_path):
    async def main():
        clock = Clock()
        bridge, local = await make_bridge(tmp_path, clock)
        em = SimDevice("energy_manager", "em-1", seed=1, t0=int(T0))
        heat = hp()
        await local.connect("em-1", em)
        await local.connect("hp-1", heat)
        t = int(T0)
        await bridge.broadcast("operator", PRICE, {1: [t, 900, [800, 900, 1200, 700]]})
        assert em.node.signals.get(PRICE) is not None
        assert PRICE not in heat.node.signals
        with pytest.raises(Forbidden):
            await bridge.broadcast("stranger", PRICE, {})
        await bridge.stop()
    run(main())


def test_malformed_and_unknown_device_frames_are_counted_and_change_nothing(tmp_path):
    async def main():
        bridge, local = await make_bridge(tmp_path, Clock())
        assert await bridge.device_frame("local", "hp-1", b"\x16\x10\x00") is None  # no mid
        bad = await bridge.device_frame("local", "hp-1", b"\x16\x10\x00\x07\xa1")
        assert F.decode(bad)[3][0] == 9  # malformed: answered, not acknowledged
        notify = F.encode(F.NOTIFY, HEAT_PUMP, 0, [int(T0), {11: 50}])
        assert F.decode(await bridge.device_frame("local", "ghost", notify))[3][0] == 6
        refused = await bridge.device_frame("local", None, F.encode(F.ANNOUNCE, 0, 0, {0: 5}))
        assert F.decode(refused)[0] == F.ERROR
        assert bridge.metrics.value("frames_rejected", reason="malformed") == 3
        assert bridge.metrics.value("frames_rejected", reason="unknown_device") == 1
        assert await bridge.store.list_devices() == []
        await bridge.stop()
    run(main())


def test_unanswered_command_times_out_and_device_is_retried_later(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            local.asleep.add("hp-1")  # online as far as the bridge knows, but silent
            cmd = await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 3})
            await settle(bridge)
            assert (await bridge.store.get_command(cmd.id)).status == "timeout"
    run(main())


def test_submit_checks_its_arguments(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, _, _):
            with pytest.raises(BadRequest):
                await bridge.submit("operator", "hp-1", HEAT_PUMP, F.NOTIFY, {})
            with pytest.raises(BadRequest):
                await bridge.submit("operator", "hp-1", 300, F.READ)
            with pytest.raises(LookupError):
                await bridge.submit("operator", "nope", HEAT_PUMP, F.READ)
            with pytest.raises(BadRequest):
                await bridge.push_plan("operator", "hp-1", 0, 1, 2, 3, {16: {6: 1}})
    run(main())


def test_one_devices_bad_notify_does_not_spoil_anothers_telemetry(tmp_path):
    async def main():
        clock = Clock()
        bridge, local = await make_bridge(tmp_path, clock)
        await local.connect("hp-1", hp("hp-1"))
        await local.connect("hp-2", hp("hp-2"))
        good = F.encode(F.NOTIFY, HEAT_PUMP, 0, [int(T0), {11: 50}])
        huge_id = F.encode(F.NOTIFY, HEAT_PUMP, 0, [int(T0), {2 ** 31: 1}])
        future = F.encode(F.NOTIFY, HEAT_PUMP, 0, [int(T0) + 10 ** 9, {11: 60}])
        replies = await asyncio.gather(bridge.device_frame("local", "hp-1", good),
                                       bridge.device_frame("local", "hp-2", huge_id),
                                       bridge.device_frame("local", "hp-2", future))
        assert replies[0] is None                               # stored
        assert [F.decode(r)[3][0] for r in replies[1:]] == [9, 9]  # malformed, not stored
        assert (HEAT_PUMP, 11) in await bridge.store.latest("hp-1")
        assert await bridge.store.latest("hp-2") == {}
        await bridge.stop()
    run(main())


def test_after_a_timeout_the_queue_moves_on_when_the_device_is_heard_again(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            local.asleep.add("hp-1")
            first = await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 3})
            second = await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 4})
            await settle(bridge)
            assert (await bridge.store.get_command(first.id)).status == "timeout"
            assert (await bridge.store.get_command(second.id)).status == "queued"
            local.asleep.discard("hp-1")
            clock.t = T0 + 60
            await local.uplink("hp-1", dev.advance(int(clock.t)))  # telemetry: it is back
            await settle(bridge)
            assert (await bridge.store.get_command(second.id)).status == "done"
    run(main())


def test_a_plan_may_not_write_a_service_the_actors_role_may_not(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, _, _):
            await bridge.pair("operator", "hp-1", "agg", "aggregator")
            t = int(T0)
            with pytest.raises(Forbidden):
                await bridge.push_plan("agg", "hp-1", 3, t, t + 600, 5, {1: {1: "x"}})  # device_info
            assert await bridge.store.list_commands("hp-1") == []
            await bridge.push_plan("agg", "hp-1", 3, t, t + 600, 5, {HEAT_PUMP: {6: 1}})
    run(main())


def test_deliveries_are_paced_to_the_configured_number_in_flight(tmp_path):
    async def main():
        bridge, local = await make_bridge(tmp_path, Clock(), commands_in_flight=2)
        try:
            devs = {"hp-%d" % i: hp("hp-%d" % i) for i in range(6)}
            for i, d in devs.items():
                await local.connect(i, d)
                await bridge.store.set_groups(i, ["all"])
            busy, most = [0], [0]
            request = local.request

            async def counting(device, frame, timeout):
                busy[0] += 1
                most[0] = max(most[0], busy[0])
                try:
                    await asyncio.sleep(0.02)
                    return await request(device, frame, timeout)
                finally:
                    busy[0] -= 1
            local.request = counting
            done, _ = await bridge.submit_group("operator", "all", HEAT_PUMP, F.WRITE, {6: 3})
            await settle(bridge)
            assert most[0] == 2
            assert [(await bridge.store.get_command(c.id)).status for c in done] == ["done"] * 6
        finally:
            await bridge.stop()
    run(main())


def test_devices_that_do_not_answer_hold_their_delivery_slots_only_briefly(tmp_path,
                                                                           monkeypatch):
    from spot.cloud_bridge import service as S
    monkeypatch.setattr(S, "SLOT_HOLD", 0.2)

    async def main():
        bridge, local = await make_bridge(tmp_path, Clock(), commands_in_flight=2)
        try:
            devs = {name: hp(name) for name in ("mute-1", "mute-2", "hp-ok")}
            for name, d in devs.items():
                await local.connect(name, d)
            request = local.request

            async def silent_for_mutes(device, frame, timeout):
                if device.startswith("mute"):
                    await asyncio.sleep(timeout)
                    raise TimeoutError("no answer")
                return await request(device, frame, timeout)
            local.request = silent_for_mutes
            for name in ("mute-1", "mute-2"):
                await bridge.submit("operator", name, HEAT_PUMP, F.WRITE, {6: 3}, timeout=3)
            await asyncio.sleep(0.05)                        # both slots taken by the mutes
            cmd = await bridge.submit("operator", "hp-ok", HEAT_PUMP, F.WRITE, {6: 3})
            for _ in range(40):
                if (await bridge.store.get_command(cmd.id)).status == "done":
                    break
                await asyncio.sleep(0.05)
            assert (await bridge.store.get_command(cmd.id)).status == "done"   # within 2 s
            assert devs["hp-ok"].node.get(HEAT_PUMP, 6) == 3
        finally:
            await bridge.stop()
    run(main())


def test_a_command_for_a_device_the_store_has_but_the_cache_not_yet_is_accepted(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, _, dev):
            bridge.known.discard("hp-1")      # as between its registration's commit and the cache
            cmd = await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 1})
            await settle(bridge)
            assert (await bridge.store.get_command(cmd.id)).status == "done"
            with pytest.raises(LookupError):
                await bridge.submit("operator", "ghost", HEAT_PUMP, F.WRITE, {6: 1})
    run(main())
