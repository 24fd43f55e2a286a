"""The bridge under faults, as a real `spot bridge` process: killed with SIGKILL
mid-stream and restarted, devices going silent, and frames it must refuse.

Devices run in the test process on the code a board runs
(core.coap_binding.CoapDevice over ports/cpython DeviceServer) with simulated
heat pumps (ports/cpython/fleet). A frame is *acknowledged* when the bridge
answered its POST with 2.xx: CoapDevice then drops it from its outbox, so the
acknowledged frames are exactly those sent and no longer in the outbox (no
frame is ever dropped for room: the outbox is large enough, and checked).
"""
import asyncio
import socket
import time

import pytest

from bridge_process import bridges  # noqa: F401  (a fixture)
from command_states import claimed
from waiting import until
from spot.cloud_bridge.store import open_store
from spot.core import coap as C
from spot.core import frame as F
from spot.core.coap_binding import CoapDevice, CF_SPOT, BUS
from spot.core.coap_endpoint import Endpoint
from spot.core.node import A_ID, A_SERVICES
from spot.core.services import HEAT_PUMP
from spot.ports.cpython.coap_transport import DeviceServer
from spot.ports.cpython.fleet import Fleet

SG_READY = 6


async def serve(node, bridge, clock, lifetime=10):
    """A real CoapDevice for node registering with the bridge; short CoAP timers and
    retry so a test sees recovery in seconds."""
    device = CoapDevice(node, Endpoint(ack_timeout_ms=300, max_retransmit=2),
                        bridge_addr=bridge, lifetime=lifetime, retry=1, max_outbox=100000,
                        node_clock=clock)
    loop = asyncio.get_running_loop()
    _, server = await loop.create_datagram_endpoint(lambda: DeviceServer(device),
                                                    local_addr=("127.0.0.1", 0))
    return server


class Devices:
    """A fleet of simulated heat pumps over CoAP, bookkeeping every telemetry frame."""

    def __init__(self, count, bridge, speed=5.0):
        self.fleet = Fleet({"heat_pump": count}, seed=7, t0=int(time.time()), speed=speed,
                           telemetry=1)
        self.bridge = bridge
        self.servers = {}
        self.sent = {}   # device id -> every telemetry frame handed to its CoapDevice
        self.task = None

    def clock(self, now_ms):
        return int(self.fleet.now())

    async def start(self):
        for d in self.fleet.devices:
            self.servers[d.device_id] = await serve(d.node, self.bridge, self.clock)
            self.sent[d.device_id] = []
        self.task = asyncio.ensure_future(self.fleet.run(tick=0.2, on_frames=self._frames))
        return self

    def _frames(self, device, frames):
        server = self.servers[device.device_id]
        out = [f for peer, f in frames if peer is None]
        self.sent[device.device_id].extend(out)
        server.device.send_telemetry(out)
        server.poke()

    def acknowledged(self):
        """{device: [frames the bridge answered 2.xx]}"""
        out = {}
        for dev, frames in self.sent.items():
            waiting = {id(f) for f in self.servers[dev].device.outbox}
            out[dev] = [f for f in frames if id(f) not in waiting]
        return out

    def count(self, frames_by_device):
        return sum(len(v) for v in frames_by_device.values())

    async def stop(self):
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        for s in self.servers.values():
            s.close()


async def missing_rows(store_url, acknowledged):
    """Rows of acknowledged frames that the store does not hold: [(device, sid, oid, t)]."""
    store = await open_store(store_url)
    try:
        missing = []
        for dev, frames in acknowledged.items():
            have = {}
            for frame in frames:
                _, sid, _, (t, values) = F.decode(frame)
                for oid, value in values.items():
                    key = (sid, oid)
                    if key not in have:
                        have[key] = dict(await store.history(dev, sid, oid, limit=100000))
                    if have[key].get(t) != value:
                        missing.append((dev, sid, oid, t))
        return missing
    finally:
        await store.close()


# ---------------------------------------------------------------- (a) kill -9 mid-stream

def test_after_kill_9_every_acknowledged_telemetry_row_is_stored_and_devices_carry_on(bridges):
    bridge = bridges(offline_after=60)

    async def main():
        devices = await Devices(3, bridge.coap).start()
        try:
            async def streaming():
                return all(len(v) >= 10 for v in devices.acknowledged().values())
            assert await until(streaming), "telemetry is not flowing before the kill"
            bridge.kill()
            killed_at = devices.count(devices.acknowledged())
            await asyncio.sleep(1.5)   # devices keep producing while the bridge is gone
            backlog = sum(len(s.device.outbox) for s in devices.servers.values())
            assert backlog > 0, "the kill did not interrupt the stream"
            produced_while_down = devices.count(devices.sent) - killed_at
            await asyncio.to_thread(bridge.start)

            async def recovered():
                regs = [s.device.registrations for s in devices.servers.values()]
                acked = devices.count(devices.acknowledged())
                return min(regs) >= 2 and acked >= killed_at + produced_while_down + 15
            assert await until(recovered, timeout=30), (
                [s.device.registrations for s in devices.servers.values()],
                devices.count(devices.acknowledged()), killed_at, produced_while_down)
            settled = devices.count(devices.acknowledged()) + 60

            async def streaming_again():   # past the clock set that follows re-registration
                return devices.count(devices.acknowledged()) >= settled
            assert await until(streaming_again, timeout=30)
        finally:
            await devices.stop()
        acknowledged = devices.acknowledged()
        assert all(s.device.dropped == 0 for s in devices.servers.values())
        for frames in acknowledged.values():   # the clock set at re-registration went no
            stamps = [F.decode(f)[1:4:2] for f in frames]   # time back: no time twice
            stamps = [(sid, body[0]) for sid, body in stamps]
            assert len(set(stamps)) == len(stamps), "a NOTIFY time was used twice"
        await asyncio.to_thread(bridge.stop)
        assert await missing_rows(bridge.store_url, acknowledged) == []
    asyncio.run(main())


# ---------------------------------------------------------------- (b), (c) offline devices

COMMAND = {"service": "heat_pump", "op": "write", "values": {"sg_ready": 4}}


async def presence(bridge, device):
    status, devices = await asyncio.to_thread(bridge.call, "GET", "/api/v1/devices")
    assert status == 200
    return {d["id"]: d["presence"] for d in devices}.get(device)


async def command_status(bridge, cid):
    status, cmd = await asyncio.to_thread(bridge.call, "GET", "/api/v1/commands/%d" % cid)
    assert status == 200
    return cmd["status"]


async def register_then_go_silent(bridge, fleet):
    server = await serve(fleet.devices[0].node, bridge.coap, lambda ms: int(time.time()))

    async def online():
        return await presence(bridge, "hp-0001") == "online"
    assert await until(online), "the device did not register"
    server.close()   # silent from now on: no telemetry, no registration

    async def offline():
        return await presence(bridge, "hp-0001") == "offline"
    assert await until(offline, timeout=15), "a silent device is still shown online"


async def command_for_a_silent_device(bridge, fleet):
    """Register hp-0001, let it go silent, then POST COMMAND for it: the command, queued."""
    await register_then_go_silent(bridge, fleet)
    status, cmd = await asyncio.to_thread(bridge.call, "POST",
                                          "/api/v1/devices/hp-0001/commands", COMMAND)
    assert status == 202 and cmd["status"] == "queued"
    return cmd


async def delivered_when_back(bridge, node, command_id, failure):
    """Serve node again: the queued COMMAND must then be done, SG-Ready 4 set."""
    back = await serve(node, bridge.coap, lambda ms: int(time.time()))
    try:
        async def done():
            return await command_status(bridge, command_id) == "done"
        assert await until(done), failure
        assert node.get(HEAT_PUMP, SG_READY) == 4
    finally:
        back.close()


def test_a_silent_device_is_shown_offline_and_its_command_waits_until_it_is_back(bridges):
    bridge = bridges(offline_after=2)
    fleet = Fleet({"heat_pump": 1}, seed=3, t0=int(time.time()))
    node = fleet.devices[0].node

    async def main():
        cmd = await command_for_a_silent_device(bridge, fleet)
        await asyncio.sleep(3)
        assert await command_status(bridge, cmd["id"]) == "queued"
        assert node.get(HEAT_PUMP, SG_READY) != 4
        await delivered_when_back(bridge, node, cmd["id"], "the queued command was not delivered")
        assert await presence(bridge, "hp-0001") == "online"
    asyncio.run(main())


def test_a_command_queued_for_an_offline_device_survives_kill_9_and_is_delivered(bridges):
    bridge = bridges(offline_after=2)
    fleet = Fleet({"heat_pump": 1}, seed=5, t0=int(time.time()))
    node = fleet.devices[0].node

    async def main():
        cmd = await command_for_a_silent_device(bridge, fleet)
        bridge.kill()
        await asyncio.to_thread(bridge.start)
        assert await command_status(bridge, cmd["id"]) == "queued"
        await delivered_when_back(bridge, node, cmd["id"], "the command did not survive the restart")
    asyncio.run(main())


def test_a_command_claimed_but_not_sent_when_the_bridge_died_is_delivered_after_restart(
        bridges):
    bridge = bridges(offline_after=2)
    fleet = Fleet({"heat_pump": 1}, seed=7, t0=int(time.time()))
    node = fleet.devices[0].node

    async def claimed_as_the_dead_bridge(command_id):
        store = await open_store(bridge.store_url)
        try:   # what the bridge had written when it died between the claim and the send
            c = await claimed(store, "hp-0001", time.time(), "bridge-1")
            assert c.id == command_id and c.status == "claimed"
        finally:
            await store.close()

    async def main():
        cmd = await command_for_a_silent_device(bridge, fleet)
        bridge.kill()
        await claimed_as_the_dead_bridge(cmd["id"])
        await asyncio.to_thread(bridge.start)
        assert await command_status(bridge, cmd["id"]) == "queued"
        await delivered_when_back(bridge, node, cmd["id"], "the claimed command was lost")
    asyncio.run(main())


# ---------------------------------------------------------------- (d) frames to refuse

class RawCoap:
    """A bare UDP socket speaking CoAP to the bridge's /s, one exchange at a time."""

    def __init__(self, bridge):
        self.bridge = bridge
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.mid = 0

    def post(self, payload, options=None):
        """(CoAP code, response payload) for a confirmable POST."""
        self.mid += 1
        if options is None:
            options = [(C.URI_PATH, BUS.encode()), (C.CONTENT_FORMAT, C.encode_uint(CF_SPOT))]
        token = self.mid.to_bytes(2, "big")
        self.sock.sendto(C.encode_message(C.CON, C.POST, self.mid, token, options, payload),
                         self.bridge.coap)
        while True:
            msg = C.decode(self.sock.recv(2048))
            if msg.token == token and msg.code:
                return msg.code, msg.payload

    def close(self):
        self.sock.close()


def announce(device, mid=1):
    return F.encode(F.ANNOUNCE, 0, mid, {A_ID: device, A_SERVICES: [[HEAT_PUMP, 1, 0]]})


def notify(t, values):
    return F.encode(F.NOTIFY, HEAT_PUMP, 0, [t, values])


def stored_rows(bridge, device):
    async def count():
        store = await open_store(bridge.store_url)
        try:
            return len(await store.latest(device)), len(await store.history(device, HEAT_PUMP, 11))
        finally:
            await store.close()
    return asyncio.run(count())


@pytest.fixture
def bridge(bridges):
    return bridges(offline_after=60)


def test_telemetry_from_an_address_that_never_announced_is_refused_counted_and_not_stored(bridge):
    dev = RawCoap(bridge)
    try:
        before = bridge.metric("frames_rejected_total", reason="unknown_device")
        code, payload = dev.post(notify(int(time.time()), {11: 25}))
        assert code == C.UNAUTHORIZED
        op, _, _, body = F.decode(payload)
        assert op == F.ERROR and body[0] == 6          # not-authorised
        assert bridge.metric("frames_rejected_total", reason="unknown_device") == before + 1
        assert bridge.metric("telemetry_rows_total") == 0
        status, devices = bridge.call("GET", "/api/v1/devices")
        assert status == 200 and devices == []
    finally:
        dev.close()


def test_a_malformed_announce_is_refused_counted_and_registers_nothing(bridge):
    dev = RawCoap(bridge)
    try:
        bad = F.encode(F.ANNOUNCE, 0, 4, {A_SERVICES: [[HEAT_PUMP, 1, 0]]})   # no device id
        code, _ = dev.post(bad)
        assert code >> 5 == 4
        assert bridge.metric("frames_rejected_total", reason="malformed") == 1
        status, devices = bridge.call("GET", "/api/v1/devices")
        assert devices == []
    finally:
        dev.close()


@pytest.mark.parametrize("name, frame", [
    ("not a SPOT frame", b"\xfe\xed\xfa\xce garbage"),
    ("truncated NOTIFY", notify(1700000000, {11: 25})[:-3]),
    ("NOTIFY body of the wrong shape", F.encode(F.NOTIFY, HEAT_PUMP, 0, [1700000000, 5, 6])),
    ("NOTIFY with a text object id", F.encode(F.NOTIFY, HEAT_PUMP, 0, [1700000000, {"x": 1}])),
], ids=["garbage", "truncated", "wrong-shape", "text-object-id"])
def test_a_malformed_frame_from_a_registered_device_is_refused_counted_and_not_stored(
        bridge, name, frame):
    dev = RawCoap(bridge)
    try:
        code, payload = dev.post(announce("hp-raw"))
        assert code >> 5 == 2 and F.decode(payload)[0] == F.RESULT
        code, _ = dev.post(frame)
        # the link's promise: nothing is acknowledged (2.xx) that was not stored
        assert code >> 5 == 4, "%s answered %s" % (name, C.code_str(code))
        assert bridge.metric("frames_rejected_total", reason="malformed") == 1
        assert bridge.metric("telemetry_rows_total") == 0
        assert stored_rows(bridge, "hp-raw") == (0, 0)
        # the device is still registered and its next good frame is stored
        code, _ = dev.post(notify(int(time.time()), {11: 25}))
        assert code >> 5 == 2
        assert stored_rows(bridge, "hp-raw") == (1, 1)
    finally:
        dev.close()


def test_telemetry_sent_from_another_address_than_the_registered_one_is_refused(bridge):
    owner, other = RawCoap(bridge), RawCoap(bridge)
    try:
        code, _ = owner.post(announce("hp-owner"))
        assert code >> 5 == 2
        before = bridge.metric("frames_rejected_total", reason="unknown_device")
        code, _ = other.post(notify(int(time.time()), {11: 25}))
        assert code == C.UNAUTHORIZED
        assert bridge.metric("frames_rejected_total", reason="unknown_device") == before + 1
        assert stored_rows(bridge, "hp-owner") == (0, 0)
    finally:
        owner.close()
        other.close()


# ---------------------------------------------------------------- MQTT: kill -9 with a broker

def test_mqtt_telemetry_the_broker_acknowledged_while_the_bridge_was_dead_is_stored(
        bridges, broker):
    import paho.mqtt.client as mqtt
    bridge = bridges(mqtt="mqtt://127.0.0.1:%d" % broker.port)
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hp-mq",
                         protocol=mqtt.MQTTv311)
    device.connect("127.0.0.1", broker.port)
    device.loop_start()
    t0 = int(time.time())

    def publish(topic, payload, retain=False):
        info = device.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()       # PUBACK from the broker: acknowledged

    def rows():
        return stored_rows(bridge, "hp-mq")[1]

    def wait(cond, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not cond():
            time.sleep(0.1)
        return cond()
    try:
        publish("spot/v1/hp-mq/announce", announce("hp-mq"), retain=True)
        assert wait(lambda: bridge.call("GET", "/api/v1/devices/hp-mq")[0] == 200)
        for k in range(10):
            publish("spot/v1/hp-mq/10/up", notify(t0 + k, {11: k}))
        assert wait(lambda: rows() == 10)
        bridge.kill()
        for k in range(10, 20):
            publish("spot/v1/hp-mq/10/up", notify(t0 + k, {11: k}))
        bridge.start()
        assert wait(lambda: rows() == 20), "%d of 20 acknowledged frames stored" % rows()
    finally:
        device.loop_stop()
        device.disconnect()
