"""UDP socket loop around a sans-I/O CoAP Endpoint; runs on MicroPython boards and CPython.

Binds one UDP socket, waits for a datagram at most until ep.next_timeout(), feeds it to
ep.receive(), runs ep.step() and sends whatever the endpoint returns.  All endpoint calls
happen on the loop's own thread: other threads hand work over with call_soon(fn), which
wakes the loop with an empty datagram to its own socket.  Time comes from
time.ticks_ms (MicroPython, wrap-safe) or time.monotonic (CPython), as integer ms.
"""
try:
    import socket
except ImportError:  # very old MicroPython ports
    import usocket as socket
try:
    import select
except ImportError:
    select = None

from .board import clock as make_clock
from .datagram import Receiver



def resolve(host, port):
    """Socket address for host:port in the form recvfrom() reports peers."""
    return socket.getaddrinfo(host, port)[0][-1]


class CoapLoop:
    """Drive `endpoint` over UDP until stop().

    on_events(list) gets client events; on_tick(endpoint, now_ms) runs every iteration.
    max_wait_ms caps one wait so on_tick and the stop flag are seen regularly.
    """

    def __init__(self, endpoint, host='0.0.0.0', port=5683, on_events=None, on_tick=None,
                 max_wait_ms=1000, clock=None):
        self.ep = endpoint
        self.clock = clock or make_clock()
        self.on_events = on_events
        self.on_tick = on_tick
        self.max_wait_ms = max_wait_ms
        info = socket.getaddrinfo(host, port)[0]
        self.sock = socket.socket(info[0], socket.SOCK_DGRAM)
        self.sock.bind(info[-1])
        self._rx = Receiver(self.sock, endpoint.max_datagram + 1)   # one more byte: oversize
        self._poll = None
        if select is not None and hasattr(select, 'poll'):
            self._poll = select.poll()
            self._poll.register(self.sock, select.POLLIN)
        self._calls = []
        self._stop = False
        self.running = False
        self.errors = 0          # exceptions raised by the endpoint or callbacks
        self.last_error = None
        self.socket_errors = 0   # e.g. ICMP port unreachable after sending to a gone peer
        self._self_addr = None
        if hasattr(self.sock, 'getsockname'):
            local = self.sock.getsockname()
            bound = local[0] if local[0] not in ('0.0.0.0', '::') else '127.0.0.1'
            self._self_addr = resolve(bound, local[1])
            self.port = local[1]
        else:
            self.port = port

    # ---- used from any thread ---------------------------------------------------------

    def call_soon(self, fn):
        """Run fn(endpoint) on the loop thread at the next iteration."""
        self._calls.append(fn)
        self.wake()

    def wake(self):
        if self._self_addr is not None:
            try:
                self.sock.sendto(b'', self._self_addr)
            except OSError:
                pass

    def stop(self):
        self._stop = True
        self.wake()

    # ---- the loop -------------------------------------------------------------------------

    def run(self):
        self.running = True
        try:
            while not self._stop:
                self.run_once()
        finally:
            self.running = False
            self.sock.close()

    def run_once(self):
        ep = self.ep
        now = self.clock()
        if self._calls:
            calls, self._calls = self._calls, []
            for fn in calls:
                self._guard(fn, ep)
        wait = ep.next_timeout(now)
        wait = self.max_wait_ms if wait is None else min(wait, self.max_wait_ms)
        if self._calls:
            wait = 0
        for _ in range(8):   # drain a burst, then run timers
            received = self._recv(wait)
            if received is None:
                break
            wait = 0
            data, addr = received
            if data:
                self._send(self._guard(ep.receive, data, addr, self.clock()))
        now = self.clock()
        self._send(self._guard(ep.step, now))
        if self.on_events is not None:
            events = ep.events()
            if events:
                self._guard(self.on_events, events)
        if self.on_tick is not None:
            self._guard(self.on_tick, ep, now)

    def _recv(self, wait_ms):
        try:
            if self._poll is not None:
                if not self._poll.poll(wait_ms):
                    return None
            else:
                self.sock.settimeout(wait_ms / 1000)
            return self._rx.recv()
        except OSError:   # timeout, or ICMP port unreachable from an earlier send
            if self._poll is not None:
                self.socket_errors += 1
            return None

    def _send(self, out):
        if not out:
            return
        for addr, data in out:
            try:
                self.sock.sendto(data, addr)
            except OSError:
                self.socket_errors += 1

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # keep serving; the error is counted and kept
            self._note(e)
            return None

    def _note(self, e):
        self.errors += 1
        self.last_error = e
