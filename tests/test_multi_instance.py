"""Several `spot bridge` instances on one PostgreSQL store and one mosquitto broker
(docs/scale-out.md): real bridge processes, a real PostgreSQL server, a real broker.

Devices run in the test process on the code a board runs (CoapDevice over
DeviceServer, as in test_bridge_faults) or as paho MQTT clients. A CoAP device
is routed through the instance it registered with; a command posted to any
instance goes out through that one; when an instance is killed (SIGKILL) its
devices register with a survivor, which takes the route over and delivers.
"""
import asyncio
import itertools
import time

import pytest

import postgres
from bridge_process import BridgeProcess, bridges  # noqa: F401  (a fixture)
from test_bridge_faults import (Devices, announce, command_status, missing_rows, notify,
                                serve, COMMAND, SG_READY)
from command_states import claimed
from waiting import until
from spot.cloud_bridge.event_relay import MAX_PAYLOAD, pack, unpack
from spot.cloud_bridge.instances import (INSTANCE_LOCK, _s_ddl, _s_orphaned_claims,
                                        _s_take_routes, instance_key)
from spot.cloud_bridge.leader import Leadership
from spot.cloud_bridge.store import open_store
from spot.core.services import HEAT_PUMP
from spot.ports.cpython.fleet import Fleet

_numbers = itertools.count(1)
LONG = 3600   # a device's registration lifetime: it registers once in a test


@pytest.fixture(scope="module")
def pg_server():
    server = postgres.PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server):
    name = "multi%d" % next(_numbers)
    yield pg_server.create_database(name)
    pg_server.drop_database(name)


@pytest.fixture
def pair(bridges, pg_url, broker):
    """Instances a and b of one deployment: one PostgreSQL store, one broker ($share)."""
    def make(name):
        return bridges(offline_after=60, mqtt="mqtt://127.0.0.1:%d" % broker.port,
                       toml='store = "%s"\ninstance = "%s"\n[mqtt]\nshare_group = "spot"\n'
                       % (pg_url, name))
    return make("a"), make("b")


async def devices_of(bridge):
    status, devices = await asyncio.to_thread(bridge.call, "GET", "/api/v1/devices")
    assert status == 200
    return {d["id"]: d["presence"] for d in devices}


async def post_command(bridge, device):
    status, cmd = await asyncio.to_thread(bridge.call, "POST",
                                          "/api/v1/devices/%s/commands" % device, COMMAND)
    assert status == 202, cmd
    return cmd["id"]


def test_devices_register_through_either_instance_and_both_list_them(pair):
    a, b = pair
    fleet = Fleet({"heat_pump": 2}, seed=11, t0=int(time.time()))

    async def main():
        servers = [await serve(fleet.devices[0].node, a.coap, lambda ms: int(time.time())),
                   await serve(fleet.devices[1].node, b.coap, lambda ms: int(time.time()))]
        try:
            async def both_listed():
                listed = [set(await devices_of(x)) for x in (a, b)]
                return all({"hp-0001", "hp-0002"} <= ids for ids in listed)
            assert await until(both_listed), "a device registered on one instance is missing"
        finally:
            for s in servers:
                s.close()
    asyncio.run(main())


def test_a_command_posted_to_one_instance_reaches_a_device_routed_through_the_other(pair):
    a, b = pair
    fleet = Fleet({"heat_pump": 1}, seed=12, t0=int(time.time()))
    node = fleet.devices[0].node

    async def main():
        server = await serve(node, b.coap, lambda ms: int(time.time()), lifetime=LONG)
        try:
            async def registered():
                return server.device.registrations == 1 and \
                    (await devices_of(a)).get("hp-0001") == "online"
            assert await until(registered)
            registrations = server.device.registrations
            cid = await post_command(a, "hp-0001")

            async def done():
                return await command_status(a, cid) == "done"
            assert await until(done), await command_status(a, cid)
            assert node.get(HEAT_PUMP, SG_READY) == 4
            # b was told (a wake-up): it did not wait for the device to register again
            assert server.device.registrations == registrations
            assert await asyncio.to_thread(a.metric, "wakeups_sent") >= 1
            assert await asyncio.to_thread(b.metric, "routes_held") == 1
            assert await asyncio.to_thread(a.metric, "routes_held") == 0
        finally:
            server.close()
    asyncio.run(main())


def test_a_group_command_posted_to_one_instance_reaches_devices_routed_through_both(pair):
    a, b = pair
    fleet = Fleet({"heat_pump": 4}, seed=14, t0=int(time.time()))
    nodes = [d.node for d in fleet.devices]

    async def main():
        servers = [await serve(node, (a, b)[k % 2].coap, lambda ms: int(time.time()),
                               lifetime=LONG) for k, node in enumerate(nodes)]
        try:
            async def registered():
                return all(s.device.registrations == 1 for s in servers)
            assert await until(registered)
            for d in fleet.devices:
                status, _ = await asyncio.to_thread(
                    b.call, "PUT", "/api/v1/devices/%s/groups" % d.device_id, {"groups": ["g"]})
                assert status == 200
            status, out = await asyncio.to_thread(a.call, "POST", "/api/v1/groups/g/commands",
                                                  COMMAND)
            assert status in (200, 202) and len(out["commands"]) == 4, out
            ids = [c["id"] for c in out["commands"]]

            async def all_done():
                return [await command_status(a, cid) for cid in ids] == ["done"] * 4
            assert await until(all_done, timeout=30)
            assert [n.get(HEAT_PUMP, SG_READY) for n in nodes] == [4] * 4
            assert [await asyncio.to_thread(x.metric, "routes_held") for x in (a, b)] == [2, 2]
        finally:
            for s in servers:
                s.close()
    asyncio.run(main())


async def online_through(node, inst):
    """node served on inst's CoAP port until inst lists hp-0001 online; its server."""
    server = await serve(node, inst.coap, lambda ms: int(time.time()), lifetime=LONG)

    async def registered():
        return (await devices_of(inst)).get("hp-0001") == "online"
    assert await until(registered)
    return server


async def moved_to(node, inst):
    """node served on inst's CoAP port, having left the other instance, until inst
    took its route over; its server."""
    server = await serve(node, inst.coap, lambda ms: int(time.time()), lifetime=LONG)
    try:
        async def routed():
            return await asyncio.to_thread(inst.metric, "route_handovers_total") == 1
        assert await until(routed)
    except BaseException:
        server.close()
        raise
    return server


def test_a_device_that_registers_with_another_instance_gets_its_commands_there(pair):
    a, b = pair
    fleet = Fleet({"heat_pump": 1}, seed=13, t0=int(time.time()))
    node = fleet.devices[0].node

    async def main():
        first = await online_through(node, b)
        first.close()   # it moves to a (b still runs and still knows its old address)
        second = await moved_to(node, a)
        try:
            cid = await post_command(b, "hp-0001")   # to the instance it left

            async def done():
                return await command_status(b, cid) == "done"
            assert await until(done), await command_status(b, cid)
            assert node.get(HEAT_PUMP, SG_READY) == 4
        finally:
            second.close()
    asyncio.run(main())


def test_kill_9_of_an_instance_loses_no_acknowledged_telemetry_and_its_devices_commands_go_out_through_the_survivor(
        pair, pg_url):
    a, b = pair

    async def main():
        devices = await Devices(2, b.coap).start()
        try:
            async def streaming():
                return all(len(v) >= 5 for v in devices.acknowledged().values())
            assert await until(streaming), "telemetry is not flowing through b"
            b.kill()
            acknowledged = devices.acknowledged()
        finally:
            await devices.stop()
        assert await missing_rows(pg_url, acknowledged) == []
        # commands posted to the survivor while the device's route is still b's wait
        cid = await post_command(a, "hp-0001")
        await asyncio.sleep(1.0)
        assert await command_status(a, cid) == "queued"
        # the device gives up on b and registers with a: a takes the route, delivers
        node = devices.fleet.devices[0].node
        server = await serve(node, a.coap, lambda ms: int(time.time()))
        try:
            async def done():
                return await command_status(a, cid) == "done"
            assert await until(done, timeout=30), await command_status(a, cid)
            assert node.get(HEAT_PUMP, SG_READY) == 4
        finally:
            server.close()
    asyncio.run(main())


def test_a_command_an_instance_recorded_sent_when_it_was_killed_is_not_sent_again_and_times_out(
        pair, pg_url):
    """b took the command and recorded its send in one write, then died (kill -9)
    before or after its datagram: nothing tells which, so the survivor the device
    registers with does not send it; it times out, unanswered."""
    a, b = pair
    fleet = Fleet({"heat_pump": 1}, seed=15, t0=int(time.time()))
    node = fleet.devices[0].node

    async def main():
        first = await online_through(node, b)
        b.kill()
        first.close()
        status, cmd = await asyncio.to_thread(a.call, "POST", "/api/v1/devices/hp-0001/commands",
                                              dict(COMMAND, timeout=1))
        assert status == 202, cmd
        store = await open_store(pg_url)
        try:   # what b had written when it died: the command taken and recorded sent
            [taken] = await store.claim_and_send_many([("hp-0001", 77)], time.time(), "b",
                                                      routed=True)
            assert (taken.id, taken.status) == (cmd["id"], "sent")
        finally:
            await store.close()
        second = await moved_to(node, a)
        try:

            async def timed_out():
                return await command_status(a, cmd["id"]) == "timeout"
            assert await until(timed_out, timeout=30), await command_status(a, cmd["id"])
            assert node.get(HEAT_PUMP, SG_READY) != 4   # never sent a second time
        finally:
            second.close()
    asyncio.run(main())


class MqttDevice:
    """A device publishing at QoS 1 through the broker (paho); PUBACK = acknowledged."""

    def __init__(self, broker, device):
        import paho.mqtt.client as mqtt
        self.device = device
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device,
                                  protocol=mqtt.MQTTv311)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.t0 = int(time.time())

    def publish(self, topic, payload, retain=False):
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()   # the broker's PUBACK: acknowledged

    def announce(self):
        self.publish("spot/v1/%s/announce" % self.device, announce(self.device), retain=True)

    def notify(self, k):
        self.publish("spot/v1/%s/10/up" % self.device, notify(self.t0 + k, {11: k}))

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


async def stored_history(pg_url, device):
    store = await open_store(pg_url)
    try:
        return len(await store.history(device, HEAT_PUMP, 11, limit=1000))
    finally:
        await store.close()


def test_mqtt_telemetry_is_split_between_the_instances_and_all_of_it_stored(pair, broker,
                                                                            pg_url):
    a, b = pair
    device = MqttDevice(broker, "hp-mq")

    async def main():
        device.announce()

        async def registered():
            return "hp-mq" in await devices_of(a) and "hp-mq" in await devices_of(b)
        assert await until(registered)
        for k in range(40):
            await asyncio.to_thread(device.notify, k)

        async def all_stored():
            return await stored_history(pg_url, "hp-mq") == 40
        assert await until(all_stored), "%d of 40 acknowledged frames stored" % (
            await stored_history(pg_url, "hp-mq"))
        got = [await asyncio.to_thread(x.metric, "frames_received_total", op="NOTIFY")
               for x in (a, b)]
        assert sum(got) == 40 and min(got) > 0, got
    try:
        asyncio.run(main())
    finally:
        device.close()


def test_mqtt_frames_the_broker_keeps_for_a_killed_instance_are_stored_when_it_restarts(
        pair, broker, pg_url):
    """mosquitto 2 goes on sharing /up with the killed instance's persistent session:
    those frames wait in the broker (acknowledged to the device) until the instance is
    back under its id; none is lost (docs/scale-out.md)."""
    a, b = pair
    device = MqttDevice(broker, "hp-mq")

    async def main():
        device.announce()

        async def registered():
            return "hp-mq" in await devices_of(a) and "hp-mq" in await devices_of(b)
        assert await until(registered)
        b.kill()
        for k in range(20):
            await asyncio.to_thread(device.notify, k)

        async def survivor_stored_its_share():
            return await stored_history(pg_url, "hp-mq") > 0
        assert await until(survivor_stored_its_share)
        await asyncio.to_thread(b.start)

        async def all_stored():
            return await stored_history(pg_url, "hp-mq") == 20
        assert await until(all_stored), "%d of 20 acknowledged frames stored" % (
            await stored_history(pg_url, "hp-mq"))
    try:
        asyncio.run(main())
    finally:
        device.close()


def test_plugins_run_on_one_leader_that_sees_every_instances_events_and_fails_over(
        bridges, pg_url):
    """The example plugin (peak limiter, limit 1 W) on both instances: a leads, so a's
    plugin must see b's device and telemetry (relayed) to block it with a plan, which
    goes out through b; after kill -9 of a, b leads."""
    toml = ('store = "%s"\ninstance = "%%s"\n[plugins.example]\nlimit_w = 1\nrole = "owner"\n'
            % pg_url)
    a = bridges(offline_after=60, toml=toml % "a")
    b = bridges(offline_after=60, toml=toml % "b")

    async def leaders():
        return [await asyncio.to_thread(x.metric, "leader") for x in (a, b)]

    async def main():
        assert await leaders() == [1, 0]
        devices = await Devices(1, b.coap).start()
        try:
            async def blocked():
                status, plans = await asyncio.to_thread(b.call, "GET",
                                                        "/api/v1/devices/hp-0001/plans")
                return status == 200 and any(p["id"] == 4242 and p["status"] == "accepted"
                                             for p in plans)
            assert await until(blocked, timeout=30), "the leader's plugin did not act"
            node = devices.fleet.devices[0].node
            assert node.get(HEAT_PUMP, SG_READY) == 1   # blocked, through b
        finally:
            await devices.stop()
        a.kill()

        async def b_leads():
            return await asyncio.to_thread(b.metric, "leader") == 1
        assert await until(b_leads, timeout=20)
    asyncio.run(main())


def test_a_second_bridge_with_a_running_instance_id_is_refused(bridges, pg_url, tmp_path):
    bridges(toml='store = "%s"\ninstance = "same"\n' % pg_url)
    twin = BridgeProcess(tmp_path / "twin", toml='store = "%s"\ninstance = "same"\n' % pg_url)
    with pytest.raises(AssertionError, match="already running on this store"):
        twin.start()


# ---------------------------------------------------------------- in process, real PostgreSQL

def test_a_route_taken_over_puts_the_old_holders_unsent_claims_back_in_the_queue(pg_url):
    async def main():
        store = await open_store(pg_url)
        try:
            await store._run(_s_ddl)
            now = time.time()
            await store.upsert_device("hp-x", [[HEAT_PUMP, 1, 0]], [], 0, now)
            await store._run(lambda: _s_take_routes("b", [("hp-x", "coap", "coap://b")], now))
            cid = await store.enqueue("hp-x", HEAT_PUMP, 2, {7: 4}, "operator", now, now + 60)
            # claimed by b as a bridge before one-write sends did, and never sent
            assert (await claimed(store, "hp-x", now, "b")).id == cid
            taken = await store._run(lambda: _s_take_routes("a", [("hp-x", "coap", "coap://a")],
                                                            now + 1))
            assert taken == ["hp-x"]
            assert (await store.get_command(cid)).status == "queued"
            assert (await store.claim_and_send_many([("hp-x", 1)], now + 1, "a"))[0].id == cid
        finally:
            await store.close()
    asyncio.run(main())


def test_the_leader_lock_passes_to_another_instance_when_the_leader_goes(pg_url):
    async def main():
        events = []

        def leader(name):
            async def lead():
                events.append(("lead", name))

            async def lose():
                events.append(("lose", name))
            return Leadership(pg_url, lead, lose, retry=0.1, check=0.1, name=name)
        first = await leader("a").start()
        second = await leader("b").start()
        try:
            await asyncio.sleep(0.5)
            assert first.leading and not second.leading and events == [("lead", "a")]
            await first.stop()   # its session ends: PostgreSQL frees the lock
            assert await until(lambda: second.leading, timeout=10)
            assert events == [("lead", "a"), ("lose", "a"), ("lead", "b")]
        finally:
            await first.stop()
            await second.stop()
    asyncio.run(main())


def test_instance_ids_map_to_distinct_lock_keys_in_the_int32_range():
    keys = {instance_key("bridge-%d" % i) for i in range(1000)}
    assert len(keys) == 1000 and all(-(1 << 31) <= k < 1 << 31 for k in keys)


def test_relayed_events_are_packed_below_the_notify_limit_and_come_back_unchanged():
    events = [{"type": "telemetry", "device": "hp-%04d" % i, "service": HEAT_PUMP, "t": i,
               "values": {"1": 1.5, "11": i}, "result": {7: b"\x00"}} for i in range(500)]
    payloads, skipped = pack(events)
    assert skipped == 0 and len(payloads) > 1
    assert all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    assert [e for p in payloads for e in unpack(p)] == events


def test_an_event_too_big_for_one_notification_is_left_out_and_counted():
    big = {"type": "command", "result": "x" * MAX_PAYLOAD}
    payloads, skipped = pack([big, {"type": "presence", "device": "d"}])
    assert skipped == 1 and [e for p in payloads for e in unpack(p)] == [
        {"type": "presence", "device": "d"}]


def test_a_notification_that_is_not_a_list_of_events_yields_none():
    assert unpack("not json") == [] and unpack('{"type": "x"}') == [] and unpack("[1, {}]") == [{}]


def test_claims_of_an_instance_that_runs_nowhere_are_queued_again_and_a_running_ones_kept(
        pg_url):
    import psycopg

    async def main():
        store = await open_store(pg_url)
        live = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:
            await live.execute("SELECT pg_advisory_lock(%s, %s)",
                               (INSTANCE_LOCK, instance_key("alive")))
            now = time.time()
            claims = {}
            for owner in ("alive", "dead"):
                device = "hp-" + owner
                await store.upsert_device(device, [[HEAT_PUMP, 1, 0]], [], 0, now)
                cid = await store.enqueue(device, HEAT_PUMP, 2, {7: 4}, "operator", now, now + 600)
                assert (await claimed(store, device, now, owner)).id == cid
                claims[owner] = cid
            assert await store._run(lambda: _s_orphaned_claims("a", now - 1)) == []  # too young
            assert await store._run(lambda: _s_orphaned_claims("a", now)) == ["hp-dead"]
            assert (await store.get_command(claims["dead"])).status == "queued"
            assert (await store.get_command(claims["alive"])).status == "claimed"
        finally:
            await live.close()
            await store.close()
    asyncio.run(main())


def test_an_instance_id_that_cannot_name_an_mqtt_client_is_refused_at_load():
    from spot.cloud_bridge import config as C
    assert C.load(instance="edge-7.b").instance == "edge-7.b"
    for bad in ("", "a/b", "a+b", "x" * 65, 7):
        with pytest.raises(ValueError, match="instance"):
            C.load(instance=bad)


def test_an_instance_stopped_cleanly_frees_its_id_for_the_next_bridge(bridges, pg_url,
                                                                      tmp_path):
    toml = 'store = "%s"\ninstance = "same"\n[plugins.example]\nlimit_w = 1\n' % pg_url
    first = bridges(toml=toml)
    first.stop()
    assert first.proc.returncode == 0
    with open(first.data + "/bridge.log") as f:
        assert "Traceback" not in f.read()
    second = BridgeProcess(tmp_path / "second", toml=toml).start()
    try:
        assert second.metric("leader") == 1
    finally:
        second.kill()
