"""The runtime on a board: boot from the config, serve the node over CoAP or
MQTT on asyncio (the links: device_coap.CoapLink, device_mqtt.MqttLink, each
loaded only for its transport), reconnect with back-off, feed the watchdog,
fall back to the default plan (the node does), and the sleepy cycle: wake,
send what is queued, take what waits, sleep (device_sleepy, loaded only by a
sleepy device; its telemetry at each wake, device_telemetry, loaded by it and after
a reset). OSCORE keys and sequence numbers: device_oscore, loaded only
when the config has them.

    import asyncio
    from spot.ports.micropython import device, hw
    from spot.profiles import heat_pump
    dev = device.Device('spot.json', heat_pump)
    hw.bind(dev.node, 'sg_ready', set=hw.SgReady(relay1, relay2))
    asyncio.run(dev.run())

The config (the path of its JSON file, or a dict of its fields) is checked
when the device is made; the config module is then forgotten (sys.modules), so its
checks and defaults take no heap after boot unless the firmware holds the module.
dev.cfg keeps only the fields read after boot (see the end of Device.__init__).

Everything that touches the world is a provider, so tests run this very code
under MicroPython with fakes:
  net    socket-module-like: getaddrinfo(), socket(), AF_INET, SOCK_DGRAM,
         SOCK_STREAM; TCP sockets are used as MicroPython streams (read/write
         return None when they would block), UDP ones with recvfrom/sendto
  clock  () -> monotonic int ms (board.clock())
  sleep  async (ms) (asyncio.sleep_ms)
  board  net_up(cfg, sleep) async, link_ok(), watchdog(ms) (one to feed(), or None),
         woke_from_sleep(), deep_sleep(ms), and where it has them unix_time(),
         reset(), watchdog_reset() (ports.micropython.board, imported only when no
         board or clock is given)
  files  path prefix of the state files: OSCORE sequence numbers, the MQTT
         outbox, the clock across deep sleep, the diagnostics
Out of memory: a MemoryError in a turn is counted (diagnostics mem_errors); mem_reset
of them within a minute reset the board (board.reset(): machine.reset(), or on the
unix port exit status 75), after counting the reset in the state file "diag". The node
serves the diagnostics service (profiles/diagnostics) and, after such a reset or a
watchdog's, sends it to the bridge once the link is up.
poll() is the whole loop body: non-blocking, it returns the ms until it has
work; run() sleeps that long but at most poll_ms, the latency of input.
What the node did for the network (a WRITE, an INVOKE, a plan or fallback
change, a signal: core.node's EV_* tuples) goes to `dev.on_event(ev)` if the
firmware set one, and is then forgotten: the node's list never grows.
"""
from ...core.compat import const
from ...core.node import Node
from ...profiles import diagnostics

_POLL_MS = const(50)        # longest sleep between two looks at the socket
_SAMPLE_MS = const(1000)   # bound getters of subscribed objects are read this often
_MEM_WINDOW_MS = const(60000)   # cfg mem_reset MemoryErrors within this reset the board
# core.model's and core.services' numbers, copied: no global slot holds them on a board
_ACCESS = const(4)
_R = const(1)
_DIAGNOSTICS = const(9)
# the links' receive blocks (device_coap: _MAX_DATAGRAM + 1, device_mqtt: _READ), taken
# first at boot: a heap fragmented by what is built after may have kilobytes free and
# no block this long (tests/test_mp_datagram.py checks the sizes)
_RX_COAP = const(401)
_RX_MQTT = const(512)

_SEQ_LOW = const(16)   # device_oscore.SEQ_LOW, copied: fewer sender numbers left: a new block


class Device:
    """One node on one board. See the module docstring."""

    def __init__(self, cfg, profile, net=None, clock=None, sleep=None, board=None, files='',
                 poll_ms=_POLL_MS):
        from . import config
        self.cfg = cfg = config.load(cfg)
        scheme, host, port = config.parse_uri(cfg['bridge'])
        self._rx = bytearray(_RX_COAP if scheme == 'coap' else _RX_MQTT)
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
        self.node = node = Node([profile, diagnostics], cfg['id'],
                                comm_timeout=cfg['comm_timeout'], sleepy=bool(cfg['sleepy']))
        self.sid = profile.SERVICE
        node.set_default_plan(config.plan_entries(cfg['plan'], node.services))
        # forget the config module, used only at boot: once nothing else holds it, its
        # code is freed before the links are made (a board loading .mpy files holds a
        # module's bytecode on its heap)
        import sys
        sys.modules.pop(config.__name__, None)
        from .. import micropython as package     # this package (not the firmware's module)
        if getattr(package, 'config', None) is config:
            del package.config
        del config
        self.on_event = None      # firmware's hook: on_event((kind, sid, oid, arg)) per node event
        self.errors = 0           # exceptions caught in the loop
        self.last_error = None
        self.mem_errors = 0       # MemoryErrors caught since boot
        self._mem = [0, 0]        # MemoryErrors in the current window, when it began
        # the diagnostics at boot: resets counted in the state file "diag" ("resets
        # cause"), the cause consumed once read; a getter for the memory errors
        resets = cause = 0
        try:
            resets, cause = [int(x) for x in self.state_file('diag').split()]
        except (AttributeError, ValueError):   # none yet, or not two numbers
            pass
        if cause:
            self.state_file('diag', '%d %d' % (resets, 0))
        else:
            check = getattr(board, 'watchdog_reset', None)
            if check is not None and check():
                cause = diagnostics.BOOT_WATCHDOG
        node.set(_DIAGNOSTICS, 1, resets)
        node.set(_DIAGNOSTICS, 2, cause)
        node.bind(_DIAGNOSTICS, 3, lambda: self.mem_errors, None, True)
        self.state = 'boot'       # boot, net, run, sleep, slept, stopped
        self._stop = False
        self._active = 0          # ms of the last request or link-up (sleepy)
        self._up_at = None
        self._sampled = -_SAMPLE_MS
        self.ctx = None
        if cfg['oscore']:
            from . import device_oscore
            self.ctx = device_oscore.context(self)
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
        # of the config, only what runs after boot reads stays (the loop, board.net_up(),
        # the links' open(), the sleepy cycle; id and bridge to name the device): the
        # plan, the keys and the links' settings are let go with the full dict
        self.cfg = {k: cfg[k] for k in ('id', 'bridge', 'wifi', 'eth', 'ca', 'port',
                                         'telemetry', 'sleepy', 'awake_s', 'sleep_s',
                                         'wdt_ms', 'backoff_ms', 'mem_reset')}

    # ---- firmware API ------------------------------------------------------------------

    def stop(self):
        self._stop = True

    def set_time(self, unix_s):
        """Set the node's clock (Unix seconds now): plans and timestamps need it."""
        self.node.set_time(unix_s, self.clock() // 1000)

    # ---- the loop ------------------------------------------------------------------------

    async def run(self):
        """Bring the network up and serve until stop() or deep sleep; returns the final state."""
        cfg = self.cfg
        wdt = self.board.watchdog(cfg['wdt_ms'])    # None: no watchdog
        self.state = 'net'
        delay = cfg['backoff_ms'][0]
        while not self._stop:
            if wdt is not None:
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
            if wdt is not None:
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
        node = self.node
        unix_time = getattr(self.board, 'unix_time', None)
        if unix_time is not None and not node.time_known:
            t = unix_time()
            if t is not None:
                self.set_time(t)
        self.link.open(now)
        t = self.cfg['telemetry']
        attrs = {}
        for r in node.services[self.sid].rows:
            oid = r[0]
            if r[_ACCESS] & _R and (node.bound(self.sid, oid)
                                  or node.values[self.sid].get(oid) is not None):
                attrs[oid] = {0: t, 1: t}
        if t and attrs:
            node.report(self.sid, attrs, now // 1000, self.link.report_peer())
        sleepy = self.cfg['sleepy']
        reset = node.wire(_DIAGNOSTICS, 2)   # the last boot was a reset of ours or the watchdog's
        if sleepy or reset:
            from .device_telemetry import telemetry_now
            if sleepy:
                telemetry_now(self)
            if reset:
                telemetry_now(self, _DIAGNOSTICS)

    def poll(self):
        """One turn: move bytes, step the node and the protocol; ms until the next turn."""
        now = self.clock()
        try:
            wait = self.link.poll(now)
        except MemoryError as e:
            self._out_of_memory(e, now)
            wait = _POLL_MS
        except Exception as e:   # keep serving: the watchdog covers a stuck loop
            self.errors += 1
            self.last_error = e
            wait = _POLL_MS
        events = self.node.events
        if events:
            # the node's events to the firmware, then out of the list (in place: no new list)
            hook = self.on_event
            try:
                if hook is not None:
                    for ev in events:
                        hook(ev)
            except Exception as e:   # the firmware's fault: counted, the events still go
                self.errors += 1
                self.last_error = e
            events.clear()
        ctx = self.ctx
        if ctx is not None and ctx.sender_seq_remaining() < _SEQ_LOW:
            # the next block of sender sequence numbers reserved: device_oscore asked only
            # then (an import in every turn allocates on MicroPython)
            from .device_oscore import keep_seq
            keep_seq(self)
        if self.cfg['sleepy']:
            from .device_sleepy import check_awake
            check_awake(self, now)
        node = self.node
        subs = node.subs.subs
        if node.getters and subs:
            # a bound getter changes without the node seeing it: read the subscribed ones
            # every _SAMPLE_MS so change thresholds and pmin apply to them too
            if now - self._sampled >= _SAMPLE_MS:
                self._sampled = now
                for i in range(len(subs)):
                    sid = subs[i][1]
                    for oid in subs[i][3]:
                        if not node.bound(sid, oid):
                            continue
                        # an object in several subscriptions is read once: changed() marks
                        # them all
                        for j in range(i):
                            if subs[j][1] == sid and oid in subs[j][3]:
                                break
                        else:
                            node.subs.changed(sid, oid, node.wire(sid, oid))
            d = self._sampled + _SAMPLE_MS - now
            wait = d if wait is None or d < wait else wait
        return wait

    def _out_of_memory(self, e, now):
        # count it; cfg mem_reset of them within _MEM_WINDOW_MS: count a reset, reset
        self.errors += 1
        self.last_error = e
        self.mem_errors += 1
        m = self._mem
        if now - m[1] > _MEM_WINDOW_MS:
            m[0] = 0
            m[1] = now
        m[0] += 1
        limit = self.cfg['mem_reset']
        reset = getattr(self.board, 'reset', None)
        if limit and m[0] >= limit and reset is not None:
            try:
                self.state_file('diag', '%d %d' % (self.node.wire(_DIAGNOSTICS, 1) + 1,
                                                   diagnostics.BOOT_OUT_OF_MEMORY))
            except (MemoryError, OSError):
                pass   # reset anyway: a device that cannot allocate serves nothing
            reset()

    def take_rx(self, size):
        """The link's receive buffer: the block taken at boot if it has this size."""
        buf = self._rx
        self._rx = None
        return buf if buf is not None and len(buf) == size else bytearray(size)

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

    def backoff(self, ms):
        """The next reconnect delay after a delay of `ms`: doubled, within backoff_ms."""
        first, longest = self.cfg['backoff_ms']
        return min(longest, max(first, ms * 2))

