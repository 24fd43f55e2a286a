"""The CoAP link of the board runtime (ports.micropython.device): one UDP socket and
core.coap_binding.CoapDevice (registration with the bridge, telemetry outbox, requests).
Device loads it when the config names a coap:// bridge.

Receiving allocates no 401-byte buffer per datagram (on a small heap a fresh one may
find no contiguous block): datagrams land in one preallocated buffer, with
recvfrom_into() where the socket has it (CPython), else (MicroPython) with readinto()
on a socket connected to the bridge when the local port is the ephemeral one only the
bridge learns of (config "port" 0), else recvfrom(). Socket addresses are what the
port's getaddrinfo() gives: (host, port) on boards, raw sockaddr bytes on the unix port
(whose bytearrays, unhashable, are made bytes here)."""
from ...core.coap_endpoint import Endpoint
from ...core.coap_binding import CoapDevice
from ...core.compat import const

_MAX_DATAGRAM = const(400)


class CoapLink:
    """UDP socket + core.coap_binding.CoapDevice: registration, telemetry outbox, requests."""

    def __init__(self, dev, host, port):
        self.dev = dev
        self.host = host
        self.port = port
        self.sock = None
        self._poller = None      # select.poll() of the socket, None where it cannot be polled
        self._ipoll = False      # it has MicroPython's ipoll()
        self.lost = 0            # datagrams the socket refused to send
        self._buf = bytearray(_MAX_DATAGRAM + 1)   # one more byte shows oversize
        self._mv = memoryview(self._buf)
        self._into = 0           # 1: recvfrom_into(), 2: readinto() from the bridge, 0: recvfrom()
        cfg = dev.cfg
        self.ep = Endpoint(block_szx=4, max_body=1024, max_datagram=_MAX_DATAGRAM, max_pending=4,
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
        bridge = addr_key(ai[-1])
        sock = net.socket(ai[0], net.SOCK_DGRAM)
        local = self.dev.cfg['port']
        sock.bind(net.getaddrinfo('0.0.0.0', local)[0][-1])
        self._into = 0
        if hasattr(sock, 'recvfrom_into'):
            self._into = 1
        elif not local and hasattr(sock, 'readinto') and hasattr(sock, 'connect'):
            sock.connect(bridge)
            self._into = 2
        sock.setblocking(False)
        self.sock = sock
        self._poller = p = _poller(sock)
        self._ipoll = hasattr(p, 'ipoll')
        self.coap.bridge = bridge
        self.coap.register_now()

    def close(self, now):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            self._poller = None

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
            if not self._readable():
                break
            try:
                data, addr = self._receive(sock)
            except OSError:
                break
            if data:
                self.dev.activity(now)
                self._send(coap.receive(data, addr, now))
        self._send(coap.step(now))
        coap.events()
        return coap.next_timeout(now)

    def _receive(self, sock):
        # (datagram, sender): copied out of the buffer at its length, as it is kept
        # (tokens of observations, the dedupe cache)
        into = self._into
        if into == 1:
            n, addr = sock.recvfrom_into(self._buf)
        elif into == 2:
            n = sock.readinto(self._buf)
            if n is None:
                return None, None
            addr = self.coap.bridge
        else:
            data, addr = sock.recvfrom(_MAX_DATAGRAM + 1)
            return data, addr_key(addr)
        return bytes(self._mv[:n]), addr

    def _readable(self):
        # asked before recvfrom(), whose "would block" is an OSError made on every idle turn
        p = self._poller
        if p is None:
            return True           # recvfrom() tells
        if self._ipoll:           # MicroPython: allocation-free
            for _ in p.ipoll(0):
                return True
            return False
        return bool(p.poll(0))

    def _send(self, out):
        for addr, data in out:
            try:
                self.sock.sendto(data, addr)
            except OSError:   # no route now: CoAP retransmits, registration backs off
                self.lost += 1


def addr_key(addr):
    """A socket address as a hashable key: the unix port gives raw sockaddr bytearrays."""
    return bytes(addr) if type(addr) is bytearray else addr


def _poller(sock):
    """A select.poll() watching sock for input, or None where there is none for it (a
    port without select, a socket object that is no stream: recvfrom() alone tells)."""
    try:
        import select
        p = select.poll()
        p.register(sock, select.POLLIN)
        return p
    except (ImportError, AttributeError, TypeError, ValueError, OSError):
        return None
