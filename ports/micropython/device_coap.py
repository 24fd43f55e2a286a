"""The CoAP link of the board runtime (ports.micropython.device): one UDP socket and
core.coap_binding.CoapDevice (registration with the bridge, telemetry outbox, requests).
Device loads it when the config names a coap:// bridge.

Datagrams are received by ports/micropython/datagram (a spare receive buffer for a
fragmented heap). Socket addresses are what the port's getaddrinfo() gives: (host,
port) on boards, raw sockaddr bytes on the unix port (whose bytearrays, unhashable,
are made bytes)."""
from ...core import coap_binding, coap_endpoint
from ...core.compat import const
from . import datagram
try:
    from os import urandom
except ImportError:        # a port without it (the WebAssembly build): the endpoint's own
    urandom = None

_MAX_DATAGRAM = const(400)


class CoapLink:
    """UDP socket + core.coap_binding.CoapDevice: registration, telemetry outbox, requests."""

    lost = 0         # datagrams the socket refused to send (a class attribute until then)

    def __init__(self, device, host, port):
        self.device = device
        self.host = host
        self.port = port
        self.sock = None
        self._poll = None    # ipoll (MicroPython's: allocation-free) or poll of its poller
        self._rx = None      # datagram.Receiver of the socket
        cfg = device.cfg
        self.ep = coap_endpoint.Endpoint(
            rand=_rand if urandom else None, block_szx=4, max_body=1024,
            max_datagram=_MAX_DATAGRAM, max_pending=4, max_dedupe=6, max_observers=4,
            max_exchanges=4, max_buffers=1, max_events=8)
        oscore = None
        if device.ctx is not None:
            from ...core import coap_oscore
            oscore = coap_oscore.OscoreServer([device.ctx], require=True, max_observations=4)
        self.coap = coap_binding.CoapDevice(
            device.node, self.ep, None, oscore,
            None if oscore is None else device.ctx.recipient_id,
            lifetime=cfg['lifetime'], retry=max(1, cfg['backoff_ms'][0] // 1000),
            max_events=4)

    def report_peer(self):
        return None

    def open(self, now):
        net = self.device.net
        ai = net.getaddrinfo(self.host, self.port)[0]
        bridge = datagram.addr_key(ai[-1])
        sock = net.socket(ai[0], net.SOCK_DGRAM)
        sock.bind(net.getaddrinfo('0.0.0.0', self.device.cfg['port'])[0][-1])
        sock.setblocking(False)
        # one more byte shows oversize; the block the Device took for it at boot
        self._rx = rx = datagram.Receiver(sock, _MAX_DATAGRAM + 1,
                                          self.device.take_rx(_MAX_DATAGRAM + 1))
        rx.known = bridge
        self.sock = sock
        try:    # none where the port has no select, or the socket is no stream to it
            import select
            p = select.poll()
            p.register(sock, select.POLLIN)
            self._poll = p.ipoll if hasattr(p, 'ipoll') else p.poll
        except (ImportError, AttributeError, TypeError, ValueError, OSError):
            self._poll = None    # recvfrom() alone tells
        self.coap.bridge = bridge
        self.coap.register_now()

    def close(self, now):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            self._poll = self._rx = None

    def up(self):
        return self.coap.registered

    def idle(self, now):
        c = self.coap
        return not c.outbox and not c.posted and self.ep.next_timeout(now) is None

    def telemetry(self, frame, now):
        self.coap.send_telemetry([frame])

    def poll(self, now):
        coap = self.coap
        poll = self._poll
        for _ in range(8):   # a burst, then timers
            # asked before recvfrom(), whose "would block" is an OSError made on every
            # idle turn (no poller: recvfrom() tells)
            if poll is not None:
                for ready in poll(0):     # MicroPython's ipoll() allocates nothing
                    break                 # a datagram waits
                else:
                    break                 # none: on to the timers
            try:
                data, addr = self._rx.recv()
            except OSError:
                break
            if data:
                self.device.activity(now)
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


def _rand():
    # 30 random bits as a small int: the endpoint's 32-bit default is a big int (a heap
    # object) on a 32-bit board, two per request (its token and its retransmission timer)
    b = urandom(4)
    return (b[0] & 0x3F) << 24 | b[1] << 16 | b[2] << 8 | b[3]
