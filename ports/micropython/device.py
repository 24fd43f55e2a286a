"""The runtime on a board: boot from the config, serve the node over CoAP or
MQTT on asyncio, reconnect with back-off, feed the watchdog, fall back to the
default plan (the node does), and the sleepy cycle: wake, send what is queued,
take what waits, sleep.

    import asyncio
    from spot.ports.micropython import config, device, hw
    from spot.profiles import heat_pump
    dev = device.Device(config.load(), heat_pump)
    hw.bind(dev.node, 'sg_ready', set=hw.SgReady(relay1, relay2))
    asyncio.run(dev.run())

Everything that touches the world is a provider, so tests run this very code
under MicroPython with fakes:
  net    socket-module-like: getaddrinfo(), socket(), AF_INET, SOCK_DGRAM,
         SOCK_STREAM; TCP sockets are used as MicroPython streams (read/write
         return None when they would block), UDP ones with recvfrom/sendto
  clock  () -> monotonic int ms (board.clock())
  sleep  async (ms) (asyncio.sleep_ms)
  board  net_up(cfg, sleep) async, link_ok(), watchdog(ms), woke_from_sleep(),
         deep_sleep(ms) (ports.micropython.board)
  files  path prefix of the state files: OSCORE sequence numbers, the MQTT
         outbox, the clock across deep sleep
poll() is the whole loop body: non-blocking, it returns the ms until it has
work; run() sleeps that long but at most poll_ms, the latency of input.
"""
import json

from ...core import frame as F
from ...core.node import Node
from ...core.model import ACCESS, R
from . import config as C

SEQ_BLOCK = 256        # OSCORE sequence numbers reserved per flash write
SEQ_LOW = 16           # reserve again when fewer are left
POLL_MS = 50           # longest sleep between two looks at the socket
SAMPLE_MS = 1000       # bound getters of subscribed objects are read this often
SLEEP_NO_LINK = 4      # a sleepy device gives up after this many awake periods without a link

_EAGAIN = (11, 110, 115)   # EAGAIN/EWOULDBLOCK, ETIMEDOUT, EINPROGRESS as MicroPython numbers them
try:
    import errno
    _EAGAIN = tuple(set(_EAGAIN + tuple(getattr(errno, n) for n in
                                        ('EAGAIN', 'EWOULDBLOCK', 'EINPROGRESS', 'ETIMEDOUT')
                                        if hasattr(errno, n))))
except ImportError:
    pass


def _default_sleep():
    import asyncio
    if hasattr(asyncio, 'sleep_ms'):
        return asyncio.sleep_ms
    return lambda ms: asyncio.sleep(ms / 1000)


class Device:
    """One node on one board. See the module docstring."""

    def __init__(self, cfg, profile, net=None, clock=None, sleep=None, board=None, files='',
                 poll_ms=POLL_MS):
        from . import board as real_board
        self.cfg = cfg = C.check(C.with_defaults(cfg))
        self.board = board or real_board
        self.clock = clock or real_board.clock()
        self.sleep = sleep or _default_sleep()
        if net is None:
            try:
                import socket as net
            except ImportError:
                import usocket as net
        self.net = net
        self.files = files
        # longest sleep between two looks at the socket (and at the watchdog)
        self.poll_ms = min(poll_ms, cfg['wdt_ms'] // 2) if cfg['wdt_ms'] else poll_ms
        self.node = node = Node([profile], cfg['id'], comm_timeout=cfg['comm_timeout'],
                                sleepy=bool(cfg['sleepy']))
        self.sid = profile.SERVICE
        node.set_default_plan(C.plan_entries(cfg['plan'], node.services))
        self.errors = 0           # exceptions caught in the loop
        self.last_error = None
        self.state = 'boot'       # boot, net, run, slept, stopped
        self._stop = False
        self._active = 0          # ms of the last request or link-up (sleepy)
        self._up_at = None
        self._sampled = -SAMPLE_MS
        self.ctx = self._oscore()
        scheme, host, port = C.parse_uri(cfg['bridge'])
        if scheme == 'coap':
            self.link = CoapLink(self, host, port)
        else:
            self.link = MqttLink(self, host, port, scheme == 'mqtts')
        self._restore_clock()

    # ---- firmware API ------------------------------------------------------------------

    def stop(self):
        self._stop = True

    def telemetry_now(self):
        """Queue a NOTIFY of every readable value now (sleepy wakes, firmware events)."""
        frame = self._notify_frame(self.clock())
        if frame is not None:
            self.link.telemetry(frame, self.clock())

    # ---- the loop ------------------------------------------------------------------------

    async def run(self):
        """Bring the network up and serve until stop() or deep sleep; returns the final state."""
        cfg = self.cfg
        wdt = self.board.watchdog(cfg['wdt_ms'])
        self.state = 'net'
        delay = cfg['backoff_ms'][0]
        while not self._stop:
            wdt.feed()
            if await self.board.net_up(cfg, self.sleep):
                try:
                    self.start()
                    break
                except OSError as e:     # e.g. the bridge's name does not resolve yet
                    self.errors += 1
                    self.last_error = e
            await self.sleep(delay)
            delay = self.backoff(delay)
        while not self._stop:
            wdt.feed()
            wait = self.poll()
            if self.state == 'sleep':
                self._go_to_sleep()
                return self.state
            if not self.board.link_ok():
                self.state = 'net'
                await self.board.net_up(cfg, self.sleep)
                self.state = 'run'
            cap = self.poll_ms
            await self.sleep(cap if wait is None or wait > cap else wait)
        self.link.close(self.clock())
        self.state = 'stopped'
        return self.state

    def start(self):
        """Open the link and start telemetry (run() does this after the network is up)."""
        now = self.clock()
        self.state = 'run'
        self._active = now
        self.link.open(now)
        t = self.cfg['telemetry']
        attrs = {}
        node = self.node
        for r in node.services[self.sid].rows:
            oid = r[0]
            if r[ACCESS] & R and ((self.sid, oid) in node.getters
                                  or node.values[self.sid].get(oid) is not None):
                attrs[oid] = {0: t, 1: t}
        if t and attrs:
            node.report(self.sid, attrs, now // 1000, self.link.report_peer())
        if self.cfg['sleepy']:
            self.telemetry_now()

    def poll(self):
        """One turn: move bytes, step the node and the protocol; ms until the next turn."""
        now = self.clock()
        try:
            wait = self.link.poll(now)
        except Exception as e:   # keep serving: the watchdog covers a stuck loop
            self.errors += 1
            self.last_error = e
            wait = POLL_MS
        self._keep_seq()
        if self.cfg['sleepy']:
            self._sleepy(now)
        node = self.node
        if node.getters and node.subs.subs:
            self._sample(now)
            d = self._sampled + SAMPLE_MS - now
            wait = d if wait is None or d < wait else wait
        return wait

    def _sample(self, now):
        # a bound getter changes without the node seeing it: read the subscribed ones
        # every SAMPLE_MS so change thresholds and pmin apply to them too
        if now - self._sampled < SAMPLE_MS:
            return
        self._sampled = now
        node = self.node
        getters = node.getters
        for s in node.subs.subs:
            sid = s[1]
            for oid in s[3]:
                if (sid, oid) in getters:
                    node.subs.changed(sid, oid, node.wire(sid, oid))

    # ---- sleepy cycle ------------------------------------------------------------------------

    def _sleepy(self, now):
        awake = self.cfg['awake_s'] * 1000
        if self.link.up():
            if self._up_at is None:
                self._up_at = self._active = now
            if now - self._active >= awake and self.link.idle(now):
                self.state = 'sleep'
        elif now >= awake * SLEEP_NO_LINK:
            self.state = 'sleep'

    def activity(self, now):
        """The link saw a request: stay awake for another awake period."""
        self._active = now

    def _go_to_sleep(self):
        now = self.clock()
        node = self.node
        ms = self.cfg['sleep_s'] * 1000
        self.link.close(now)
        if node.time_known:
            self._write('clock', json.dumps(int(node.unix(now // 1000)) + ms // 1000))
        self.state = 'slept'
        self.board.deep_sleep(ms)

    def _restore_clock(self):
        if not self.board.woke_from_sleep():
            return
        text = self._read('clock')
        if text:
            node = self.node
            node.clock_offset = int(text) - self.clock() // 1000
            node.time_known = True

    # ---- OSCORE ---------------------------------------------------------------------------

    def _oscore(self):
        o = self.cfg['oscore']
        if not o:
            return None
        from ...core.oscore import SecurityContext
        h = C.unhex
        seq = self._read('seq')
        ctx = SecurityContext(h(o['secret']), h(o['sender']), h(o['recipient']),
                              h(o.get('salt', '')),
                              id_context=h(o['context']) if o.get('context') else None,
                              persisted_seq=int(seq) if seq else 0)
        self._reserve(ctx)
        return ctx

    def _reserve(self, ctx):
        value = ctx.reserve_sender_seq(SEQ_BLOCK)
        self._write('seq', str(value))
        ctx.confirm_sender_seq(value)

    def _keep_seq(self):
        ctx = self.ctx
        if ctx is not None and ctx.sender_seq_remaining() < SEQ_LOW:
            self._reserve(ctx)

    # ---- helpers ----------------------------------------------------------------------------

    def _notify_frame(self, now):
        node = self.node
        values = {}
        for r in node.services[self.sid].rows:
            if r[ACCESS] & R:
                v = node.wire(self.sid, r[0])
                if v is not None:
                    values[r[0]] = v
        if not values:
            return None
        t = int(node.unix(now // 1000)) if node.time_known else None
        return F.encode(F.NOTIFY, self.sid, 0, [t, values])

    def _read(self, name):
        try:
            with open(self.files + 'spot.' + name) as f:
                return f.read()
        except OSError:
            return None

    def _write(self, name, text):
        with open(self.files + 'spot.' + name, 'w') as f:
            f.write(text)

    def backoff(self, delay):
        """The next reconnect delay after `delay` ms, doubled up to the longest, with jitter."""
        first, longest = self.cfg['backoff_ms']
        return min(longest, max(first, delay * 2))


def _jitter(ms):
    try:
        import random
        return ms + (ms * random.getrandbits(8) >> 10)
    except (ImportError, AttributeError):
        return ms


class CoapLink:
    """UDP socket + core.coap_binding.CoapDevice: registration, telemetry outbox, requests."""

    def __init__(self, dev, host, port):
        from ...core.coap_endpoint import Endpoint
        from ...core.coap_binding import CoapDevice
        self.dev = dev
        self.host = host
        self.port = port
        self.sock = None
        self.lost = 0            # datagrams the socket refused to send
        cfg = dev.cfg
        self.ep = Endpoint(block_szx=4, max_body=1024, max_datagram=400, max_pending=4,
                           max_dedupe=6, max_observers=4, max_exchanges=4, max_buffers=1,
                           max_events=8)
        oscore = None
        if dev.ctx is not None:
            from ...core.coap_oscore import OscoreServer
            oscore = OscoreServer([dev.ctx], require=True, max_observations=4)
        self.coap = CoapDevice(dev.node, self.ep, None, oscore,
                               None if oscore is None else dev.ctx.recipient_id,
                               lifetime=cfg['lifetime'],
                               retry=max(1, cfg['backoff_ms'][0] // 1000), max_events=4)

    def report_peer(self):
        return None

    def open(self, now):
        net = self.dev.net
        ai = net.getaddrinfo(self.host, self.port)[0]
        sock = net.socket(ai[0], net.SOCK_DGRAM)
        sock.bind(('0.0.0.0', self.dev.cfg['port']))
        sock.setblocking(False)
        self.sock = sock
        self.coap.bridge = ai[-1]
        self.coap.register_now()

    def close(self, now):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def up(self):
        return self.coap.registered

    def idle(self, now):
        c = self.coap
        return not c.outbox and not c.posted and self.ep.next_timeout(now) is None

    def telemetry(self, frame, now):
        self.coap.send_telemetry([frame])

    def poll(self, now):
        sock = self.sock
        coap = self.coap
        for _ in range(8):   # a burst, then timers
            try:
                data, addr = sock.recvfrom(401)
            except OSError:
                break
            if data:
                self.dev.activity(now)
                self._send(coap.receive(data, addr, now))
        self._send(coap.step(now))
        coap.events()
        return coap.next_timeout(now)

    def _send(self, out):
        for addr, data in out:
            try:
                self.sock.sendto(data, addr)
            except OSError:   # no route now: CoAP retransmits, registration backs off
                self.lost += 1


class MqttLink:
    """TCP (TLS) socket + core.mqtt_binding.MqttDevice, reconnecting with back-off.

    With config qos 1 telemetry waits in the client's outbox, kept in a file
    (flash_outbox) so it survives a lost link, a reboot and deep sleep."""

    def __init__(self, dev, host, port, tls):
        from ...core.mqtt_binding import MqttDevice, make_client
        self.dev = dev
        self.host = host
        self.port = port
        self.tls = tls
        cfg = dev.cfg
        outbox = None
        if cfg['qos']:
            from .flash_outbox import FileOutbox
            outbox = FileOutbox(dev.files + 'spot.outbox')
        self.client = make_client(cfg['id'], keepalive=cfg['lifetime'], username=cfg['user'],
                                  password=cfg['password'], outbox=outbox)
        self.mqtt = MqttDevice(dev.node, self.client, cfg['id'], bridge_ctx=dev.ctx,
                               qos_telemetry=cfg['qos'])
        self.sock = None
        self.due = 0             # ms of the next connection attempt
        self.delay = 0
        self.connections = 0
        self.last_error = None
        self._out = b''

    def report_peer(self):
        # sealed telemetry is for the bridge: MqttDevice seals what goes to its kid
        return None if self.dev.ctx is None else self.dev.ctx.recipient_id

    def open(self, now):
        self.due = now

    def up(self):
        from ...core.mqtt_client import CONNECTED
        return self.client.state == CONNECTED

    def idle(self, now):
        return not len(self.client.outbox) and not self._out

    def telemetry(self, frame, now):
        self.mqtt.publish_notify(frame, now)

    def close(self, now):
        if self.sock is not None:
            if self.up():
                self._send(self.mqtt.close(now))
            self._drop(None, now)

    def poll(self, now):
        c = self.client
        if self.sock is None:
            if now < self.due:
                self.mqtt.step(now)   # the node still runs: plans, fallback, queued telemetry
                d = self.mqtt.next_timeout(now)
                wait = self.due - now
                return wait if d is None or d > wait else d
            self._connect(now)
            if self.sock is None:
                return self.due - now
        try:
            while True:
                data = self.sock.read(512)
                if data is None:
                    break
                if not data:
                    self._events(c.connection_lost('closed by the broker', now), now)
                    break
                self._events(c.receive(data, now), now)
                self._send(c.data_to_send())
                if len(data) < 512:
                    break
            if self.sock is not None:
                self._send(c.step(now))
                self._events(c.take_events(), now)
                self.mqtt.step(now)
                self._send(c.data_to_send())
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                pass
            else:
                self._events(c.connection_lost('socket error %r' % (e,), now), now)
        from ...core.mqtt_client import DISCONNECTED
        if c.state == DISCONNECTED and self.sock is not None:
            self._drop(c.take_events(), now)
        if self.sock is None:
            return self.due - now
        a = c.next_timeout(now)
        b = self.mqtt.next_timeout(now)
        return a if b is None or (a is not None and a < b) else b

    def _events(self, events, now):
        from ...core.mqtt_client import EV_CONNECTED, EV_MESSAGE, EV_DISCONNECTED
        for e in events:
            if e.kind == EV_CONNECTED:
                self.delay = 0
                self.dev.activity(now)
            elif e.kind == EV_MESSAGE:
                self.dev.activity(now)
            elif e.kind == EV_DISCONNECTED:
                self.last_error = e.reason
            self.mqtt.on_event(e, now)

    def _connect(self, now):
        net = self.dev.net
        try:
            ai = net.getaddrinfo(self.host, self.port, 0, net.SOCK_STREAM)[0]
            sock = net.socket(ai[0], net.SOCK_STREAM)
            self.sock = sock
            sock.settimeout(5)     # shorter than any watchdog (RP2040's is 8 s)
            sock.connect(ai[-1])
            if self.tls:
                sock = self._wrap(sock)
                self.sock = sock
            sock.setblocking(False)
        except OSError as e:
            self.last_error = 'connect: %r' % (e,)
            self._drop(None, now)
            return
        self.connections += 1
        self._out = b''
        self._send(self.client.connect(now))

    def _wrap(self, sock):
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca = self.dev.cfg['ca']
        if ca:
            with open(ca, 'rb') as f:
                ctx.load_verify_locations(cadata=f.read())
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx.wrap_socket(sock, server_hostname=self.host)

    def _drop(self, events, now):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        if events:
            self._events(events, now)
        self.delay = self.dev.backoff(self.delay)
        self.due = now + _jitter(self.delay)
        self._out = b''

    def _send(self, data):
        if data:
            self._out = self._out + data if self._out else bytes(data)
        while self._out and self.sock is not None:
            try:
                n = self.sock.write(self._out)
            except OSError as e:
                if e.args and e.args[0] in _EAGAIN:
                    return
                self._drop(self.client.connection_lost('send failed %r' % (e,), self.dev.clock()),
                           self.dev.clock())
                return
            if not n:
                return
            self._out = self._out[n:]
