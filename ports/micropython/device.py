"""The runtime on a board: boot from the config, serve the node over CoAP or
MQTT on asyncio (the links: device_coap.CoapLink, device_mqtt.MqttLink, each
loaded only for its transport), reconnect with back-off, feed the watchdog,
fall back to the default plan (the node does), and the sleepy cycle: wake,
send what is queued, take what waits, sleep.

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
        # each transport's link lives in its own module: a board loads only its own, and a
        # bundle (ports/cpython/deploy.py) carries only the one its transport needs
        if scheme == 'coap':
            from .device_coap import CoapLink
            self.link = CoapLink(self, host, port)
        else:
            from .device_mqtt import MqttLink
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
        subs = node.subs.subs
        for i in range(len(subs)):
            sid = subs[i][1]
            for oid in subs[i][3]:
                if (sid, oid) in getters and not _sampled_before(subs, i, sid, oid):
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


def _sampled_before(subs, i, sid, oid):
    # an object in several subscriptions is read once per sample: changed() marks them all
    for j in range(i):
        if subs[j][1] == sid and oid in subs[j][3]:
            return True
    return False
