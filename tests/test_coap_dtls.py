"""CoAP over DTLS with pre-shared keys: libcoap clients (OpenSSL and GnuTLS builds)
against a heat-pump node served through aiocoap's tinydtls server transport
(serve_device_aiocoap), and against the bridge's DTLS port (BridgeCoapServer).

The PSK identity is the peer the node's roster knows, so roles apply. Needs the
aiocoap[tinydtls] extra (DTLSSocket, built from source) and Debian's libcoap3-bin.
Servers bind free ports on 127.0.0.1 on a loop thread stopped by the fixture.
"""
import asyncio
import shutil
import socket
import subprocess
import threading

import cbor2
import pytest
from aiocoap.defaults import dtls_missing_modules
from netutil import free_udp_port as free_port, bind_retrying

from spot.core import frame as F
from spot.core.node import Node
from spot.core.roster import Roster, OWNER, MONITOR
from spot.core.services import HEAT_PUMP as HP
from spot.ports.cpython.coap_transport import (BridgeCoapServer, dtls_credentials,
                                               serve_device_aiocoap)
from spot.profiles import heat_pump

OPENSSL = shutil.which("coap-client-openssl")
GNUTLS = shutil.which("coap-client-gnutls")
KEYS = {b"ctl-1": b"owner-psk-0123", b"mon-1": b"monitor-psk-45"}
CLIENTS = [pytest.param(OPENSSL, id="openssl"), pytest.param(GNUTLS, id="gnutls")]
DTLS_MISSING = dtls_missing_modules()
NEED_DTLS = "aiocoap's DTLS needs %s: pip install 'aiocoap[tinydtls]'"



class LoopThread:
    """An asyncio loop on a thread; run(coro) waits for its result."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=15):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn):
        async def wrap():
            return fn()
        return self.run(wrap())

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.loop.close()


@pytest.fixture
def dtls_device():
    assert not DTLS_MISSING, NEED_DTLS % DTLS_MISSING
    node = Node([heat_pump], "hp-1")
    node.set(HP, 8, 35.2)
    node.set(HP, 7, 21.5)
    roster = Roster()
    roster.pair(b"ctl-1", OWNER)
    roster.pair(b"mon-1", MONITOR)
    node.authorise = roster.authorise
    lt = LoopThread()
    port, dev = bind_retrying(lambda p: (p, lt.run(serve_device_aiocoap(
        node, "127.0.0.1", p, credentials=dtls_credentials(KEYS)))))
    lt.node = node
    lt.uri = "coaps://127.0.0.1:%d" % port
    yield lt
    lt.run(dev.close())
    lt.stop()


def coaps(client, identity, key, *args, timeout=20):
    assert client, "libcoap DTLS client missing: install Debian package libcoap3-bin"
    return subprocess.run([client, "-B", "3", "-u", identity, "-k", key] + list(args),
                          capture_output=True, timeout=timeout)


@pytest.mark.parametrize("client", CLIENTS)
def test_psk_client_reads_over_dtls(client, dtls_device, tmp_path):
    out = tmp_path / "v.cbor"
    r = coaps(client, "ctl-1", "owner-psk-0123", "-o", str(out),
              dtls_device.uri + "/heat_pump/flow_setpoint")
    assert r.returncode == 0, r.stderr
    assert cbor2.loads(out.read_bytes()) == 215


@pytest.mark.parametrize("client", CLIENTS)
def test_psk_client_writes_over_dtls(client, dtls_device, tmp_path):
    body = tmp_path / "v.cbor"
    body.write_bytes(cbor2.dumps(455))
    r = coaps(client, "ctl-1", "owner-psk-0123", "-m", "put", "-t", "60", "-f", str(body),
              dtls_device.uri + "/16/7")
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert dtls_device.call(lambda: dtls_device.node.get(HP, 7)) == 45.5


@pytest.mark.parametrize("client", CLIENTS)
def test_wrong_key_gets_no_answer_and_changes_nothing(client, dtls_device, tmp_path):
    body = tmp_path / "v.cbor"
    body.write_bytes(cbor2.dumps(455))
    r = coaps(client, "ctl-1", "not-the-key", "-m", "put", "-t", "60", "-f", str(body),
              dtls_device.uri + "/16/7")
    said = r.stdout + r.stderr     # libcoap logs the failed handshake, no response
    assert b"cannot send CoAP pdu" in said and b"2.04" not in said
    assert dtls_device.call(lambda: dtls_device.node.get(HP, 7)) == 21.5


def test_unknown_identity_gets_no_answer(dtls_device):
    r = coaps(OPENSSL, "stranger", "owner-psk-0123", dtls_device.uri + "/16/7")
    said = r.stdout + r.stderr
    assert b"cannot send CoAP pdu" in said and b"\x18\xd7" not in said


def test_psk_identity_is_the_peer_the_roster_knows(dtls_device, tmp_path):
    body = tmp_path / "v.cbor"
    body.write_bytes(cbor2.dumps(455))
    out = tmp_path / "o.cbor"
    r = coaps(GNUTLS, "mon-1", "monitor-psk-45", "-o", str(out), dtls_device.uri + "/16/8")
    assert cbor2.loads(out.read_bytes()) == 352
    r = coaps(GNUTLS, "mon-1", "monitor-psk-45", "-m", "put", "-t", "60", "-f", str(body),
              dtls_device.uri + "/16/7")
    assert b"4.01 not-authorised" in r.stderr
    assert dtls_device.call(lambda: dtls_device.node.get(HP, 7)) == 21.5


def test_bus_frame_over_dtls(dtls_device, tmp_path):
    frame = tmp_path / "w.spot"
    frame.write_bytes(F.encode(F.WRITE, HP, 42, {7: 300}))
    out = tmp_path / "r.spot"
    coaps(OPENSSL, "ctl-1", "owner-psk-0123", "-m", "post", "-t", "65000", "-f", str(frame),
          "-o", str(out), dtls_device.uri + "/s")
    assert F.decode(out.read_bytes()) == (F.RESULT, HP, 42, None)
    assert dtls_device.call(lambda: dtls_device.node.get(HP, 7)) == 30.0


def test_bridge_takes_an_announce_over_its_dtls_port(tmp_path):
    assert not DTLS_MISSING, NEED_DTLS % DTLS_MISSING
    lt = LoopThread()
    port = free_port()
    while True:   # the DTLS port is the plain one + 1: both must be free
        try:
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", port + 1))
            probe.close()
            break
        except OSError:
            port = free_port()
    bridge = BridgeCoapServer("127.0.0.1", port,
                              credentials=dtls_credentials({b"hp-1": b"device-psk-678"}))
    lt.run(bridge.start())
    try:
        frame = tmp_path / "a.spot"
        announce = F.encode(F.ANNOUNCE, 0, 3, {0: "hp-1", 1: [[16, 1, 0]]})
        frame.write_bytes(announce)
        out = tmp_path / "r.spot"
        r = coaps(GNUTLS, "hp-1", "device-psk-678", "-m", "post", "-t", "65000", "-f",
                  str(frame), "-o", str(out), "coaps://127.0.0.1:%d/s" % (port + 1))
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == F.encode(F.RESULT, 0, 3)
        assert lt.call(lambda: list(bridge.devices)) == ["hp-1"]
        assert lt.call(lambda: bridge.devices["hp-1"].scheme) == "coaps"
    finally:
        lt.run(bridge.stop())
        lt.stop()
