"""The runtime on a board: boot from the config, serve the node over CoAP or
MQTT on asyncio (the links: device_coap.CoapLink, device_mqtt.MqttLink, each
loaded only for its transport), reconnect with back-off, feed the watchdog,
fall back to the default plan (the node does), and the sleepy cycle: wake,
send what is queued, take what waits, sleep (device_sleepy, loaded only by a
sleepy device). OSCORE keys and sequence numbers: device_oscore, loaded only
when the config has them.

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
         deep_sleep(ms) (ports.micropython.board, imported only when no board or
         clock is given)
  files  path prefix of the state files: OSCORE sequence numbers, the MQTT
         outbox, the clock across deep sleep
poll() is the whole loop body: non-blocking, it returns the ms until it has
work; run() sleeps that long but at most poll_ms, the latency of input.
"""
from ...core import frame as F
from ...core.compat import const
from ...core.node import Node
from ...core.model import ACCESS, R
from . import config as C

POLL_MS = const(50)        # longest sleep between two looks at the socket
_SAMPLE_MS = const(1000)   # bound getters of subscribed objects are read this often


class Device:
    """One node on one board. See the module docstring."""

    def __init__(self, cfg, profile, net=None, clock=None, sleep=None, board=None, files='',
                 poll_ms=POLL_MS):
        self.cfg = cfg = C.check(C.with_defaults(cfg))
        if board is None or clock is None:
            from . import board as real_board
            board = board or real_board
            clock = clock or real_board.clock()
        self.board = board
        self.clock = clock
        if sleep is None:
            import asyncio
            sleep = getattr(asyncio, 'sleep_ms', None) or (lambda ms: asyncio.sleep(ms / 1000))
        self.sleep = sleep
        if net is None:
            import socket as net
        self.net = net
        self.files = files
        # longest sleep between two looks at the socket (and at the watchdog)
        wdt = cfg['wdt_ms']
        self.poll_ms = min(poll_ms, wdt // 2) if wdt else poll_ms
        self.node = node = Node([profile], cfg['id'], comm_timeout=cfg['comm_timeout'],
                                sleepy=bool(cfg['sleepy']))
        self.sid = profile.SERVICE
        node.set_default_plan(C.plan_entries(cfg['plan'], node.services))
        self.errors = 0           # exceptions caught in the loop
        self.last_error = None
        self.state = 'boot'       # boot, net, run, sleep, slept, stopped
        self._stop = False
        self._active = 0          # ms of the last request or link-up (sleepy)
        self._up_at = None
        self._sampled = -_SAMPLE_MS
        self.ctx = None
        if cfg['oscore']:
            from . import device_oscore
            self.ctx = device_oscore.context(self)
            self._keep_seq = device_oscore.keep_seq
        scheme, host, port = C.parse_uri(cfg['bridge'])
        # each transport's link lives in its own module: a board loads only its own, and a
        # bundle (ports/cpython/deploy.py) carries only the one its transport needs
        if scheme == 'coap':
            from .device_coap import CoapLink
            self.link = CoapLink(self, host, port)
        else:
            from .device_mqtt import MqttLink
            self.link = MqttLink(self, host, port, scheme == 'mqtts')
        if board.woke_from_sleep():
            from .device_sleepy import restore_clock
            restore_clock(self)

    # ---- firmware API ------------------------------------------------------------------

    def stop(self):
        self._stop = True

    def telemetry_now(self):
        """Queue a NOTIFY of every readable value now (sleepy wakes, firmware events)."""
        node = self.node
        sid = self.sid
        values = {}
        for r in node.services[sid].rows:
            if r[ACCESS] & R:
                v = node.wire(sid, r[0])
                if v is not None:
                    values[r[0]] = v
        if values:
            now = self.clock()
            t = int(node.unix(now // 1000)) if node.time_known else None
            self.link.telemetry(F.encode(F.NOTIFY, sid, 0, [t, values]), now)

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
                from .device_sleepy import deep_sleep
                deep_sleep(self)
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
            if r[ACCESS] & R and (node.bound(self.sid, oid)
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
        if self.ctx is not None:
            self._keep_seq(self)
        if self.cfg['sleepy']:
            from .device_sleepy import check_awake
            check_awake(self, now)
        node = self.node
        if node.getters and node.subs.subs:
            self._sample(now)
            d = self._sampled + _SAMPLE_MS - now
            wait = d if wait is None or d < wait else wait
        return wait

    def _sample(self, now):
        # a bound getter changes without the node seeing it: read the subscribed ones
        # every _SAMPLE_MS so change thresholds and pmin apply to them too
        if now - self._sampled < _SAMPLE_MS:
            return
        self._sampled = now
        node = self.node
        subs = node.subs.subs
        for i in range(len(subs)):
            sid = subs[i][1]
            for oid in subs[i][3]:
                if node.bound(sid, oid) and not _sampled_before(subs, i, sid, oid):
                    node.subs.changed(sid, oid, node.wire(sid, oid))

    def activity(self, now):
        """The link saw a request: stay awake for another awake period (sleepy)."""
        self._active = now

    # ---- helpers ----------------------------------------------------------------------------

    def state_file(self, name, text=None):
        """Write text to the state file `name` (OSCORE sequence numbers, the clock
        across deep sleep); without text, its content or None."""
        path = self.files + 'spot.' + name
        try:
            with open(path, 'w' if text else 'r') as f:
                return f.write(text) if text else f.read()
        except OSError:
            if text:
                raise
            return None

    def backoff(self, delay):
        """The next reconnect delay after `delay` ms: doubled, within backoff_ms."""
        first, longest = self.cfg['backoff_ms']
        return min(longest, max(first, delay * 2))


def _sampled_before(subs, i, sid, oid):
    # an object in several subscriptions is read once per sample: changed() marks them all
    for j in range(i):
        if subs[j][1] == sid and oid in subs[j][3]:
            return True
    return False
