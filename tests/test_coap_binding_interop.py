"""SPOT's CoAP mapping (spec 9.1) against real peers on 127.0.0.1.

- libcoap's coap-client-notls against a device run by the board loop
  (ports/micropython/coap_loop.CoapLoop driving core.coap_binding.CoapDevice).
- aiocoap as client, plain and with OSCORE (aiocoap's own OSCORE contexts from the
  same secrets and ids), against the asyncio device server (serve_device).
- aiocoap as the bridge (BridgeCoapServer), and the bridge's own coap:// server
  (cloud_bridge.coap_fast.FastBusServer) in the same tests: the device registers with its ANNOUNCE,
  the bridge writes and subscribes over /s.
Every server binds a free port and stops at the end of its test; every wait has a
timeout.
"""
import asyncio
import contextlib
import json
import shutil
import subprocess
import threading
import time

import cbor2
import pytest

import aiocoap
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore import FilesystemSecurityContext, NotAProtectedMessage
from aiocoap.transports.oscore import OSCOREAddress
from loop_call import call_on
from netutil import free_udp_port as free_port

from spot.core import frame as F
from spot.core.coap_binding import CoapDevice, CF_SPOT
from spot.core.coap_endpoint import Endpoint
from spot.core.coap_oscore import OscoreServer
from spot.core.errors import NOT_AUTHORISED
from spot.core.node import Node
from spot.core.oscore import SecurityContext
from spot.core.roster import Roster, OWNER, MONITOR
from spot.core.services import HEAT_PUMP as HP
from spot.cloud_bridge.coap_fast import FastBusServer
from spot.ports.cpython.coap_transport import BridgeCoapServer, serve_device
from spot.ports.micropython.coap_loop import CoapLoop
from spot.profiles import heat_pump

COAP_CLIENT = shutil.which("coap-client-notls")
FLOW_SETPOINT = 7
FLOW_TEMP = 8
DEVICE_ID = b"\xd0"
OWNER_KID = b"\x01"
MONITOR_KID = b"\x02"
SECRETS = {OWNER_KID: b"owner-secret-016", MONITOR_KID: b"monitor-secret16"}


def heat_pump_node():
    node = Node([heat_pump], "hp-1")
    node.set(HP, FLOW_TEMP, 35.2)
    node.set(HP, FLOW_SETPOINT, 21.5)
    return node



def run_async(coro, timeout=40):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ---- libcoap against the board loop ---------------------------------------------------------

class Board:
    """A CoapDevice inside CoapLoop on its own thread, as on a board."""

    def __init__(self):
        self.node = heat_pump_node()
        self.device = CoapDevice(self.node, Endpoint())
        self.loop = CoapLoop(self.device, "127.0.0.1", 0, max_wait_ms=50)
        self.uri = "coap://127.0.0.1:%d" % self.loop.port
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def call(self, fn, timeout=5):
        """Run fn(device) on the loop thread; its result."""
        return call_on(self.loop, fn, timeout)

    def stop(self):
        self.loop.stop()
        self.thread.join(5)
        assert not self.thread.is_alive()
        assert self.loop.errors == 0, repr(self.loop.last_error)


@pytest.fixture
def board():
    b = Board()
    yield b
    b.stop()


def coap_client(*args, timeout=20):
    assert COAP_CLIENT, "coap-client-notls missing: install Debian package libcoap3-bin"
    return subprocess.run([COAP_CLIENT, "-B", "5"] + list(args), capture_output=True,
                          timeout=timeout)


def test_libcoap_discovers_the_bus_and_every_object(board):
    out = coap_client(board.uri + "/.well-known/core")
    links = out.stdout.rstrip(b"\n").decode().split(",")
    assert links[0] == '</s>;rt="spot.bus";ct=65000'
    assert '</heat_pump/flow_setpoint>;rt="spot.analog";ct=60;obs' in links
    assert '</heat_pump/pause>;rt="spot.analog";ct=60' in links
    assert len(links) == 1 + sum(len(s.rows) for s in board.node.services.values())


def test_libcoap_get_reads_the_cbor_wire_value(board, tmp_path):
    out = tmp_path / "value.cbor"
    coap_client("-o", str(out), board.uri + "/heat_pump/flow_setpoint")
    assert cbor2.loads(out.read_bytes()) == 215


def test_libcoap_get_by_numeric_ids(board, tmp_path):
    out = tmp_path / "value.cbor"
    coap_client("-o", str(out), board.uri + "/16/8")
    assert cbor2.loads(out.read_bytes()) == 352


def test_libcoap_put_writes_the_setpoint(board, tmp_path):
    body = tmp_path / "v.cbor"
    body.write_bytes(cbor2.dumps(300))
    r = coap_client("-m", "put", "-t", "60", "-f", str(body),
                    board.uri + "/heat_pump/flow_setpoint")
    assert r.stderr == b""
    assert board.call(lambda d: d.node.get(HP, FLOW_SETPOINT)) == 30.0


def test_libcoap_put_out_of_range_is_4_00_with_diagnostic(board, tmp_path):
    body = tmp_path / "v.cbor"
    body.write_bytes(cbor2.dumps(900))
    r = coap_client("-m", "put", "-t", "60", "-f", str(body),
                    board.uri + "/heat_pump/flow_setpoint")
    assert b"4.00 out-of-range flow_setpoint" in r.stderr
    assert board.call(lambda d: d.node.get(HP, FLOW_SETPOINT)) == 21.5


def test_libcoap_put_to_read_only_is_4_05(board, tmp_path):
    body = tmp_path / "v.cbor"
    body.write_bytes(cbor2.dumps(300))
    r = coap_client("-m", "put", "-t", "60", "-f", str(body), board.uri + "/heat_pump/flow_temp")
    assert b"4.05 read-only flow_temp" in r.stderr
    assert board.call(lambda d: d.node.get(HP, FLOW_TEMP)) == 35.2


def test_libcoap_observe_sees_notifications_as_the_value_changes(board):
    assert COAP_CLIENT, "coap-client-notls missing: install Debian package libcoap3-bin"
    proc = subprocess.Popen([COAP_CLIENT, "-B", "5", "-s", "3",
                             board.uri + "/heat_pump/flow_temp"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while not board.call(lambda d: d.node.subs.subs):
            assert time.monotonic() < deadline, "libcoap never registered"
            time.sleep(0.05)
        for temp in (36.0, 36.5, 37.0):
            board.call(lambda d, t=temp: d.node.set(HP, FLOW_TEMP, t))
            time.sleep(0.3)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait(5)
    values = [v for v in _cbor_sequence(out.rstrip(b"\n"))]
    assert values == [352, 360, 365, 370], (out, err)
    # coap-client ends with a GET carrying Observe 1: the subscription is gone
    assert board.call(lambda d: d.node.subs.subs) == []


def _cbor_sequence(data):
    import io
    f = io.BytesIO(data)
    while f.tell() < len(data):
        yield cbor2.load(f)


def test_libcoap_posts_a_frame_to_the_bus(board, tmp_path):
    frame = tmp_path / "read.spot"
    frame.write_bytes(F.encode(F.READ, HP, 1, [7, 8]))
    out = tmp_path / "reply.spot"
    coap_client("-m", "post", "-t", str(CF_SPOT), "-f", str(frame), "-o", str(out),
                board.uri + "/s")
    assert F.decode(out.read_bytes()) == (F.RESULT, HP, 1, {7: 215, 8: 352})


# ---- aiocoap as client ------------------------------------------------------------------------

async def aio_request(ctx, code, uri, payload=b"", **kw):
    msg = aiocoap.Message(code=code, uri=uri, payload=payload, **kw)
    return await asyncio.wait_for(ctx.request(msg).response, 10)


async def next_note(it, timeout=10):
    return await asyncio.wait_for(it.__anext__(), timeout)


async def wait_for(cond, timeout=5):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


def test_aiocoap_plain_get_put_and_observe():
    async def main():
        node = heat_pump_node()
        dev = await serve_device(node)
        uri = "coap://127.0.0.1:%d" % dev.port
        ctx = await aiocoap.Context.create_client_context()
        try:
            r = await aio_request(ctx, aiocoap.GET, uri + "/heat_pump/flow_temp")
            assert (r.code, int(r.opt.content_format), cbor2.loads(r.payload)) == (
                aiocoap.CONTENT, 60, 352)
            r = await aio_request(ctx, aiocoap.PUT, uri + "/16/7", cbor2.dumps(455),
                                  content_format=60)
            assert r.code == aiocoap.CHANGED and node.get(HP, FLOW_SETPOINT) == 45.5
            req = ctx.request(aiocoap.Message(
                code=aiocoap.GET, uri=uri + "/heat_pump/flow_temp?st=5", observe=0))
            first = await asyncio.wait_for(req.response, 10)
            assert first.opt.observe is not None and cbor2.loads(first.payload) == 352
            notes = req.observation.__aiter__()
            node.set(HP, FLOW_TEMP, 35.4)        # below st: no notification
            dev.poke()
            node.set(HP, FLOW_TEMP, 36.0)
            dev.poke()
            assert cbor2.loads((await next_note(notes)).payload) == 360
            req.observation.cancel()
        finally:
            await ctx.shutdown()
            dev.close()
        assert dev.errors == 0, dev.last_error
    run_async(main())


def oscore_device():
    node = heat_pump_node()
    roster = Roster()
    roster.pair(OWNER_KID, OWNER)
    roster.pair(MONITOR_KID, MONITOR)
    node.authorise = roster.authorise
    contexts = [SecurityContext(SECRETS[k], DEVICE_ID, k) for k in sorted(SECRETS)]
    return node, OscoreServer(contexts, require=True)


def aiocoap_context_dir(path, secret, sender_id, recipient_id):
    path.mkdir()
    (path / "settings.json").write_text(json.dumps({
        "secret_hex": secret.hex(), "sender-id_hex": sender_id.hex(),
        "recipient-id_hex": recipient_id.hex()}))
    return FilesystemSecurityContext(str(path))


async def oscore_client(uri, tmp_path, kid, secret=None):
    ctx = await aiocoap.Context.create_client_context()
    ctx.client_credentials[uri + "/*"] = aiocoap_context_dir(
        tmp_path / ("ctx-" + kid.hex()), secret or SECRETS[kid], kid, DEVICE_ID)
    return ctx


@contextlib.asynccontextmanager
async def oscore_device_and_client(tmp_path, kid=OWNER_KID, secret=None):
    """A served heat pump requiring OSCORE and an aiocoap client speaking OSCORE as
    `kid` (None: in the clear): (node, device server, its URI, client); both stop after."""
    node, oscore = oscore_device()
    dev = await serve_device(node, oscore=oscore)
    uri = "coap://127.0.0.1:%d" % dev.port
    if kid is None:
        ctx = await aiocoap.Context.create_client_context()
    else:
        ctx = await oscore_client(uri, tmp_path, kid, secret)
    try:
        yield node, dev, uri, ctx
    finally:
        await ctx.shutdown()
        dev.close()


class Recorder:
    """Keeps the datagrams a DeviceServer receives (to replay one)."""

    def __init__(self, server):
        self.datagrams = []
        inner = server.datagram_received

        def record(data, addr):
            self.datagrams.append(data)
            inner(data, addr)
        server.datagram_received = record


async def raw_exchange(port, datagram, timeout=5):
    """Send one datagram from a fresh socket; the first datagram that comes back."""
    loop = asyncio.get_running_loop()
    got = loop.create_future()

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not got.done():
                got.set_result(data)
    transport, _ = await loop.create_datagram_endpoint(P, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(datagram)
        return await asyncio.wait_for(got, timeout)
    finally:
        transport.close()


def test_aiocoap_oscore_get_put_and_observe(tmp_path):
    async def main():
        async with oscore_device_and_client(tmp_path) as (node, dev, uri, ctx):
            r = await aio_request(ctx, aiocoap.GET, uri + "/heat_pump/flow_temp")
            assert r.code == aiocoap.CONTENT and cbor2.loads(r.payload) == 352
            r = await aio_request(ctx, aiocoap.PUT, uri + "/heat_pump/flow_setpoint",
                                  cbor2.dumps(300))
            assert r.code == aiocoap.CHANGED and node.get(HP, FLOW_SETPOINT) == 30.0
            req = ctx.request(aiocoap.Message(code=aiocoap.GET, observe=0,
                                              uri=uri + "/heat_pump/flow_temp"))
            first = await asyncio.wait_for(req.response, 10)
            assert cbor2.loads(first.payload) == 352
            assert node.subs.subs[0][0] == OWNER_KID     # the kid is the peer
            notes = req.observation.__aiter__()
            seen = []
            for temp in (36.0, 37.0):
                node.set(HP, FLOW_TEMP, temp)
                dev.poke()
                seen.append(cbor2.loads((await next_note(notes)).payload))
            assert seen == [360, 370]
            req.observation.cancel()
        assert dev.errors == 0, dev.last_error
    run_async(main())


def test_plain_request_to_an_oscore_device_is_4_01():
    async def main():
        async with oscore_device_and_client(None, kid=None) as (node, dev, uri, ctx):
            r = await aio_request(ctx, aiocoap.PUT, uri + "/16/7", cbor2.dumps(300))
            assert (r.code, r.payload) == (aiocoap.UNAUTHORIZED, b"OSCORE required")
            assert node.get(HP, FLOW_SETPOINT) == 21.5
    run_async(main())


def test_replayed_oscore_datagram_is_4_01_and_changes_nothing(tmp_path):
    async def main():
        async with oscore_device_and_client(tmp_path) as (node, dev, uri, ctx):
            rec = Recorder(dev)
            await aio_request(ctx, aiocoap.PUT, uri + "/16/7", cbor2.dumps(300))
            captured = rec.datagrams[-1]
            await aio_request(ctx, aiocoap.PUT, uri + "/16/7", cbor2.dumps(400))
            reply = aiocoap.Message.decode(await raw_exchange(dev.port, captured))
            assert (reply.code, reply.payload) == (aiocoap.UNAUTHORIZED, b"Replay detected")
            assert node.get(HP, FLOW_SETPOINT) == 40.0
    run_async(main())


def test_unpaired_kid_is_4_01(tmp_path):
    async def main():
        async with oscore_device_and_client(tmp_path, b"\x07", b"stranger-secret!") \
                as (node, dev, uri, ctx):
            with pytest.raises(NotAProtectedMessage) as e:
                await aio_request(ctx, aiocoap.PUT, uri + "/16/7", cbor2.dumps(300))
            assert e.value.plain_message.code == aiocoap.UNAUTHORIZED
            assert e.value.plain_message.payload == b"Security context not found"
            assert node.get(HP, FLOW_SETPOINT) == 21.5
    run_async(main())


def test_monitor_role_put_is_not_authorised_4_01(tmp_path):
    async def main():
        async with oscore_device_and_client(tmp_path, MONITOR_KID) as (node, dev, uri, ctx):
            r = await aio_request(ctx, aiocoap.GET, uri + "/16/7")
            assert cbor2.loads(r.payload) == 215
            r = await aio_request(ctx, aiocoap.PUT, uri + "/16/7", cbor2.dumps(300))
            assert (r.code, r.payload) == (aiocoap.UNAUTHORIZED, b"not-authorised")
            assert node.get(HP, FLOW_SETPOINT) == 21.5
    run_async(main())


# ---- aiocoap as the bridge ----------------------------------------------------------------------

@pytest.mark.parametrize("Server", [BridgeCoapServer, FastBusServer])
def test_device_registers_with_its_announce_and_the_bridge_writes_over_the_bus(Server):
    async def main():
        node = heat_pump_node()
        bridge = await Server("127.0.0.1", free_port()).start()
        dev = await serve_device(node, bridge=("127.0.0.1", bridge.port), lifetime=60)
        try:
            await wait_for(lambda: dev.device.registered)
            assert "hp-1" in bridge.devices    # its ANNOUNCE made its address the route
            assert bridge.consumes["hp-1"] == tuple(node.consumes)
            reply = await bridge.send_frame("hp-1", F.encode(F.WRITE, HP, 42, {7: 300}))
            assert F.decode(reply) == (F.RESULT, HP, 42, None)
            assert node.get(HP, FLOW_SETPOINT) == 30.0
            reply = await bridge.send_frame("hp-1", F.encode(F.WRITE, HP, 43, {7: 900}))
            assert F.decode(reply) == (F.ERROR, HP, 43, [4, 7])
        finally:
            dev.close()
            await bridge.stop()
        assert dev.errors == 0, dev.last_error
    run_async(main())


@pytest.mark.parametrize("Server", [BridgeCoapServer, FastBusServer])
def test_bridge_subscribes_over_the_bus_and_receives_notify_frames(Server):
    async def main():
        node = heat_pump_node()
        bridge = await Server("127.0.0.1", free_port()).start()
        dev = await serve_device(node, bridge=("127.0.0.1", bridge.port))
        try:
            await wait_for(lambda: "hp-1" in bridge.devices)
            sub = await bridge.subscribe("hp-1", F.encode(F.SUBSCRIBE, HP, 9, {8: None}))
            assert F.decode(sub.result) == (F.RESULT, HP, 9, {8: 352})
            frames = sub.__aiter__()
            node.set(HP, FLOW_TEMP, 36.1)
            dev.poke()
            note = await next_note(frames)
            assert F.decode(note) == (F.NOTIFY, HP, 9, [None, {8: 361}])
            sub.cancel()
        finally:
            dev.close()
            await bridge.stop()
    run_async(main())


@pytest.mark.parametrize("Server", [BridgeCoapServer, FastBusServer])
def test_bridge_refuses_an_announce_without_device_id(Server):
    async def main():
        bridge = await Server("127.0.0.1", free_port()).start()
        ctx = await aiocoap.Context.create_client_context()
        try:
            r = await aio_request(ctx, aiocoap.POST, "coap://127.0.0.1:%d/s" % bridge.port,
                                  F.encode(F.ANNOUNCE, 0, 5, {1: []}))
            assert r.code == aiocoap.BAD_REQUEST
            assert F.decode(r.payload) == (F.ERROR, 0, 5, [9, "ANNOUNCE without device id"])
            assert bridge.devices == {}
        finally:
            await ctx.shutdown()
            await bridge.stop()
    run_async(main())


@pytest.mark.parametrize("Server", [BridgeCoapServer, FastBusServer])
def test_a_refused_announce_does_not_redirect_the_next_command(Server):
    """A spoofed ANNOUNCE for a registered id, from another address, that on_frame
    refuses leaves the route alone: the real device still gets the next command."""
    async def main():
        node = heat_pump_node()
        bridge = None

        def where(remote):   # aiocoap's remote, or the fast server's socket address
            return getattr(remote, "uri_base", remote)

        def first_come(frame, remote):   # a registered id stays with its first address
            mid = F.message_id(frame)
            known = bridge.devices.get(F.decode(frame)[3][0])
            if known is not None and where(known) != where(remote):
                return F.error(0, mid, NOT_AUTHORISED, "id taken")
            return F.encode(F.RESULT, 0, mid)
        bridge = await Server("127.0.0.1", free_port(), on_frame=first_come).start()
        dev = await serve_device(node, bridge=("127.0.0.1", bridge.port), lifetime=60)
        spoofer = await aiocoap.Context.create_client_context()
        try:
            await wait_for(lambda: dev.device.registered)
            route = bridge.devices["hp-1"]
            r = await aio_request(spoofer, aiocoap.POST, "coap://127.0.0.1:%d/s" % bridge.port,
                                  node.announce(77), content_format=CF_SPOT)
            assert r.code == aiocoap.UNAUTHORIZED
            assert F.decode(r.payload) == (F.ERROR, 0, 77, [NOT_AUTHORISED, "id taken"])
            assert bridge.devices["hp-1"] is route
            reply = await bridge.send_frame("hp-1", F.encode(F.WRITE, HP, 44, {7: 250}))
            assert F.decode(reply) == (F.RESULT, HP, 44, None)
            assert node.get(HP, FLOW_SETPOINT) == 25.0
        finally:
            await spoofer.shutdown()
            dev.close()
            await bridge.stop()
        assert dev.errors == 0, dev.last_error
    run_async(main())


def test_bridge_with_oscore_credentials_registers_a_protected_device_and_writes_protected(tmp_path):
    async def main():
        secret, bridge_kid, device_kid = b"provisioning-secret-0123456789ab", b"\x00", b"\x05"
        creds = CredentialsMap()
        creds[":hp-1"] = aiocoap_context_dir(tmp_path / "bridge", secret, bridge_kid, device_kid)
        bridge = await BridgeCoapServer("127.0.0.1", free_port(), oscore=creds).start()
        node = heat_pump_node()
        oscore = OscoreServer([SecurityContext(secret, device_kid, bridge_kid)], require=True)
        dev = await serve_device(node, bridge=("127.0.0.1", bridge.port), oscore=oscore,
                                 bridge_kid=bridge_kid, lifetime=60)
        try:
            await wait_for(lambda: dev.device.registered)
            route = bridge.devices["hp-1"]
            assert isinstance(route, OSCOREAddress) and route.security_context is creds[":hp-1"]
            reply = await bridge.send_frame("hp-1", F.encode(F.WRITE, HP, 45, {7: 260}))
            assert F.decode(reply) == (F.RESULT, HP, 45, None)
            assert node.get(HP, FLOW_SETPOINT) == 26.0
            assert oscore.rejected == 0     # it came protected: a plain one would be refused
        finally:
            dev.close()
            await bridge.stop()
        assert dev.errors == 0, dev.last_error
    run_async(main())
