"""The MQTT link of the board runtime (ports.micropython.device): a TCP (TLS) socket and
core.mqtt_binding.MqttDevice, reconnecting with back-off, telemetry kept in a flash
outbox. Device loads it when the config names an mqtt:// or mqtts:// bridge.

Received bytes land in one preallocated buffer (readinto(); recv_into() on CPython)
rather than a fresh 513-byte one per read, which a small heap may have no
contiguous block for."""
from ...core.compat import const
from ...core.mqtt_binding import MqttDevice, make_client
from ...core.mqtt_client import (CONNECTED, DISCONNECTED, EV_CONNECTED, EV_MESSAGE,
                                 EV_DISCONNECTED)

_READ = const(512)         # bytes taken from the socket at once
_EAGAIN = (11, 110, 115)   # EAGAIN/EWOULDBLOCK, ETIMEDOUT, EINPROGRESS as MicroPython numbers them
try:
    import errno
    _EAGAIN = tuple(set(_EAGAIN + tuple(getattr(errno, n) for n in
                                        ('EAGAIN', 'EWOULDBLOCK', 'EINPROGRESS', 'ETIMEDOUT')
                                        if hasattr(errno, n))))
except ImportError:
    pass


class MqttLink:
    """TCP (TLS) socket + core.mqtt_binding.MqttDevice, reconnecting with back-off.

    With config qos 1 telemetry waits in the client's outbox, kept in a file
    (flash_outbox) so it survives a lost link, a reboot and deep sleep."""

    def __init__(self, dev, host, port, tls):
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
        self.client.puback_events = False   # nothing here waits for one
        self.mqtt = MqttDevice(dev.node, self.client, cfg['id'], bridge_ctx=dev.ctx,
                               qos_telemetry=cfg['qos'])
        self.sock = None
        self.due = 0             # ms of the next connection attempt
        self.delay = 0
        self.last_error = None
        self._out = b''
        self._buf = memoryview(dev.take_rx(_READ))   # the block the Device took at boot
        self._into = None        # the socket's readinto (recv_into), bound at connect

    def report_peer(self):
        # sealed telemetry is for the bridge: MqttDevice seals what goes to its kid
        return None if self.dev.ctx is None else self.dev.ctx.recipient_id

    def open(self, now):
        self.due = now

    def up(self):
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
                n = self._read()
                if n is None:
                    break
                if not n:
                    self._events(c.connection_lost('closed by the broker', now), now)
                    break
                c.take_in(self._buf[:n], now)   # the client copies it
                if c.has_events():
                    self._events(c.take_events(), now)
                self._send(c.data_to_send())
                if n < _READ:
                    break
            if self.sock is not None:
                self._send(c.step(now))
                if c.has_events():
                    self._events(c.take_events(), now)
                self.mqtt.step(now)
                self._send(c.data_to_send())
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                pass
            else:
                self._events(c.connection_lost('socket error %r' % (e,), now), now)
        if c.state == DISCONNECTED and self.sock is not None:
            self._drop(c.take_events(), now)
        if self.sock is None:
            return self.due - now
        a = c.next_timeout(now)
        b = self.mqtt.next_timeout(now)
        return a if b is None or (a is not None and a < b) else b

    def _read(self):
        # bytes read into self._buf: None when there are none now, 0 when closed
        into = self._into
        if into is not None:
            return into(self._buf)
        data = self.sock.read(_READ)    # a stream without either (a test's fake)
        if data:
            self._buf[:len(data)] = data
        return None if data is None else len(data)

    def _events(self, events, now):
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
                from . import tls
                sock = tls.wrap_socket(sock, self.host, self.dev.cfg['ca'])
                self.sock = sock
            sock.setblocking(False)
            self._into = getattr(sock, 'readinto', None) or getattr(sock, 'recv_into', None)
        except OSError as e:
            self.last_error = 'connect: %r' % (e,)
            self._drop(None, now)
            return
        self._out = b''
        self._send(self.client.connect(now))

    def _drop(self, events, now):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
            self._into = None
        if events:
            self._events(events, now)
        self.delay = d = self.dev.backoff(self.delay)
        try:   # up to a quarter more, at random
            import random
            d += d * random.getrandbits(8) >> 10
        except (ImportError, AttributeError):
            pass
        self.due = now + d
        self._out = b''

    def _send(self, data):
        # data is the client's to give away (data_to_send() starts a new buffer): kept
        # as it is until written, copied only behind bytes not yet written
        if data:
            self._out = self._out + data if self._out else data
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
            self._out = self._out[n:] if n < len(self._out) else b''
