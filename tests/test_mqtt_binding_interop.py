"""SPOT over MQTT end to end through a real mosquitto: a heat-pump node behind
core.mqtt_binding, driven by ports/micropython/mqtt_loop in a thread, and the
cloud side ports/cpython/mqtt_transport.BridgeMqtt on paho-mqtt, with
mosquitto_sub / mosquitto_pub as independent witnesses. Every broker, client
and thread started here is stopped in teardown; every wait has a timeout.
"""
import asyncio
import concurrent.futures
import queue
import subprocess
import threading

import pytest

from spot.core import frame as F
from spot.core.errors import OUT_OF_RANGE, NOT_AUTHORISED
from spot.core.mqtt import encode_publish
from spot.core.mqtt_binding import MqttDevice, will_of
from spot.core.mqtt_client import (MqttClient, MemoryOutbox, EV_CONNECTED, EV_MESSAGE,
                                   EV_OVERSIZED)
from spot.core.node import Node
from spot.core.oscore import SecurityContext
from spot.core.roster import Roster, OWNER, MONITOR
from spot.core.services import HEAT_PUMP, PRICE
from spot.ports.cpython.mqtt_transport import BridgeMqtt
from spot.ports.micropython.mqtt_loop import MqttLoop, make_tls_context
from spot.profiles import heat_pump

from mosquitto import (WAIT, MqttRig, wait_for, mosquitto_pub,
                       make_ca_and_server_cert)

FLOW_SETPOINT = 7
FLOW_TEMP = 8
# nine measurements, as bench/wire_size.py TELEMETRY (SI units)
TELEMETRY = {1: 1234, 2: -80, 3: 230.1, 4: 5.36, 8: 35.2, 10: 48.1, 11: -5.2, 12: 21.4, 15: 4520}
SALT = b"\x9e\x7c\xa9\x22\x23\x78\x63\x40"
DEVICE_KID = b"\x01"
BRIDGE_KID = b"\x02"
MONITOR_KID = b"\x03"


def pairing(secret, controller_kid):
    """(device side, controller side) OSCORE contexts of one pairing."""
    return (SecurityContext(secret, DEVICE_KID, controller_kid, SALT),
            SecurityContext(secret, controller_kid, DEVICE_KID, SALT))


class BoundClient(MqttClient):
    """MqttClient whose step() first runs a hook: MqttLoop calls client.step
    every turn in its thread with its lock held, which is where the binding's
    timers and the test's requests to the device run."""
    on_tick = None

    def step(self, now):
        if self.on_tick is not None:
            self.on_tick(now)
        return super().step(now)


class SpotDevice:
    """A heat-pump Node + MqttDevice on an MqttLoop thread."""

    def __init__(self, port, device_id, consumes=(), roster=None, client_kw=None,
                 loop_kw=None, **binding_kw):
        self.node = Node([heat_pump], device_id, consumes=consumes)
        for oid, v in TELEMETRY.items():
            self.node.set(HEAT_PUMP, oid, v)
        self.node.set(HEAT_PUMP, FLOW_SETPOINT, 45.0)
        self.roster = roster
        if roster is None:
            self.roster = Roster()
            self.roster.pair(b"bridge", OWNER)
        self.node.authorise = self.roster.authorise
        self.client = BoundClient(device_id, will=will_of(device_id), **(client_kw or {}))
        self.binding = MqttDevice(self.node, self.client, device_id, **binding_kw)
        self.client.on_tick = self._tick
        self.events = []
        self.held = []          # messages kept from the binding while hold is set
        self.hold = False
        self._actions = queue.Queue()
        kw = {'backoff_min_ms': 100, 'backoff_max_ms': 400, 'poll_max_ms': 20}
        kw.update(loop_kw or {})
        self.loop = MqttLoop(self.client, '127.0.0.1', port, on_event=self._on_event, **kw)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def _on_event(self, e):
        self.events.append(e)
        if self.hold and e.kind == EV_MESSAGE:
            self.held.append(e)
        else:
            self.binding.on_event(e, self.loop.now())

    def _tick(self, now):
        while True:
            try:
                fn, fut = self._actions.get_nowait()
            except queue.Empty:
                break
            try:
                fut.set_result(fn(now))
            except Exception as e:
                fut.set_exception(e)
        self.binding.step(now)

    def call(self, fn):
        """Run fn(now_ms) in the loop thread (with the loop's lock); its result."""
        fut = concurrent.futures.Future()
        self._actions.put((fn, fut))
        return fut.result(WAIT)

    def release(self, n):
        """Hand n held messages to the binding, in the loop thread."""
        def run(now):
            for e in self.held[:n]:
                self.binding.on_event(e, now)
            del self.held[:n]
        self.call(run)

    def release_offline(self, n):
        """release() while the loop is between connections (it runs no turns
        then): serialised with the loop thread through the loop's lock, as
        MqttLoop has no public hook that also runs during back-off."""
        lock = self.loop._lock
        lock.acquire()
        try:
            now = self.loop.now()
            for e in self.held[:n]:
                self.binding.on_event(e, now)
            del self.held[:n]
        finally:
            lock.release()

    def connected_count(self):
        return len([e for e in list(self.events) if e.kind == EV_CONNECTED])

    def stop(self, clean=False):
        if clean and self.thread.is_alive():
            self.call(self.binding.offline)
        self.loop.stop(clean)
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), 'device loop did not stop'


class Recorder:
    """Bridge callbacks recorded as (kind, device, value) tuples."""

    def __init__(self):
        self.calls = []

    def kw(self):
        return {'on_telemetry': lambda d, f: self.calls.append(('telemetry', d, f)),
                'on_announce': lambda d, b: self.calls.append(('announce', d, b)),
                'on_presence': lambda d, up: self.calls.append(('presence', d, up)),
                'on_reply': lambda d, f: self.calls.append(('reply', d, f))}

    def of(self, kind, device=None):
        return [c[2] for c in list(self.calls)
                if c[0] == kind and (device is None or c[1] == device)]


class Env(MqttRig):
    def bridge(self, broker, ready=True, **kw):
        rec = Recorder()
        for k, v in rec.kw().items():
            kw.setdefault(k, v)
        kw.setdefault('reconnect_delay', (1, 2))
        br = self.keep(BridgeMqtt('127.0.0.1', broker.port, **kw))
        br.calls = rec
        br.start()
        if ready:
            assert br.wait_ready(WAIT), 'bridge not subscribed'
        return br

    def device(self, broker, device_id, **kw):
        return self.keep_device(SpotDevice(broker.port, device_id, **kw))


@pytest.fixture
def env(tmp_path):
    """Starts brokers, bridges, devices and mosquitto_subs; stops them all after."""
    rig = Env(tmp_path)
    yield rig
    rig.close()


def online(bridge, device):
    wait_for(lambda: bridge.presence.get(device) is True, what='%s online' % device)


def retained(broker, topic):
    """Hex payloads of the messages retained on topic (a late subscriber's view)."""
    r = subprocess.run(['mosquitto_sub', '-h', '127.0.0.1', '-p', str(broker.port),
                        '--retained-only', '-W', '1', '-F', '%x', '-t', topic],
                       capture_output=True, text=True, timeout=WAIT)
    return [line for line in r.stdout.splitlines() if line]


def hex_payloads(sub):
    """{topic: [payload bytes]} of a mosquitto_sub run with -F '%t %x'."""
    out = {}
    for line in list(sub.lines):
        topic, _, hx = line.partition(' ')
        out.setdefault(topic, []).append(bytes.fromhex(hx))
    return out


# ---------------------------------------------------------------- birth, telemetry

def test_birth_is_retained_for_a_late_mosquitto_sub(env):
    broker = env.broker()
    dev = env.device(broker, 'hp-1')
    bridge = env.bridge(broker)
    online(bridge, 'hp-1')
    late = env.sub(broker, ['-q', '1', '-C', '1', '-F', '%r %q %t %x', '-t', 'spot/v1/+/announce'], 'late')
    line = late.wait_exit()[0]
    flag, qos, topic, hx = line.split(' ')
    assert (flag, qos, topic) == ('1', '1', 'spot/v1/hp-1/announce')
    assert bytes.fromhex(hx) == dev.node.announce()
    assert bridge.announces['hp-1'][0] == 'hp-1'
    assert [s[0] for s in bridge.announces['hp-1'][1]] == [0x02, 0x04, HEAT_PUMP]


def test_telemetry_seen_by_mosquitto_sub_decodes_to_the_nine_values(env):
    broker = env.broker()
    dev = env.device(broker, 'hp-1')
    bridge = env.bridge(broker)
    online(bridge, 'hp-1')
    sub = env.sub(broker, ['-C', '1', '-F', '%t %x', '-t', 'spot/v1/+/10/up'], 'tele')
    assert dev.call(lambda now: dev.binding.telemetry(HEAT_PUMP, now, list(TELEMETRY))) is True
    topic, hx = sub.wait_exit()[0].split(' ')
    op, sid, mid, body = F.decode(bytes.fromhex(hx))
    assert (topic, op, sid, mid) == ('spot/v1/hp-1/10/up', F.NOTIFY, HEAT_PUMP, 0)
    assert body[1] == {1: 1234, 2: -80, 3: 2301, 4: 536, 8: 352, 10: 481, 11: -52,
                       12: 214, 15: 4520}
    wait_for(lambda: bridge.calls.of('telemetry', 'hp-1'), what='telemetry at the bridge')
    assert bridge.calls.of('telemetry', 'hp-1')[0] == bytes.fromhex(hx)


# ---------------------------------------------------------------- requests

def test_write_from_the_bridge_is_applied_and_its_result_matched(env):
    broker = env.broker()
    dev = env.device(broker, 'hp-1')
    bridge = env.bridge(broker)
    online(bridge, 'hp-1')
    answer = bridge.send('hp-1', F.encode(F.WRITE, HEAT_PUMP, 42, {FLOW_SETPOINT: 215}))
    assert answer.result(WAIT) == F.encode(F.RESULT, HEAT_PUMP, 42)
    assert dev.node.get(HEAT_PUMP, FLOW_SETPOINT) == 21.5
    assert bridge.unmatched == 0 and bridge.dropped == 0


def test_out_of_range_write_gets_error_and_changes_nothing(env):
    broker = env.broker()
    dev = env.device(broker, 'hp-1')
    bridge = env.bridge(broker)
    online(bridge, 'hp-1')
    answer = bridge.send_request('hp-1', F.WRITE, HEAT_PUMP, {FLOW_SETPOINT: 900})
    op, sid, mid, body = F.decode(answer.result(WAIT))
    assert (op, sid, body) == (F.ERROR, HEAT_PUMP, [OUT_OF_RANGE, FLOW_SETPOINT])
    assert dev.node.get(HEAT_PUMP, FLOW_SETPOINT) == 45.0


def test_request_from_asyncio_is_handed_back_into_the_event_loop(env):
    broker = env.broker()
    env.device(broker, 'hp-1')

    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        bridge = env.bridge(broker, loop=loop,
                            on_presence=lambda d, up: seen.append(threading.get_ident()))
        while bridge.presence.get('hp-1') is not True:
            await asyncio.sleep(0.02)
        frame = await asyncio.wait_for(
            bridge.request('hp-1', F.encode(F.READ, HEAT_PUMP, 3, [FLOW_TEMP])), WAIT)
        await asyncio.sleep(0)  # let the presence callback run
        return frame, seen
    frame, seen = asyncio.run(main())
    assert frame == F.encode(F.RESULT, HEAT_PUMP, 3, {FLOW_TEMP: 352})
    assert seen == [threading.get_ident()]  # ran in the asyncio thread, not paho's


def test_raw_frame_from_mosquitto_pub_stdin_reaches_the_node(env, tmp_path):
    broker = env.broker()
    dev = env.device(broker, 'hp-1')
    bridge = env.bridge(broker)
    online(bridge, 'hp-1')
    raw = tmp_path / 'write.bin'
    raw.write_bytes(F.encode(F.WRITE, HEAT_PUMP, 77, {FLOW_SETPOINT: 300}))
    with open(raw, 'rb') as f:
        mosquitto_pub(broker, '-q', '1', '-t', 'spot/v1/hp-1/10/down', '-s', stdin=f)
    wait_for(lambda: dev.node.get(HEAT_PUMP, FLOW_SETPOINT) == 30.0, what='the write applied')
    # the RESULT went up; the bridge did not ask, so it is an unmatched reply
    wait_for(lambda: bridge.calls.of('reply', 'hp-1'), what='the RESULT at the bridge')
    assert bridge.calls.of('reply', 'hp-1') == [F.encode(F.RESULT, HEAT_PUMP, 77)]


def test_a_message_over_the_device_s_limit_is_acknowledged_and_dropped_not_a_reconnect_loop(
        env, tmp_path):
    """A board reads at most 16 KiB of one packet. A longer QoS 1 message on its down topic
    is skipped unread and acknowledged (MQTT 3.1.1 has no refusal): had it closed the
    link, the broker would send it again after every reconnect, for ever. The request
    after it is applied, on the same connection."""
    broker = env.broker()
    dev = env.device(broker, 'hp-1')
    bridge = env.bridge(broker)
    online(bridge, 'hp-1')
    big = tmp_path / 'big.bin'
    big.write_bytes(F.encode(F.WRITE, HEAT_PUMP, 76, {FLOW_SETPOINT: 250}) + bytes(20000))
    raw = tmp_path / 'write.bin'
    raw.write_bytes(F.encode(F.WRITE, HEAT_PUMP, 77, {FLOW_SETPOINT: 300}))
    for path in (big, raw):
        with open(path, 'rb') as f:
            mosquitto_pub(broker, '-q', '1', '-t', 'spot/v1/hp-1/10/down', '-s', stdin=f)
    wait_for(lambda: dev.node.get(HEAT_PUMP, FLOW_SETPOINT) == 30.0, what='the write applied')
    dropped = [(e.topic, e.qos, e.size) for e in list(dev.events) if e.kind == EV_OVERSIZED]
    size = len(encode_publish('spot/v1/hp-1/10/down', big.read_bytes(), 1, pid=1))
    assert dropped == [('spot/v1/hp-1/10/down', 1, size)]
    assert dev.client.oversized == 1 and dev.connected_count() == 1
    broker.wait_log('Received PUBACK from hp-1 (Mid: 1, RC:0)')   # the broker forgot it


def test_request_timeout_fails_the_future(env):
    broker = env.broker()
    bridge = env.bridge(broker)
    answer = bridge.send('nobody', F.encode(F.READ, HEAT_PUMP, 1), timeout=0.3)
    with pytest.raises(TimeoutError):
        answer.result(WAIT)
    # the message id is free again
    assert not bridge.send('nobody', F.encode(F.READ, HEAT_PUMP, 1), timeout=5).done()


# ---------------------------------------------------------------- presence

def test_killed_device_socket_publishes_the_will_and_the_bridge_marks_it_offline(env):
    broker = env.broker()
    dev = env.device(broker, 'hp-1', loop_kw={'backoff_min_ms': 3000, 'backoff_max_ms': 3000})
    bridge = env.bridge(broker)
    online(bridge, 'hp-1')
    dev.loop.drop_connection()
    wait_for(lambda: bridge.presence.get('hp-1') is False, what='hp-1 offline')
    assert retained(broker, 'spot/v1/hp-1/announce') == []  # the will cleared the birth
    # the device comes back by itself: a new birth
    wait_for(lambda: dev.connected_count() >= 2, what='reconnect')
    online(bridge, 'hp-1')
    assert bridge.calls.of('presence', 'hp-1') == [True, False, True]


def test_clean_shutdown_also_clears_the_birth(env):
    broker = env.broker()
    dev = env.device(broker, 'hp-1')
    bridge = env.bridge(broker)
    online(bridge, 'hp-1')
    dev.stop(clean=True)
    wait_for(lambda: bridge.presence.get('hp-1') is False, what='hp-1 offline')
    assert retained(broker, 'spot/v1/hp-1/announce') == []
    assert 'Client hp-1 disconnected.' in broker.log_text()  # a DISCONNECT, no will


# ---------------------------------------------------------------- signals

def test_broadcast_reaches_only_devices_that_consume_it_and_follows_the_filter(env):
    broker = env.broker()
    a = env.device(broker, 'hp-a', consumes=(PRICE,))
    b = env.device(broker, 'hp-b')
    bridge = env.bridge(broker)
    online(bridge, 'hp-a')
    online(bridge, 'hp-b')
    forecast = [1700000000, {1: [1700000000, 900, [850, 900, 910]]}]
    bridge.broadcast(PRICE, F.encode(F.NOTIFY, PRICE, 0, forecast))
    wait_for(lambda: a.node.signals.get(PRICE) == forecast, what='hp-a to get the forecast')
    # a request to hp-b published after the broadcast: once answered, hp-b would
    # have had the broadcast too (the broker keeps one client's order)
    assert bridge.send_request('hp-b', F.READ, HEAT_PUMP, [FLOW_TEMP]).result(WAIT)
    assert PRICE not in b.node.signals
    assert not [e for e in b.events if e.kind == EV_MESSAGE and 'signal' in e.topic]

    # run time: hp-b starts consuming (subscribes, gets the retained forecast,
    # announces it), hp-a stops (unsubscribes)
    b.call(lambda now: b.binding.consume(PRICE, now))
    wait_for(lambda: b.node.signals.get(PRICE) == forecast, what='hp-b to get the retained forecast')
    wait_for(lambda: bridge.announces['hp-b'].get(2) == [PRICE], what="hp-b's new birth")
    a.call(lambda now: a.binding.ignore(PRICE, now))
    broker.wait_log('Received UNSUBSCRIBE from hp-a')
    newer = [1700000900, {1: [1700000900, 900, [700]]}]
    bridge.broadcast(PRICE, F.encode(F.NOTIFY, PRICE, 0, newer))
    wait_for(lambda: b.node.signals.get(PRICE) == newer, what='hp-b to get the newer forecast')
    assert bridge.send_request('hp-a', F.READ, HEAT_PUMP, [FLOW_TEMP]).result(WAIT)
    assert a.node.signals[PRICE] == forecast
    assert a.binding.dropped == 0 and b.binding.dropped == 0


# ---------------------------------------------------------------- sealed

def sealed_setup(env, broker):
    dev_ctx, bridge_ctx = pairing(bytes(range(16)), BRIDGE_KID)
    mon_dev_ctx, mon_ctx = pairing(bytes(range(16, 32)), MONITOR_KID)
    roster = Roster()
    roster.pair(BRIDGE_KID, OWNER)
    roster.pair(MONITOR_KID, MONITOR)
    dev = env.device(broker, 'hp-s', roster=roster, bridge_ctx=dev_ctx, contexts=[mon_dev_ctx])
    bridge = env.bridge(broker, contexts={'hp-s': bridge_ctx})
    online(bridge, 'hp-s')
    return dev, bridge, mon_ctx


def test_sealed_frames_on_the_broker_carry_no_readable_frame(env):
    broker = env.broker()
    spy = env.sub(broker, ['-F', '%t %x', '-t', 'spot/v1/hp-s/+/+'], 'spy')
    dev, bridge, _ = sealed_setup(env, broker)
    write = F.encode(F.WRITE, HEAT_PUMP, 42, {FLOW_SETPOINT: 215})
    assert bridge.send('hp-s', write).result(WAIT) == F.encode(F.RESULT, HEAT_PUMP, 42)
    assert dev.call(lambda now: dev.binding.telemetry(HEAT_PUMP, now, list(TELEMETRY)))
    wait_for(lambda: len(bridge.calls.of('telemetry', 'hp-s')) == 1, what='sealed telemetry')
    wait_for(lambda: len(spy.lines) >= 3, what='the spy to see three frames')
    seen = hex_payloads(spy)
    assert sorted(seen) == ['spot/v1/hp-s/10/down', 'spot/v1/hp-s/10/up']
    plain = [write, F.encode(F.RESULT, HEAT_PUMP, 42), bridge.calls.of('telemetry', 'hp-s')[0]]
    for payloads in seen.values():
        for p in payloads:
            assert p[0] == 0x00  # the sealed-frame marker
            assert not any(frame[4:] in p for frame in plain if len(frame) > 4)
            assert not any(p.startswith(frame[:4]) for frame in plain)
    assert dev.node.get(HEAT_PUMP, FLOW_SETPOINT) == 21.5


def test_replayed_sealed_request_is_dropped_and_changes_nothing(env, tmp_path):
    broker = env.broker()
    spy = env.sub(broker, ['-F', '%t %x', '-t', 'spot/v1/hp-s/10/down'], 'spy')
    dev, bridge, _ = sealed_setup(env, broker)
    bridge.send_request('hp-s', F.WRITE, HEAT_PUMP, {FLOW_SETPOINT: 215}).result(WAIT)
    bridge.send_request('hp-s', F.WRITE, HEAT_PUMP, {FLOW_SETPOINT: 300}).result(WAIT)
    wait_for(lambda: len(spy.lines) == 2, what='the spy to see both requests')
    first = hex_payloads(spy)['spot/v1/hp-s/10/down'][0]
    replay = tmp_path / 'replay.bin'
    replay.write_bytes(first)
    mosquitto_pub(broker, '-q', '1', '-t', 'spot/v1/hp-s/10/down', '-f', str(replay))
    wait_for(lambda: dev.binding.dropped == 1, what='the replay to be dropped')
    assert 'Replay' in dev.binding.last_drop
    assert dev.node.get(HEAT_PUMP, FLOW_SETPOINT) == 30.0


def test_monitor_and_unpaired_senders_get_not_authorised(env, tmp_path):
    broker = env.broker()
    ups = env.sub(broker, ['-F', '%t %x', '-t', 'spot/v1/hp-s/10/up'], 'ups')
    dev, bridge, mon_ctx = sealed_setup(env, broker)
    monitor = env.bridge(broker, contexts={'hp-s': mon_ctx})
    # the monitor may read, not write
    read = monitor.send_request('hp-s', F.READ, HEAT_PUMP, [FLOW_TEMP]).result(WAIT)
    assert F.decode(read)[0] == F.RESULT
    denied = monitor.send_request('hp-s', F.WRITE, HEAT_PUMP, {FLOW_SETPOINT: 215}).result(WAIT)
    assert F.decode(denied)[3] == [NOT_AUTHORISED]
    # a plain frame from anyone on the broker is not authorised either
    raw = tmp_path / 'plain.bin'
    raw.write_bytes(F.encode(F.WRITE, HEAT_PUMP, 9, {FLOW_SETPOINT: 215}))
    mosquitto_pub(broker, '-q', '1', '-t', 'spot/v1/hp-s/10/down', '-f', str(raw))
    refusal = F.error(HEAT_PUMP, 9, NOT_AUTHORISED)
    wait_for(lambda: refusal in hex_payloads(ups).get('spot/v1/hp-s/10/up', []),
             what='the plain refusal on /up')
    # a kid the device no longer lists in its roster
    dev.call(lambda now: dev.roster.unpair(BRIDGE_KID))
    gone = bridge.send_request('hp-s', F.READ, HEAT_PUMP, [FLOW_TEMP]).result(WAIT)
    assert F.decode(gone)[3] == [NOT_AUTHORISED]
    assert dev.node.get(HEAT_PUMP, FLOW_SETPOINT) == 45.0
    # the bridge never takes the plain refusal as an answer from the sealed device
    assert bridge.unmatched == 0 and refusal not in bridge.calls.of('reply')


# ---------------------------------------------------------------- reliability, scale-out

def test_broker_restart_amid_100_qos1_results_loses_none(env):
    broker = env.broker()
    dev = env.device(broker, 'hp-r', client_kw={
        'keepalive': 5, 'retry_ms': 3000,
        'outbox': MemoryOutbox(max_messages=256, max_bytes=65536)})
    bridge = env.bridge(broker, client_id='bridge-r', clean_session=False, request_timeout=40)
    online(bridge, 'hp-r')
    dev.hold = True  # the device takes the requests now, answers them later
    answers = [bridge.send_request('hp-r', F.READ, HEAT_PUMP, [FLOW_TEMP]) for _ in range(100)]
    wait_for(lambda: len(dev.held) == 100, what='100 requests at the device')
    dev.release(30)
    broker.stop()
    wait_for(lambda: not dev.loop.connected, what='the device to see the broker gone')
    dev.release_offline(40)  # answered while the broker is down: they wait in the outbox
    queued = len(dev.client.outbox)
    broker.start()
    dev.release(30)
    done, not_done = concurrent.futures.wait(answers, timeout=30)
    assert not not_done, '%d of 100 RESULTs lost' % len(not_done)
    mids = sorted(F.decode(f.result())[2] for f in answers)
    assert mids == list(range(1, 101))
    assert all(F.decode(f.result())[0] == F.RESULT for f in answers)
    assert queued >= 40
    assert dev.loop.connections >= 2


def test_shared_subscription_splits_telemetry_and_each_bridge_gets_its_answers(env):
    broker = env.broker()
    dev = env.device(broker, 'hp-1', qos_telemetry=1)
    one = env.bridge(broker, client_id='bridge-1', share_group='g')
    two = env.bridge(broker, client_id='bridge-2', share_group='g')
    online(one, 'hp-1')
    online(two, 'hp-1')
    dev.call(lambda now: [dev.binding.telemetry(HEAT_PUMP, now, [FLOW_TEMP]) for _ in range(20)])
    total = lambda: len(one.calls.of('telemetry')) + len(two.calls.of('telemetry'))  # noqa: E731
    wait_for(lambda: total() == 20, what='20 notifications across the group')
    assert one.calls.of('telemetry') and two.calls.of('telemetry')
    answers = [br.send_request('hp-1', F.READ, HEAT_PUMP, [FLOW_TEMP])
               for _ in range(5) for br in (one, two)]
    assert all(F.decode(a.result(WAIT))[0] == F.RESULT for a in answers)
    assert one.unmatched == 0 and two.unmatched == 0
    assert total() == 20


def test_device_and_bridge_over_tls(env, tmp_path):
    certs = make_ca_and_server_cert(str(tmp_path))
    broker = env.broker(tls=certs)
    dev = env.device(broker, 'hp-t', loop_kw={
        'ssl_context': make_tls_context(cafile=certs['ca']), 'server_hostname': 'localhost'})
    bridge = env.bridge(broker, tls={'ca_certs': certs['ca']})
    online(bridge, 'hp-t')
    answer = bridge.send_request('hp-t', F.WRITE, HEAT_PUMP, {FLOW_SETPOINT: 215})
    assert F.decode(answer.result(WAIT))[0] == F.RESULT
    assert dev.node.get(HEAT_PUMP, FLOW_SETPOINT) == 21.5
