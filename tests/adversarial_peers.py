"""Helpers for the adversarial tests: a running bridge on free loopback ports and a
raw CoAP sender.

RawCoap is a test double, not a peer: it writes CoAP datagrams byte by byte
(core.coap's encoder, or any bytes at all) from its own UDP socket, on a chosen
loopback address, the way an attacker's script would, and reads what comes back.
"""
import asyncio
import contextlib
import socket
import time

from netutil import free_udp_ports
from spot.cloud_bridge import config as C
from spot.cloud_bridge.app import running_bridge
from spot.core import coap as M
from spot.core import frame as F
from spot.core.coap_binding import CF_SPOT

HP = 0x10


def announce(device, mid=1, services=((HP, 1, 0),)):
    return F.encode(F.ANNOUNCE, 0, mid, {0: device, 1: [list(s) for s in services]})


def notify(mid=0, t=None, values=None):
    return F.encode(F.NOTIFY, HP, mid, [t, values or {11: 215}])


@contextlib.asynccontextmanager
async def bridge(tmp_path, clock=time.time, **options):
    """A running bridge (real store, CoAP link, HTTP) on free loopback ports: its Parts,
    with `coap_port` set. options: config settings (e.g. reg_plain="open", psk=...);
    clock: the bridge's clock (a test's own, to step over its intervals)."""
    for attempt in range(5):
        port = free_udp_ports(2)
        settings = dict(data=str(tmp_path / "bridge"), coap="127.0.0.1:%d" % port,
                        http="127.0.0.1:0", offline_after=3600)
        settings.update(options)
        cm = running_bridge(C.load(None, **settings), clock=clock)
        try:
            parts = await cm.__aenter__()
            break
        except OSError:   # a probed port taken before the bind
            if attempt == 4:
                raise
    parts.coap_port = port
    try:
        yield parts
    finally:
        await cm.__aexit__(None, None, None)


class RawCoap(asyncio.DatagramProtocol):
    """A UDP socket on `host` that sends raw CoAP datagrams and collects the answers
    (test double)."""

    def __init__(self):
        self.replies = asyncio.Queue()
        self.transport = None
        self._mid = 100

    @classmethod
    async def open(cls, host="127.0.0.1"):
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=(host, 0),
                                                       family=socket.AF_INET)
        return proto

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.replies.put_nowait(data)

    @property
    def port(self):
        return self.transport.get_extra_info("sockname")[1]

    def close(self):
        self.transport.close()

    def send(self, data, port):
        self.transport.sendto(data, ("127.0.0.1", port))

    def post_nowait(self, frame, port, path=("s",)):
        """Send a POST of frame to the bridge's /s, not waiting for its answer (which
        comes to `replies`); its (message id, token)."""
        self._mid = mid = (self._mid + 1) & 0xFFFF
        opts = [(M.URI_PATH, p) for p in path] + [(M.CONTENT_FORMAT, CF_SPOT)]
        self.send(M.encode_message(M.CON, M.POST, mid, b"t%d" % mid, opts, frame), port)
        return mid, b"t%d" % mid

    async def post(self, frame, port, path=("s",), timeout=5.0):
        """POST frame to the bridge's /s; (CoAP code, payload) of its answer."""
        mid, token = self.post_nowait(frame, port, path)
        while True:
            msg = M.decode(await asyncio.wait_for(self.replies.get(), timeout))
            # the answer, not a request of the bridge's (its clock WRITE) that happens to
            # carry the same message id
            if msg.mid == mid and msg.token == token and msg.code >= 0x40:
                return msg.code, msg.payload


def mqtt_client(port, client_id, user=None, password=None):
    """A paho MQTT client connected to the broker on 127.0.0.1:port, its loop running
    (stop with loop_stop() and disconnect())."""
    import paho.mqtt.client as paho
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    if user is not None:
        c.username_pw_set(user, password)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def code(c):
    """CoAP code as text, e.g. 0x81 -> "4.01"."""
    return "%d.%02d" % (c >> 5, c & 31)
