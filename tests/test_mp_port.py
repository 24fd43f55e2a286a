"""The MicroPython port (ports/micropython) on real MicroPython 1.27 and on CPython.

Every case_*() below is one behaviour of the board runtime, run twice: here on
CPython, and inside the WebAssembly MicroPython, which gets this very file as
/tests/port_cases.py next to the spot package (core, profiles, ports/micropython).
The runtime's providers are fakes: a network of UDP/TCP sockets delivering to a
bridge made of the project's own sans-I/O CoAP endpoint or a small MQTT broker
built on core.mqtt, a clock in ms, and a board whose deep sleep and watchdog
only count. The runtime's asyncio coroutine run() is driven by hand: each
`await sleep(ms)` yields to World.run_until(), which moves the datagrams and
advances the clock to the earlier of that sleep and the bridge's next timer.
"""
import os

try:   # CPython (pytest); under MicroPython this file is only the cases
    import pytest
    import mp_harness as mp
except ImportError:
    pytest = None

from spot.core import coap, frame as F
from spot.core import mqtt as M
from spot.core.coap_endpoint import Endpoint
from spot.core.coap_client import EV_RESPONSE, EV_NOTIFICATION
from spot.core.coap_server import Response
from spot.core.coap_binding import CF_SPOT
from spot.core.node import EV_WRITE
from spot.core.mqtt_binding import parse_topic, down_topic, UP, ANNOUNCE
from spot.core.mqtt_client import MemoryOutbox
from spot.core.services import HEAT_PUMP as HP, PLANS, NODE
from spot.ports.micropython import device, config, hw, modbus
from spot.ports.micropython.flash_outbox import FileOutbox
from spot.profiles import heat_pump

SG_READY = 6
FLOW_SETPOINT = 7
FLOW_TEMP = 8
DEV_ADDR = ('10.0.0.2', 5683)
BRIDGE_ADDR = ('10.0.0.9', 5683)
BROKER_ADDR = ('10.0.0.9', 1883)


# ---- fakes -------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


class Sleep:
    """What run() awaits: yields the ms it wants to sleep to the driver."""

    def __init__(self, ms):
        self.ms = ms

    def __await__(self):
        yield self.ms
    __iter__ = __await__


class Pin:
    def __init__(self, v=0):
        self.v = v

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


class Wdt:
    def __init__(self):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class Board:
    """net_up/link_ok/watchdog/woke_from_sleep/deep_sleep of ports.micropython.board."""

    def __init__(self, woke=False):
        self.wdt = Wdt()
        self.slept = []
        self.woke = woke
        self.net_ups = 0
        self.wdt_ms = None

    async def net_up(self, cfg, sleep):
        self.net_ups += 1
        return True

    def link_ok(self):
        return True

    def watchdog(self, ms):
        self.wdt_ms = ms
        return self.wdt

    def woke_from_sleep(self):
        return self.woke

    def deep_sleep(self, ms):
        self.slept.append(ms)


class Udp:
    def __init__(self, net):
        self.net = net
        self.inbox = []
        self.closed = False

    def bind(self, addr):
        self.net.udp = self

    def setblocking(self, flag):
        pass

    def recvfrom(self, n):
        if not self.inbox:
            raise OSError(11)   # EAGAIN
        return self.inbox.pop(0)

    def sendto(self, data, addr):
        if self.net.down:
            self.net.lost += 1
        else:
            self.net.out.append((addr, bytes(data)))

    def close(self):
        self.closed = True


class Tcp:
    """A MicroPython stream socket: read()/write() give None when they would block."""

    def __init__(self, net):
        self.net = net
        self.inbox = bytearray()
        self.sent = bytearray()
        self.closed = False
        self.peer_closed = False

    def settimeout(self, t):
        pass

    def setblocking(self, flag):
        pass

    def connect(self, addr):
        if self.net.down:
            self.net.refused += 1
            raise OSError(111)
        self.net.tcp = self

    def read(self, n):
        if self.peer_closed:
            return b''
        if not self.inbox:
            return None
        data = bytes(self.inbox[:n])
        self.inbox[:n] = b''
        return data

    def write(self, data):
        self.sent += data
        return len(data)

    def close(self):
        self.closed = True


class Net:
    """The socket module the runtime is given."""
    AF_INET = 2
    SOCK_STREAM = 1
    SOCK_DGRAM = 2

    def __init__(self):
        self.down = False
        self.lost = 0
        self.refused = 0
        self.out = []      # (to, datagram) sent by the device
        self.udp = None
        self.tcp = None

    def getaddrinfo(self, host, port, *a):
        return [(2, 1, 0, '', (host, port))]

    def socket(self, af, kind, *a):
        return Udp(self) if kind == 2 else Tcp(self)


class Rand:
    def __init__(self):
        self.n = 7

    def __call__(self):
        self.n += 7919
        return self.n


class CoapBridge:
    """A bridge's CoAP side: answers ANNOUNCE with RESULT, stores telemetry, asks the device."""

    def __init__(self, clock=None):
        self.ep = Endpoint(self.handle, rand=Rand())
        self.clock = clock      # Unix time put in the RESULT to an ANNOUNCE with flag bit 1
        self.announces = []
        self.telemetry = []     # decoded NOTIFY bodies POSTed by the device
        self.answers = {}       # token -> [events]

    def handle(self, req):
        frame = bytes(req.payload)
        op = frame[0] & 0x0F
        mid = F.message_id(frame)
        if op == F.ANNOUNCE:
            body = F.decode(frame)[3]
            self.announces.append(body)
            clock = {1: self.clock} if self.clock and body.get(3, 0) & 2 else None
            return Response(coap.CHANGED, F.encode(F.RESULT, NODE, mid, clock), CF_SPOT)
        if op == F.NOTIFY:
            self.telemetry.append(F.decode(frame)[3])
            return Response(coap.CHANGED)
        return Response(coap.BAD_REQUEST)

    def ask(self, op, sid, mid, body, observe=None):
        code = coap.FETCH if observe is not None else coap.POST
        token = self.ep.request(DEV_ADDR, code, 's', F.encode(op, sid, mid, body),
                                observe=observe, content_format=CF_SPOT)
        self.answers[token] = []
        return token

    def frames(self, token):
        return [F.decode(e.payload) for e in self.answers[token]
                if e.kind in (EV_RESPONSE, EV_NOTIFICATION)]

    def exchange(self, world):
        """Move datagrams both ways once; True if anything moved."""
        net = world.net
        moved = False
        out, net.out = net.out, []
        for to, data in out:
            moved = True
            if to == BRIDGE_ADDR:
                for _, reply in self.ep.receive(data, DEV_ADDR, world.clock.now):
                    world.to_device(reply, BRIDGE_ADDR)
        for _, data in self.ep.step(world.clock.now):
            moved = True
            world.to_device(data, BRIDGE_ADDR)
        for e in self.ep.events():
            if e.token in self.answers:
                self.answers[e.token].append(e)
        return moved

    def next_timeout(self, now):
        return self.ep.next_timeout(now)


class Broker:
    """A one-client MQTT broker on core.mqtt: CONNACK, SUBACK, PUBACK, retained births."""

    def __init__(self):
        self.parser = M.StreamParser()
        self.published = []     # (topic, payload, qos, retain) from the device
        self.subscriptions = []
        self.connects = 0
        self.conn = None
        self.pid = 0
        self.acked_by_device = []

    def exchange(self, world):
        tcp = world.net.tcp
        if tcp is None or tcp.closed:
            if self.conn is not None:
                self.conn = None
                self.parser.reset()
            return False
        if tcp is not self.conn:
            self.conn = tcp
            self.parser.reset()
        if not tcp.sent:
            return False
        data = bytes(tcp.sent)
        tcp.sent = bytearray()
        for p in self.parser.feed(data):
            if p.type == M.CONNECT:
                self.connects += 1
                tcp.inbox += M.encode_connack(False, 0)
            elif p.type == M.SUBSCRIBE:
                self.subscriptions += [f for f, q in p.filters]
                tcp.inbox += M.encode_suback(p.pid, [q for f, q in p.filters])
            elif p.type == M.PUBLISH:
                self.published.append((p.topic, bytes(p.payload), p.qos, p.retain))
                if p.qos:
                    tcp.inbox += M.encode_puback(p.pid)
            elif p.type == M.PUBACK:
                self.acked_by_device.append(p.pid)
            elif p.type == M.PINGREQ:
                tcp.inbox += M.PINGRESP_PACKET
        return True

    def send(self, world, topic, payload):
        self.pid += 1
        world.net.tcp.inbox += M.encode_publish(topic, payload, 1, False, False, self.pid)

    def up_frames(self):
        out = []
        for topic, payload, qos, retain in self.published:
            t = parse_topic(topic)
            if t is not None and t[0] == UP:
                out.append(F.decode(payload))
        return out


class World:
    """One device, its fakes and a peer (CoapBridge or Broker), on one fake clock."""

    def __init__(self, cfg, peer, woke=False, files=None, bind=None):
        self.clock = Clock()
        self.net = Net()
        self.board = Board(woke)
        self.peer = peer
        self.files = files if files is not None else tmpdir()
        self.dev = device.Device(cfg, heat_pump, net=self.net, clock=self.clock, sleep=Sleep,
                                 board=self.board, files=self.files, poll_ms=10 ** 9)
        self.flow = [35.2]
        self.pins = (Pin(), Pin())
        node = self.dev.node
        hw.bind(node, 'flow_temp', get=lambda: self.flow[0])
        hw.bind(node, 'sg_ready', set=hw.SgReady(self.pins[0], self.pins[1]))
        if bind is not None:
            bind(self)
        self.coro = None
        self.result = None
        self.turns = 0

    def to_device(self, data, addr):
        self.net.udp.inbox.append((data, addr))

    def run_until(self, t):
        """Run the device, the network and the peer until the clock reaches t ms."""
        if self.coro is None:
            self.coro = self.dev.run()
        while self.clock.now < t and self.result is None:
            try:
                want = self.coro.send(None)
            except StopIteration as e:
                self.result = e.value if e.args else None
                self.result = self.result or self.dev.state
                return
            self.turns += 1
            if self.peer.exchange(self):
                continue                      # input arrived: the device wakes at once
            nxt = self.clock.now + want
            pt = self.peer.next_timeout(self.clock.now) if hasattr(self.peer, 'next_timeout') \
                else None
            if pt is not None:
                nxt = min(nxt, self.clock.now + max(pt, 1))
            self.clock.now = min(max(nxt, self.clock.now + 1), t)
        self.peer.exchange(self)


def tmpdir():
    """A fresh directory for state files, ending in '/'."""
    try:
        import tempfile
        return tempfile.mkdtemp() + '/'
    except ImportError:   # MicroPython
        n = 0
        while True:
            n += 1
            path = '/state%d' % n
            try:
                os.mkdir(path)
                return path + '/'
            except OSError:
                pass


def coap_config(**kw):
    cfg = {'id': 'hp-1', 'profile': 'heat_pump', 'bridge': 'coap://10.0.0.9:5683',
           'telemetry': 60, 'lifetime': 3600, 'backoff_ms': [2000, 60000]}
    cfg.update(kw)
    return cfg


def mqtt_config(**kw):
    cfg = {'id': 'hp-1', 'profile': 'heat_pump', 'bridge': 'mqtt://10.0.0.9:1883',
           'telemetry': 60, 'lifetime': 60, 'backoff_ms': [1000, 8000]}
    cfg.update(kw)
    return cfg


def coap_world(**kw):
    w = World(coap_config(**kw), CoapBridge())
    w.run_until(1000)
    return w


# ---- CoAP -------------------------------------------------------------------------------

def case_boot_announces_the_device_to_the_bridge_and_registers():
    w = coap_world()
    assert w.dev.state == 'run' and w.board.net_ups == 1
    assert len(w.peer.announces) == 1
    body = w.peer.announces[0]
    assert body[0] == 'hp-1' and [HP, 1, 0] in body[1]
    assert w.dev.link.up()


def case_the_watchdog_is_started_from_the_config_and_fed_every_turn():
    w = coap_world(wdt_ms=8000)
    assert w.board.wdt_ms == 8000
    assert w.board.wdt.feeds >= w.turns > 0


def case_a_board_without_a_watchdog_gives_none_and_the_device_serves_unfed():
    from spot.ports.micropython import board
    assert board.watchdog(8000) is None        # off a board: no machine.WDT

    class NoWatchdog(Board):
        def watchdog(self, ms):
            self.wdt_ms = ms
            return None
    w = World(coap_config(wdt_ms=8000), CoapBridge())
    w.board = w.dev.board = NoWatchdog()
    w.run_until(3000)
    assert w.board.wdt_ms == 8000 and w.board.wdt.feeds == 0
    assert len(w.peer.announces) == 1 and w.dev.link.up()


def case_network_bring_up_is_retried_with_back_off_before_anything_is_sent():
    class SlowNet(Board):
        async def net_up(self, cfg, sleep):
            self.net_ups += 1
            return self.net_ups >= 4
    w = World(coap_config(backoff_ms=[1000, 3000]), CoapBridge())
    w.board = w.dev.board = SlowNet()
    w.run_until(1500)
    assert w.board.net_ups == 2 and not w.peer.announces     # up at 0 s? no; again at 1 s
    w.run_until(10000)
    assert w.board.net_ups == 4                                # 0, 1, 3 (+2), 6 (+3) s
    assert len(w.peer.announces) == 1 and w.dev.link.up()


def case_a_read_is_answered_through_the_bound_getter():
    w = coap_world()
    w.flow[0] = 41.7
    token = w.peer.ask(F.READ, HP, 5, [FLOW_TEMP])
    w.run_until(2000)
    assert w.peer.frames(token) == [(F.RESULT, HP, 5, {FLOW_TEMP: 417})]


def case_idle_turns_ask_poll_not_recvfrom_where_the_socket_can_be_polled():
    # MicroPython's select.poll() watches any stream whose ioctl() answers MP_STREAM_POLL,
    # as a board's socket does: the link then calls recvfrom() only when a datagram
    # waits (its EAGAIN is an exception object made per idle turn). CPython cannot poll
    # this fake (no fileno()): there recvfrom() itself tells, as before.
    import io
    import select

    class PollableUdp(io.IOBase):
        def __init__(self, net):
            self.udp = Udp(net)
            self.empty_reads = 0
            net.pollable = self

        def ioctl(self, req, arg):
            if req == 3:   # MP_STREAM_POLL: the asked events that are ready (POLLIN 1)
                return arg & 1 if self.udp.inbox else 0
            return 0

        def recvfrom(self, n):
            if not self.udp.inbox:
                self.empty_reads += 1
            return self.udp.recvfrom(n)

        def bind(self, addr):
            self.udp.bind(addr)

        def setblocking(self, flag):
            pass

        def sendto(self, data, addr):
            self.udp.sendto(data, addr)

    w = World(coap_config(), CoapBridge())
    w.net.socket = lambda af, kind, *a: PollableUdp(w.net)
    w.run_until(1000)
    assert w.dev.link.up()
    w.flow[0] = 41.7
    token = w.peer.ask(F.READ, HP, 5, [FLOW_TEMP])
    w.run_until(5000)
    assert w.peer.frames(token) == [(F.RESULT, HP, 5, {FLOW_TEMP: 417})]
    assert w.dev.errors == 0 and w.turns >= 5
    if hasattr(select.poll(), 'ipoll'):
        assert w.net.pollable.empty_reads == 0
    else:
        assert w.net.pollable.empty_reads >= w.turns


def case_a_write_reaches_the_hardware_setter():
    w = coap_world()
    token = w.peer.ask(F.WRITE, HP, 6, {SG_READY: 4})
    w.run_until(2000)
    assert w.peer.frames(token) == [(F.RESULT, HP, 6, None)]
    assert (w.pins[0].v, w.pins[1].v) == (1, 1)          # SG-Ready "forced on"
    token = w.peer.ask(F.WRITE, HP, 7, {SG_READY: 9})      # out of range: nothing changes
    w.run_until(3000)
    assert w.peer.frames(token)[0][0] == F.ERROR
    assert (w.pins[0].v, w.pins[1].v) == (1, 1)


def case_node_events_reach_the_firmware_hook_once_and_are_not_kept():
    w = coap_world()
    seen = []
    w.dev.on_event = seen.append
    w.peer.ask(F.WRITE, HP, 6, {SG_READY: 4})
    w.run_until(2000)
    assert (EV_WRITE, HP, SG_READY, None) in seen
    assert w.dev.node.events == []
    n = len(seen)
    w.run_until(4000)
    assert len(seen) == n                  # each event is handed over once


def case_node_events_are_not_kept_without_a_firmware_hook():
    w = coap_world()
    for mid in range(6, 12):               # writes the firmware never looks at
        w.peer.ask(F.WRITE, HP, mid, {SG_READY: 2})
        w.run_until(1000 + 500 * mid)
    assert w.dev.node.events == []


def case_a_subscription_notifies_at_pmax_and_after_pmin_on_change():
    w = coap_world(telemetry=0)
    token = w.peer.ask(F.SUBSCRIBE, HP, 77, {FLOW_TEMP: {0: 10, 1: 60}}, observe=0)
    w.run_until(2000)
    assert w.peer.frames(token) == [(F.RESULT, HP, 77, {FLOW_TEMP: 352})]
    w.run_until(61500)                      # unchanged: one notification at pmax
    notes = w.peer.frames(token)[1:]
    assert [(n[0], n[3][1]) for n in notes] == [(F.NOTIFY, {FLOW_TEMP: 352})]
    w.flow[0] = 36.0
    w.run_until(65000)                      # changed, but pmin (10 s) has not passed
    assert len(w.peer.frames(token)) == 2
    w.run_until(73000)
    notes = w.peer.frames(token)[1:]
    assert [n[3][1] for n in notes] == [{FLOW_TEMP: 352}, {FLOW_TEMP: 360}]


def case_telemetry_is_queued_while_the_link_is_down_and_flushed_on_reconnect():
    w = World(coap_config(telemetry=60), CoapBridge(), bind=lambda w: hw.bind(
        w.dev.node, 'flow_temp', get=lambda: w.clock.now // 1000 / 10))
    w.run_until(100000)
    assert [t[1][FLOW_TEMP] for t in w.peer.telemetry] == [60]
    w.net.down = True
    w.run_until(400000)
    assert len(w.peer.telemetry) == 1 and w.net.lost > 0 and not w.dev.link.up()
    w.net.down = False
    w.run_until(700000)
    got = [t[1][FLOW_TEMP] for t in w.peer.telemetry]
    for t in (120, 180, 240, 300, 360):
        assert t in got, (t, got)
    assert w.dev.link.up() and not w.dev.link.coap.outbox
    assert len(w.peer.announces) >= 2                  # registered again


def case_without_the_controller_the_node_falls_back_to_the_default_plan():
    w = coap_world(plan={'heat_pump': {'sg_ready': 2}}, comm_timeout=60)
    assert (w.pins[0].v, w.pins[1].v) == (0, 0)          # default plan: SG-Ready normal
    token = w.peer.ask(F.INVOKE, PLANS, 8, [1, [1, 0, 7200, 10, {HP: {SG_READY: 1}}]])
    w.run_until(2000)
    assert w.peer.frames(token) == [(F.RESULT, PLANS, 8, None)]
    assert (w.pins[0].v, w.pins[1].v) == (1, 0)          # the bridge's plan: blocked
    w.run_until(50000)
    assert not w.dev.node.fallback
    w.run_until(64000)                                   # 60 s of silence
    assert w.dev.node.fallback
    assert (w.pins[0].v, w.pins[1].v) == (0, 0)


def case_a_freshly_booted_device_takes_a_plan_once_the_bridge_set_its_clock():
    # the bridge's side is a test double here (CoapBridge); the real bridge sends the
    # same frames (spec 3.1: the clock set after registration, before any command)
    w = coap_world()
    assert not w.dev.node.time_known
    plan = [1, [1, 1700000000, 1700003600, 10, {HP: {SG_READY: 3}}]]
    token = w.peer.ask(F.INVOKE, PLANS, 8, plan)
    w.run_until(2000)
    assert w.peer.frames(token) == [(F.ERROR, PLANS, 8, [4, 'plan expiry'])]
    token = w.peer.ask(F.WRITE, 2, 9, {1: 1700000000})    # spec 3.1 set-clock
    w.run_until(3000)
    assert w.peer.frames(token) == [(F.RESULT, 2, 9, None)]
    token = w.peer.ask(F.INVOKE, PLANS, 10, plan)
    w.run_until(4000)
    assert w.peer.frames(token) == [(F.RESULT, PLANS, 10, None)]
    assert (w.pins[0].v, w.pins[1].v) == (0, 1)          # SG-Ready 3: the plan in force


def case_a_booted_device_takes_its_clock_from_the_registration_result():
    # spec 3.1: flag bit 1 in the ANNOUNCE, the time in the RESULT, no WRITE needed
    w = World(coap_config(), CoapBridge(clock=1700000000))
    w.run_until(1000)
    assert w.peer.announces[0][3] == 2                   # FLAG_CLOCK
    token = w.peer.ask(F.INVOKE, PLANS, 8, [1, [1, 1700000000, 1700003600, 10,
                                                {HP: {SG_READY: 3}}]])
    w.run_until(2000)
    assert w.peer.frames(token) == [(F.RESULT, PLANS, 8, None)]


def case_a_sleepy_device_sends_what_is_queued_then_deep_sleeps():
    w = World(coap_config(sleepy=True, awake_s=5, sleep_s=600, telemetry=0), CoapBridge())
    w.run_until(60000)
    assert w.result == 'slept'
    assert w.board.slept == [600000]
    assert w.peer.announces[0][3] == 3     # FLAG_SLEEPY | FLAG_CLOCK (the bridge sets its clock)
    assert [t[1][FLOW_TEMP] for t in w.peer.telemetry] == [352]


def case_a_sleepy_device_takes_what_waits_before_sleeping():
    w = World(coap_config(sleepy=True, awake_s=5, sleep_s=600, telemetry=0), CoapBridge())
    w.run_until(1000)
    token = w.peer.ask(F.WRITE, HP, 9, {SG_READY: 3})
    w.run_until(60000)
    assert w.peer.frames(token) == [(F.RESULT, HP, 9, None)]
    assert (w.pins[0].v, w.pins[1].v) == (0, 1)
    assert w.result == 'slept'


def case_the_clock_survives_deep_sleep():
    files = tmpdir()
    w = World(coap_config(sleepy=True, awake_s=5, sleep_s=600, telemetry=0), CoapBridge(),
              files=files)
    w.run_until(1000)
    w.peer.ask(F.WRITE, 2, 10, {1: 1700000000})          # the bridge sets the time at 1 s
    w.run_until(60000)
    assert w.result == 'slept'
    asleep_at = 1700000000 + w.clock.now // 1000 - 1
    w2 = World(coap_config(sleepy=True, telemetry=0), CoapBridge(), woke=True, files=files)
    node = w2.dev.node
    assert node.time_known
    assert abs(node.unix(0) - (asleep_at + 600)) <= 1


def case_oscore_sequence_numbers_are_reserved_in_flash_and_not_reused_after_a_reboot():
    files = tmpdir()
    keys = {'secret': '0102030405060708', 'sender': '01', 'recipient': ''}
    w = World(coap_config(oscore=keys), CoapBridge(), files=files)
    ctx = w.dev.ctx
    assert (ctx.sender_seq, ctx.sender_seq_limit) == (0, 256)
    with open(files + 'spot.seq') as f:
        assert f.read() == '256'
    w.run_until(1000)
    ctx.sender_seq = 250                      # as if 250 messages had been protected
    w.run_until(2000)                         # fewer than 16 left: the next block is reserved
    assert ctx.sender_seq_limit == 512 and ctx.sender_seq >= 250
    w2 = World(coap_config(oscore=keys), CoapBridge(), files=files)   # power cycle
    assert (w2.dev.ctx.sender_seq, w2.dev.ctx.sender_seq_limit) == (512, 768)


# ---- MQTT -------------------------------------------------------------------------------

def mqtt_world(**kw):
    w = World(mqtt_config(**kw), Broker())
    w.run_until(1000)
    return w


def case_mqtt_boot_connects_publishes_the_birth_and_subscribes_its_down_topic():
    w = mqtt_world()
    b = w.peer
    assert b.connects == 1 and w.dev.link.up()
    births = [p for p in b.published if parse_topic(p[0])[0] == ANNOUNCE]
    assert births and births[0][3] is True and F.decode(births[0][1])[3][0] == 'hp-1'
    assert 'spot/v1/hp-1/+/down/#' in b.subscriptions


def case_mqtt_requests_are_answered_on_the_up_topic():
    w = mqtt_world()
    w.peer.send(w, down_topic('hp-1', HP), F.encode(F.READ, HP, 3, [FLOW_TEMP]))
    w.peer.send(w, down_topic('hp-1', HP), F.encode(F.WRITE, HP, 4, {SG_READY: 4}))
    w.run_until(2000)
    assert w.peer.up_frames() == [(F.RESULT, HP, 3, {FLOW_TEMP: 352}),
                                  (F.RESULT, HP, 4, None)]
    assert (w.pins[0].v, w.pins[1].v) == (1, 1)


def case_mqtt_reconnects_with_back_off_and_flushes_queued_telemetry():
    w = World(mqtt_config(), Broker(), bind=lambda w: hw.bind(
        w.dev.node, 'flow_temp', get=lambda: w.clock.now // 1000 / 10))
    w.run_until(100000)
    w.net.down = True
    w.net.tcp.peer_closed = True              # the broker goes away
    w.run_until(130000)
    refused_early = w.net.refused
    w.run_until(400000)
    assert w.net.refused > refused_early >= 2   # it keeps trying ...
    assert w.net.refused < 70                   # ... but backs off (8 s at most, not every turn)
    w.net.down = False
    w.run_until(420000)
    assert w.peer.connects == 2
    got = [f[3][1][FLOW_TEMP] for f in w.peer.up_frames() if f[0] == F.NOTIFY]
    for t in (60, 120, 180, 240, 300, 360):
        assert t in got, (t, got)
    assert not len(w.dev.link.client.outbox)


def case_mqtt_queued_telemetry_survives_a_reboot_in_the_flash_outbox():
    files = tmpdir()
    w = World(mqtt_config(), Broker(), files=files)
    w.net.down = True
    w.run_until(200000)                       # telemetry at 60, 120, 180 s: all queued
    assert len(w.dev.link.client.outbox) == 3
    w2 = World(mqtt_config(), Broker(), files=files)   # power cycle: a new runtime
    assert len(w2.dev.link.client.outbox) == 3
    w2.run_until(2000)
    notes = [f for f in w2.peer.up_frames() if f[0] == F.NOTIFY]
    assert len(notes) == 3
    assert not len(w2.dev.link.client.outbox)


# ---- pieces -----------------------------------------------------------------------------

def case_config_fills_defaults_and_names_the_bad_field():
    path = tmpdir() + 'spot.json'
    with open(path, 'w') as f:
        f.write('{"id": "hp-9", "profile": "heat_pump", "bridge": "mqtts://broker.example"}')
    cfg = config.load(path)
    assert cfg['id'] == 'hp-9' and cfg['comm_timeout'] == 900 and cfg['qos'] == 1
    assert config.parse_uri(cfg['bridge']) == ('mqtts', 'broker.example', 8883)
    assert config.parse_uri('coap://[fd00::1]:5700') == ('coap', 'fd00::1', 5700)
    for bad, word in (({'id': 'x', 'profile': 'heat_pump', 'bridge': 'http://x'}, 'bridge'),
                      ({'id': '', 'profile': 'heat_pump', 'bridge': 'coap://x'}, 'id'),
                      ({'id': 'x', 'profile': 'p', 'bridge': 'coap://x', 'telemetry': -1},
                       'telemetry'),
                      ({'id': 'x', 'profile': 'p', 'bridge': 'coap://x',
                        'oscore': {'secret': 'zz', 'sender': '', 'recipient': '01'}}, 'oscore'),
                      ({'id': 'x', 'profile': 'p', 'bridge': 'coap://x',
                        'oscore': {'secret': '01', 'sender': ''}}, 'oscore must be a map with'),
                      ({'id': 'x', 'profile': 'p', 'bridge': 'coap://x',
                        'oscore': {'secret': 1, 'sender': '', 'recipient': '01'}},
                       'oscore.secret must be hex')):
        try:
            config.load(bad)
        except ValueError as e:
            assert word in str(e), (word, e)
        else:
            raise AssertionError('accepted %r' % bad)
    with open(path, 'w') as f:
        f.write('{"id": ')
    try:
        config.load(path)
    except ValueError as e:
        assert 'JSON' in str(e)
    else:
        raise AssertionError('accepted broken JSON')


def case_config_takes_a_dict_as_its_file_and_leaves_it_unchanged():
    given = {'id': 'hp-9', 'profile': 'heat_pump', 'bridge': 'coap://192.0.2.1', 'qos': 0}
    cfg = config.load(given)
    assert cfg['qos'] == 0 and cfg['comm_timeout'] == 900 and cfg['backoff_ms'] == (1000, 60000)
    assert given == {'id': 'hp-9', 'profile': 'heat_pump', 'bridge': 'coap://192.0.2.1', 'qos': 0}


def case_config_takes_oscore_keys_as_hex_text_only():
    # MicroPython's bytes.fromhex also reads bytes: a runtime must not accept what the
    # other refuses
    bad = {'id': 'x', 'profile': 'p', 'bridge': 'coap://x',
           'oscore': {'secret': b'0102', 'sender': '', 'recipient': '01'}}
    try:
        config.load(bad)
    except ValueError as e:
        assert 'oscore.secret must be hex' in str(e), e
    else:
        raise AssertionError('accepted a bytes key')


def case_a_device_made_from_the_config_files_path_checks_it_then_forgets_the_module():
    import json
    import sys
    path = tmpdir() + 'spot.json'
    with open(path, 'w') as f:
        json.dump(coap_config(plan={'heat_pump': {'sg_ready': 2}}), f)
    dev = World(path, CoapBridge()).dev
    assert dev.cfg['id'] == 'hp-1' and dev.cfg['telemetry'] == 60   # a default filled in
    assert 'plan' not in dev.cfg and 'comm_timeout' not in dev.cfg   # read at boot only
    assert dev.node.plans.default == {HP: {6: 2}}
    # used only at boot: gone from sys.modules and from its package once the device is made
    assert config.__name__ not in sys.modules
    assert getattr(sys.modules[config.__name__.rpartition('.')[0]], 'config', None) is None
    with open(path, 'w') as f:
        json.dump(coap_config(telemetry=-1), f)
    try:
        World(path, CoapBridge())
    except ValueError as e:
        assert 'telemetry' in str(e), e
    else:
        raise AssertionError('accepted a config file with a bad field')


def case_default_plan_names_become_wire_entries():
    w = World(coap_config(plan={'heat_pump': {'flow_setpoint': 35.5, 'sg_ready': 2}}),
              CoapBridge())
    assert w.dev.node.plans.default == {HP: {FLOW_SETPOINT: 355, SG_READY: 2}}
    try:
        World(coap_config(plan={'heat_pump': {'no_such': 1}}), CoapBridge())
    except ValueError as e:
        assert 'no_such' in str(e)
    else:
        raise AssertionError('unknown object accepted')


def case_flash_outbox_keeps_order_across_reloads_and_ignores_a_torn_tail():
    path = tmpdir() + 'outbox'
    box = FileOutbox(path)
    for pid in (1, 2, 3):
        box.append(pid, b'packet-%d' % pid)
    assert box.ack(2) and not box.ack(2)
    again = FileOutbox(path)
    assert list(again) == [(1, b'packet-1'), (3, b'packet-3')] and len(again) == 2
    with open(path, 'ab') as f:
        f.write(b'P\x00\x09\x00\x40half')     # a record cut by a power loss
    again = FileOutbox(path)
    assert list(again) == [(1, b'packet-1'), (3, b'packet-3')]
    again.append(9, b'after')
    assert list(FileOutbox(path)) == [(1, b'packet-1'), (3, b'packet-3'), (9, b'after')]
    mem = MemoryOutbox(max_messages=2)
    small = FileOutbox(tmpdir() + 'small', max_messages=2)
    for box in (mem, small):
        box.append(1, b'a')
        box.append(2, b'b')
        assert not box.room(1)


def case_flash_outbox_is_emptied_in_place_when_nothing_waits():
    path = tmpdir() + 'emptied'
    box = FileOutbox(path)
    box.append(4, b'packet-4')
    box.append(5, b'packet-5')
    assert box.ack(4) and list(FileOutbox(path)) == [(5, b'packet-5')]
    assert box.ack(5)
    with open(path, 'rb') as f:
        assert f.read() == b''
    assert len(FileOutbox(path)) == 0
    box.append(6, b'packet-6')
    assert list(FileOutbox(path)) == [(6, b'packet-6')]


def case_an_outbox_answers_which_packet_ids_it_holds():
    # the client asks before giving a packet id out (one queued offline is not sent yet)
    path = tmpdir() + 'held'
    for box in (MemoryOutbox(), FileOutbox(path)):
        box.append(4, b'four')
        box.append(7, b'seven')
        assert 4 in box and 7 in box and 5 not in box
        assert box.ack(4)
        assert 4 not in box and 7 in box
    assert 7 in FileOutbox(path) and 4 not in FileOutbox(path)   # read back from the file


def case_sg_ready_drives_the_relay_pair():
    a, b = Pin(), Pin()
    sg = hw.SgReady(a, b)
    seen = []
    for state in (1, 2, 3, 4):
        sg(state)
        seen.append((a.v, b.v, sg()))
    assert seen == [(1, 0, 1), (0, 0, 2), (0, 1, 3), (1, 1, 4)]


class Uart:
    def __init__(self, answer):
        self.answer = answer
        self.written = []

    def write(self, data):
        self.written.append(bytes(data))

    def read(self, n=None):
        if n is None:
            return None
        return self.answer


def case_modbus_reads_a_float_register_once_per_max_age():
    body = bytes((1, 4, 4)) + b'\x43\x66\x80\x00'          # 230.5 as an IEEE float
    c = modbus.crc16(body)
    uart = Uart(body + bytes((c & 0xFF, c >> 8)))
    t = [0]
    meter = modbus.Modbus(uart, unit=1, max_age_ms=1000, clock=lambda: t[0])
    v = meter.f32(0x00)
    assert v() == 230.5 and v() == 230.5 and len(uart.written) == 1
    assert uart.written[0] == bytes((1, 4, 0, 0, 0, 2, 0x71, 0xCB))
    t[0] = 1500
    uart.answer = body + b'\x00\x00'                          # bad CRC: unknown, counted
    assert v() is None and meter.errors == 1


def case_ntc_gives_25_degrees_at_the_divider_midpoint():
    class Adc:
        def __init__(self, raw):
            self.raw = raw

        def read_u16(self):
            return self.raw
    assert hw.Ntc(Adc(32768))() == 25.0
    assert hw.Ntc(Adc(0))() is None


class Adc:
    def __init__(self, raw):
        self.raw = raw

    def read_u16(self):
        return self.raw


def case_ntc_follows_the_beta_equation_to_a_fifth_of_a_degree():
    # R = r25 exp(beta (1/T - 1/298.15 K)) on the low side of 10 kOhm: ADC readings of
    # -40, 0, 25, 60, 100 Cel for a 10 kOhm beta 3950 part (computed from the equation)
    adc = Adc(0)
    ntc = hw.Ntc(adc)
    for raw, cel in ((63944, -40.0), (50511, 0.0), (32768, 25.0), (13049, 60.0), (4273, 100.0)):
        adc.raw = raw
        assert abs(ntc() - cel) <= 0.2, (raw, ntc(), cel)


def case_ntc_with_a_scale_gives_integers_in_that_unit():
    adc = Adc(13049)                                 # 60 Cel
    assert hw.Ntc(adc, scale=-1)() == 600
    assert abs(hw.Ntc(adc, scale=-2)() - 6000) <= 20
    assert hw.Ntc(adc, scale=0)() == 60
    assert type(hw.Ntc(adc, scale=-1)()) is int


def case_ntc_is_unknown_outside_its_range_and_when_open_or_shorted():
    for raw in (0, 1, 800, 65300, 65535):            # above 157 Cel, below -55 Cel
        assert hw.Ntc(Adc(raw))() is None
        assert hw.Ntc(Adc(raw), scale=-1)() is None


def case_ntc_sensors_of_the_same_parts_share_one_table():
    assert hw.Ntc(Adc(1)).table is hw.Ntc(Adc(2), scale=-1).table
    assert hw.Ntc(Adc(1)).table is not hw.Ntc(Adc(1), beta=3435).table


class BetaFailingOnce:
    """A test double: the Beta 3950 of a thermistor, whose division fails once, in the
    first table's loop (as a MemoryError would on a board)."""
    calls = 0

    def __truediv__(self, x):
        self.calls += 1
        if self.calls == 2:
            raise MemoryError
        return 3950 / x


def case_an_ntc_table_that_failed_to_compute_is_not_kept_for_the_next_sensor():
    beta = BetaFailingOnce()
    try:
        hw.Ntc(Adc(32768), beta=beta)
        raise AssertionError('the table was computed')
    except MemoryError:
        pass
    assert hw.Ntc(Adc(32768), beta=beta)() == 25.0   # computed again, not a half-made one


def case_an_ntc_bound_with_wire_serves_reads_without_conversion():
    w = World(coap_config(), CoapBridge(), bind=lambda w: hw.bind(
        w.dev.node, 'outdoor_temp', get=hw.Ntc(Adc(13049), scale=-1), wire=True))
    w.run_until(1000)
    token = w.peer.ask(F.READ, HP, 5, [11])
    w.run_until(3000)
    assert w.peer.frames(token) == [(F.RESULT, HP, 5, {11: 600})]


def case_hw_bind_refuses_a_wire_getter_of_another_scale():
    node = World(coap_config(), CoapBridge()).dev.node
    try:
        hw.bind(node, 'outdoor_temp', get=hw.Ntc(Adc(1), scale=-2), wire=True)
        raise AssertionError('bound')
    except ValueError as e:
        assert 'outdoor_temp' in str(e)
    assert not node.bound(HP, 11)


CASES = sorted(n for n in dir() if n.startswith('case_'))


# ---- pytest: each case on CPython and under MicroPython ----------------------------------

MARK = 'SPOT-PORT'
DRIVER = '''
import sys
sys.path.insert(0, '/tests')
import port_cases
for name in port_cases.CASES:
    try:
        getattr(port_cases, name)()
        print(%(mark)r, 'PASS', name)
    except BaseException as e:
        print(%(mark)r, 'FAIL', name, repr(e))
        sys.print_exception(e)
''' % {'mark': MARK}

if pytest is not None:
    from pathlib import Path

    def port_files():
        """spot_files() plus the board runtime (ports/micropython) and this file."""
        files = mp.spot_files()
        root = mp.REPO_ROOT
        for rel in ('ports/__init__.py', 'ports/micropython/__init__.py'):
            files['/lib/spot/' + rel] = (root / rel).read_text()
        for p in sorted((root / 'ports' / 'micropython').glob('*.py')):
            files['/lib/spot/ports/micropython/' + p.name] = p.read_text()
        files['/tests/port_cases.py'] = Path(__file__).read_text()
        return files

    @pytest.fixture(scope='module')
    def mp_results():
        r = mp.run_micropython(DRIVER, port_files(), timeout=120, check=False)
        results = {}
        for line in r.stdout.splitlines():
            if line.startswith(MARK + ' '):
                _, status, name = line.split(' ', 3)[:3]
                results[name] = status
        return results, r

    @pytest.mark.parametrize('name', [c[5:] for c in CASES])
    def test_on_cpython(name):
        globals()['case_' + name]()

    @pytest.mark.parametrize('name', [c[5:] for c in CASES])
    def test_under_micropython(mp_results, name):
        results, r = mp_results
        if results.get('case_' + name) != 'PASS':
            pytest.fail('MicroPython: %s\n%s\n%s' % (results.get('case_' + name), r.stdout[-3000:],
                                                     r.stderr[-3000:]), pytrace=False)
