"""Socket loop driving a core.mqtt_client.MqttClient over TCP or TLS.

Runs on MicroPython (socket, select.poll, time.ticks_ms) and on CPython
(tests run it in a thread). It connects, feeds received bytes to the
client, hands events to on_event, sends what the client returns, runs the
client's timers and reconnects with exponential back-off (with jitter)
after any error. stop() ends run(); publish()/subscribe() may be called
from another thread (or from on_event) and are serialised with a lock.
A message's PUBACK goes out only after on_event returned; if on_event
raises, the connection is dropped and the broker delivers the message
again (QoS 1) after the reconnect.

TLS: pass ssl_context (anything with wrap_socket(sock, server_hostname=))
e.g. from make_tls_context(cafile=...) below.
"""
import errno
import socket
import select
import time

try:
    import ssl
except ImportError:  # a build without TLS
    ssl = None

try:
    import _thread
    _new_lock = _thread.allocate_lock
except (ImportError, AttributeError):
    _new_lock = None

try:
    import random
    _rand8 = lambda: random.getrandbits(8)
except (ImportError, AttributeError):
    _rand8 = lambda: 128

from ...core.mqtt_client import (DISCONNECTED, CONNECTED, EV_CONNECTED,
                                  EV_DISCONNECTED)

if hasattr(time, 'ticks_ms'):
    _ticks = time.ticks_ms
    _ticks_diff = time.ticks_diff
    _sleep_ms = time.sleep_ms
else:
    def _ticks():
        return int(time.monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b

    def _sleep_ms(ms):
        time.sleep(ms / 1000)

_EAGAIN = tuple(getattr(errno, n) for n in ('EAGAIN', 'EWOULDBLOCK', 'EINPROGRESS')
                if hasattr(errno, n))
_SSL_WANT = tuple(getattr(ssl, n) for n in ('SSLWantReadError', 'SSLWantWriteError')
                  if ssl is not None and hasattr(ssl, n))


class _NoLock:
    def acquire(self):
        return True

    def release(self):
        pass


def make_tls_context(cafile=None, cadata=None):
    """A client TLS context that verifies the server against the given CA
    (PEM file, or cadata: PEM text on CPython, DER bytes on MicroPython)."""
    if ssl is None:
        raise OSError('no ssl module in this build')
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cafile is not None:
        ctx.load_verify_locations(cafile=cafile)
    if cadata is not None:
        ctx.load_verify_locations(cadata=cadata)
    return ctx


class MqttLoop:
    """Keep one MqttClient connected to host:port until stop()."""

    def __init__(self, client, host, port=1883, ssl_context=None,
                 server_hostname=None, on_event=None, backoff_min_ms=500,
                 backoff_max_ms=60000, connect_timeout_s=10, poll_max_ms=100,
                 recv_size=1024, max_unsent=65536):
        self.client = client
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.on_event = on_event
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.connect_timeout_s = connect_timeout_s
        self.poll_max_ms = poll_max_ms
        self.recv_size = recv_size
        self._rbuf = bytearray(recv_size)   # received bytes land here, not in a fresh buffer
        self._rmv = memoryview(self._rbuf)
        self.max_unsent = max_unsent
        self.connections = 0      # TCP(+TLS) connections made
        self.errors = 0           # sessions that ended in an error
        self.last_error = None    # why the last connection (attempt) ended
        self.sock = None
        self._lock = _new_lock() if _new_lock else _NoLock()
        self._unsent = bytearray()
        self._stop = False
        self._stop_disconnect = True
        self._drop = False
        self._fail = None
        self._backoff = backoff_min_ms
        self._t_last = _ticks()
        self._now = 0

    # ---------------------------------------------------------- clock

    def now(self):
        """Non-wrapping milliseconds since the loop was made."""
        t = _ticks()
        self._now += _ticks_diff(t, self._t_last)
        self._t_last = t
        return self._now

    # ---------------------------------------------------------- control

    def stop(self, disconnect=True):
        """Ask run() to return (sending DISCONNECT first if disconnect)."""
        self._stop_disconnect = disconnect
        self._stop = True

    def drop_connection(self):
        """Close the socket without DISCONNECT at the next turn, as a dead
        link would (the broker then publishes the will); then reconnect."""
        self._drop = True

    def publish(self, topic, payload, qos=0, retain=False):
        """Thread-safe MqttClient.publish; sends at once when connected."""
        self._lock.acquire()
        try:
            pid = self.client.publish(topic, payload, qos, retain, self.now())
            self._queue(self.client.data_to_send())
        finally:
            self._lock.release()
        return pid

    def subscribe(self, filters):
        self._lock.acquire()
        try:
            pid = self.client.subscribe(filters, self.now())
            self._queue(self.client.data_to_send())
        finally:
            self._lock.release()
        return pid

    def unsubscribe(self, filters):
        self._lock.acquire()
        try:
            pid = self.client.unsubscribe(filters, self.now())
            self._queue(self.client.data_to_send())
        finally:
            self._lock.release()
        return pid

    @property
    def connected(self):
        return self.client.state == CONNECTED

    # ---------------------------------------------------------- main loop

    def run(self):
        """Connect, serve, reconnect with back-off, until stop()."""
        while not self._stop:
            reason = None
            try:
                self._open()
                self._serve()
            except OSError as e:
                reason = 'socket error: %r' % (e,)
            except Exception as e:  # never let a bug kill the device loop
                reason = 'loop error: %r' % (e,)
            if reason is None:
                reason = self._fail
            self._fail = None
            if reason is not None:
                self.last_error = reason
            self._lock.acquire()
            try:
                events = self.client.connection_lost(reason or 'connection closed', self.now())
                self._close_socket()
            finally:
                self._lock.release()
            try:
                self._dispatch(events)
            except Exception as e:
                self.last_error = 'on_event error: %r' % (e,)
            if self._stop:
                break
            self._pause(self._backoff + (self._backoff * _rand8() >> 10))
            self._backoff = min(self._backoff * 2, self.backoff_max_ms)

    def _pause(self, ms):
        while ms > 0 and not self._stop:
            step = min(ms, self.poll_max_ms)
            _sleep_ms(step)
            ms -= step

    def _open(self):
        ai = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0]
        sock = socket.socket(ai[0], ai[1], ai[2])
        self.sock = sock
        sock.settimeout(self.connect_timeout_s)
        sock.connect(ai[-1])
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_hostname=self.server_hostname)
            self.sock = sock
        sock.setblocking(False)
        self.connections += 1
        self._drop = False
        self._lock.acquire()
        try:
            self._unsent = bytearray()
            self._queue(self.client.connect(self.now()))
        finally:
            self._lock.release()

    def _close_socket(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self._unsent = bytearray()

    def _dispatch(self, events):
        for e in events:
            if e.kind == EV_CONNECTED:
                self._backoff = self.backoff_min_ms
            elif e.kind == EV_DISCONNECTED and e.error:
                self.errors += 1
                self.last_error = e.reason
            if self.on_event is not None:
                self.on_event(e)

    def _serve(self):
        client = self.client
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        want_out = False
        while True:
            if self._stop:
                if self._stop_disconnect:
                    self._lock.acquire()
                    try:
                        self._queue(client.disconnect(self.now()))
                    finally:
                        self._lock.release()
                return
            if self._drop:
                return
            self._lock.acquire()
            try:
                self._queue(client.step(self.now()))
                events = client.take_events()
                timeout = client.next_timeout(self.now())
            finally:
                self._lock.release()
            self._dispatch(events)
            if client.state == DISCONNECTED:
                return
            if timeout is None or timeout > self.poll_max_ms:
                timeout = self.poll_max_ms
            if bool(self._unsent) != want_out:
                want_out = not want_out
                poller.modify(self.sock, select.POLLIN | (select.POLLOUT if want_out else 0))
            for _, ev in poller.poll(timeout):
                if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    if not self._read():
                        return
                if ev & select.POLLOUT:
                    self._lock.acquire()
                    try:
                        self._flush()
                    finally:
                        self._lock.release()

    def _read(self):
        """Read what is there, feed the client, hand out its events, then
        send its replies. False when the peer closed or the client failed."""
        client = self.client
        while True:
            self._lock.acquire()
            try:
                try:
                    n = self._recv_into()
                    data = None if n is None else self._rmv[:n]
                except _SSL_WANT:
                    data = None
                except OSError as e:
                    if e.args and e.args[0] in _EAGAIN:
                        data = None
                    else:
                        raise
                if data is None:
                    return True
                if not data:
                    events = client.connection_lost('closed by peer', self.now())
                else:
                    events = client.receive(data, self.now())
            finally:
                self._lock.release()
            self._dispatch(events)
            if client.state == DISCONNECTED:
                return False
            self._lock.acquire()
            try:
                self._queue(client.data_to_send())
                pending = getattr(self.sock, 'pending', None)
                more = pending is not None and pending() > 0
            finally:
                self._lock.release()
            if not more and len(data) < self.recv_size:
                return True

    def _recv_into(self):
        # bytes received into self._rbuf (recv_into on CPython, readinto on MicroPython,
        # where it returns None when nothing is there); 0 when the peer closed
        sock = self.sock
        into = getattr(sock, 'recv_into', None) or sock.readinto
        return into(self._rbuf)

    def _queue(self, data):
        """Append bytes to send and try to send them now (lock held). A
        failure marks the link for dropping instead of raising into the
        caller (which may be the application's thread)."""
        if self.sock is None:
            return
        if data:
            self._unsent += data
        try:
            if len(self._unsent) > self.max_unsent:
                raise OSError('more than %d bytes unsent' % self.max_unsent)
            self._flush()
        except OSError as e:
            self._fail = 'send failed: %r' % (e,)
            self._drop = True
            self._unsent = bytearray()

    def _flush(self):
        while self._unsent:
            try:
                n = self.sock.send(self._unsent)
            except _SSL_WANT:
                return
            except OSError as e:
                if e.args and e.args[0] in _EAGAIN:
                    return
                raise
            if not n:
                return
            self._unsent[:n] = b''
