"""The MQTT link of the board runtime (ports.micropython.device): a TCP (TLS) socket and
core.mqtt_binding.MqttDevice, reconnecting with back-off, telemetry kept in a flash
outbox. Device loads it when the config names an mqtt:// or mqtts:// bridge."""
from ...core.mqtt_binding import MqttDevice, make_client
from ...core.mqtt_client import (CONNECTED, DISCONNECTED, EV_CONNECTED, EV_MESSAGE,
                                 EV_DISCONNECTED)

_EAGAIN = (11, 110, 115)   # EAGAIN/EWOULDBLOCK, ETIMEDOUT, EINPROGRESS as MicroPython numbers them
try:
    import errno
    _EAGAIN = tuple(set(_EAGAIN + tuple(getattr(errno, n) for n in
                                        ('EAGAIN', 'EWOULDBLOCK', 'EINPROGRESS', 'ETIMEDOUT')
                                        if hasattr(errno, n))))
except ImportError:
    pass


def _jitter(ms):
    try:
        import random
        return ms + (ms * random.getrandbits(8) >> 10)
    except (ImportError, AttributeError):
        return ms


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
        if c.state == DISCONNECTED and self.sock is not None:
            self._drop(c.take_events(), now)
        if self.sock is None:
            return self.due - now
        a = c.next_timeout(now)
        b = self.mqtt.next_timeout(now)
        return a if b is None or (a is not None and a < b) else b

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
