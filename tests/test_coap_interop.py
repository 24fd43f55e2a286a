"""CoAP endpoint against real peers over UDP on 127.0.0.1.

Our sans-I/O Endpoint runs inside ports/micropython/coap_loop.py on a thread; the peers
are libcoap's coap-client-notls, aiocoap as client and as server, a lossy relay and a raw
socket sending bad datagrams.  Every wait has a timeout; every thread is stopped.
"""
import asyncio
import queue
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest

import aiocoap
import aiocoap.resource as aioresource
from aiocoap.numbers.constants import TransportTuning
from loop_call import call_on
from netutil import bind_retrying

from spot.core import coap
from spot.core.coap_endpoint import Endpoint
from spot.core.coap_server import Response
from spot.core.coap_client import EV_RESPONSE, EV_NOTIFICATION
from spot.ports.micropython.coap_loop import CoapLoop

LARGE = bytes(ord('a') + i % 26 for i in range(3072))       # 3 KB, printable
COAP_CLIENT = shutil.which('coap-client-notls')


class Resources:
    """The test server's resources; the handler runs on the loop thread."""

    def __init__(self):
        self.value = b'hello'
        self.counter = 0
        self.deferred = []
        self.bodies = []

    def handle(self, req):
        path = req.path_str()
        if path == 'test':
            if req.code == coap.GET:
                return Response(coap.CONTENT, self.value, coap.CF_TEXT)
            if req.code == coap.PUT:
                self.value = req.payload
                return Response(coap.CHANGED)
            return Response(coap.METHOD_NOT_ALLOWED)
        if path == 'obs':
            return Response(coap.CONTENT, b'count %d' % self.counter, coap.CF_TEXT)
        if path == 'large':
            return Response(coap.CONTENT, LARGE, coap.CF_TEXT)
        if path == 'echo':
            self.bodies.append(req.payload)
            return Response(coap.CHANGED, req.payload)
        if path == 'slow':
            self.deferred.append(req)
            return None
        return Response(coap.NOT_FOUND)

    def tick(self, ep, now):
        while self.deferred:
            ep.respond(self.deferred.pop(0), Response(coap.CONTENT, b'separate'))


class Running:
    """An Endpoint in a CoapLoop on its own thread, with helpers to talk to it."""

    def __init__(self, handler=None, on_tick=None, **kw):
        self.events = queue.Queue()
        self.ep = Endpoint(handler, **kw)
        self.loop = CoapLoop(self.ep, '127.0.0.1', 0, on_events=self._on_events,
                             on_tick=on_tick, max_wait_ms=50)
        self.port = self.loop.port
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def _on_events(self, events):
        for ev in events:
            self.events.put(ev)

    def call(self, fn, timeout=5):
        """Run fn(endpoint) on the loop thread and return its result."""
        return call_on(self.loop, fn, timeout)

    def wait_event(self, token, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, 'no event for token %r' % token
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev.token == token:
                return ev

    def stop(self):
        self.loop.stop()
        self.thread.join(5)
        assert not self.thread.is_alive()
        assert self.loop.errors == 0, repr(self.loop.last_error)


@pytest.fixture
def server():
    res = Resources()
    run = Running(res.handle, on_tick=res.tick, max_body=8192)
    run.res = res
    run.uri = 'coap://127.0.0.1:%d' % run.port
    yield run
    run.stop()


@pytest.fixture
def client():
    run = Running(None, ack_timeout_ms=300)
    yield run
    run.stop()



def run_async(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class FastTuning(TransportTuning):
    ACK_TIMEOUT = 0.2
    MAX_RETRANSMIT = 8


# ---- (a) libcoap coap-client ---------------------------------------------------------------

def coap_client(*args, timeout=20):
    assert COAP_CLIENT, 'coap-client-notls missing: install Debian package libcoap3-bin'
    proc = subprocess.run([COAP_CLIENT, '-B', '8'] + list(args), capture_output=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_libcoap_get(server):
    assert coap_client(server.uri + '/test').rstrip(b'\n') == b'hello'


def test_libcoap_put_then_get(server):
    coap_client('-m', 'put', '-e', 'new value', server.uri + '/test')
    assert server.res.value == b'new value'
    assert coap_client(server.uri + '/test').rstrip(b'\n') == b'new value'


def test_libcoap_observe(server):
    assert COAP_CLIENT, 'coap-client-notls missing: install Debian package libcoap3-bin'
    proc = subprocess.Popen([COAP_CLIENT, '-B', '8', '-s', '3', '-w', server.uri + '/obs'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while server.call(lambda ep: len(ep.observers)) == 0:
            assert time.monotonic() < deadline, 'libcoap never registered'
            time.sleep(0.05)

        def bump(ep):
            server.res.counter += 1
            return ep.notify('obs')
        for _ in range(3):
            assert server.call(bump) == 1
            time.sleep(0.3)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait(5)
    assert out.split(b'\n')[:4] == [b'count 0', b'count 1', b'count 2', b'count 3'], (out, err)


def test_libcoap_blockwise_get(server, tmp_path):
    out = tmp_path / 'large.bin'
    coap_client('-b', '64', '-o', str(out), server.uri + '/large')
    assert out.read_bytes() == LARGE


def test_libcoap_blockwise_put(server):
    body = LARGE[:2000]
    coap_client('-m', 'put', '-b', '128', '-e', body.decode(), server.uri + '/echo')
    assert server.res.bodies == [body]


# ---- (b) aiocoap as client -----------------------------------------------------------------

async def aio_request(ctx, code, uri, payload=b'', **kw):
    msg = aiocoap.Message(code=code, uri=uri, payload=payload, **kw)
    return await asyncio.wait_for(ctx.request(msg).response, 15)


def test_aiocoap_get_and_put(server):
    async def main():
        ctx = await aiocoap.Context.create_client_context()
        try:
            r = await aio_request(ctx, aiocoap.GET, server.uri + '/test')
            assert (r.code, r.payload) == (aiocoap.CONTENT, b'hello')
            r = await aio_request(ctx, aiocoap.PUT, server.uri + '/test', b'put by aiocoap')
            assert r.code == aiocoap.CHANGED
            r = await aio_request(ctx, aiocoap.GET, server.uri + '/test')
            assert r.payload == b'put by aiocoap'
        finally:
            await ctx.shutdown()
    run_async(main())


def test_aiocoap_observe_three_notifications(server):
    def bump(ep):
        server.res.counter += 1
        return ep.notify('obs')

    async def main():
        ctx = await aiocoap.Context.create_client_context()
        try:
            req = ctx.request(aiocoap.Message(code=aiocoap.GET, uri=server.uri + '/obs',
                                              observe=0))
            first = await asyncio.wait_for(req.response, 10)
            assert first.payload == b'count 0' and first.opt.observe is not None
            seen = []
            notes = req.observation.__aiter__()
            for _ in range(3):
                await asyncio.get_running_loop().run_in_executor(None, server.call, bump)
                note = await asyncio.wait_for(notes.__anext__(), 10)
                seen.append(note.payload)
            req.observation.cancel()
            return seen
        finally:
            await ctx.shutdown()
    assert run_async(main()) == [b'count 1', b'count 2', b'count 3']


def test_aiocoap_blockwise_get_and_post(server):
    async def main():
        ctx = await aiocoap.Context.create_client_context()
        try:
            r = await aio_request(ctx, aiocoap.GET, server.uri + '/large')
            assert r.payload == LARGE
            body = bytes(range(256)) * 12
            r = await aio_request(ctx, aiocoap.POST, server.uri + '/echo', body)
            assert r.code == aiocoap.CHANGED and r.payload == body
        finally:
            await ctx.shutdown()
    run_async(main())
    assert server.res.bodies == [bytes(range(256)) * 12]


def test_aiocoap_gets_separate_response(server):
    async def main():
        ctx = await aiocoap.Context.create_client_context()
        try:
            return await aio_request(ctx, aiocoap.GET, server.uri + '/slow')
        finally:
            await ctx.shutdown()
    r = run_async(main())
    assert (r.code, r.payload) == (aiocoap.CONTENT, b'separate')


# ---- (c) aiocoap as server, our endpoint as client -------------------------------------------

class AioHello(aioresource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=b'hello from aiocoap')


class AioLarge(aioresource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=LARGE)


class AioObs(aioresource.ObservableResource):
    def __init__(self):
        super().__init__()
        self.count = 0

    async def render_get(self, request):
        return aiocoap.Message(payload=b'n%d' % self.count)


@pytest.fixture
def aio_server():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    site = aioresource.Site()
    site.add_resource(['hello'], AioHello())
    site.add_resource(['large'], AioLarge())
    obs = AioObs()
    site.add_resource(['obs'], obs)

    async def start(port):
        return await aiocoap.Context.create_server_context(site, bind=('127.0.0.1', port))
    port, ctx = bind_retrying(
        lambda p: (p, asyncio.run_coroutine_threadsafe(start(p), loop).result(10)))

    def bump():
        obs.count += 1
        obs.updated_state()
    yield ('127.0.0.1', port), (lambda: loop.call_soon_threadsafe(bump))
    asyncio.run_coroutine_threadsafe(ctx.shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_our_client_con_get_from_aiocoap(client, aio_server):
    addr, _ = aio_server
    token = client.call(lambda ep: ep.request(addr, coap.GET, 'hello'))
    ev = client.wait_event(token)
    assert (ev.kind, ev.code, ev.payload) == (EV_RESPONSE, coap.CONTENT, b'hello from aiocoap')


def test_our_client_blockwise_get_from_aiocoap(client, aio_server):
    addr, _ = aio_server
    token = client.call(lambda ep: ep.request(addr, coap.GET, 'large'))
    ev = client.wait_event(token)
    assert ev.kind == EV_RESPONSE and ev.payload == LARGE


def test_our_client_observes_aiocoap(client, aio_server):
    addr, bump = aio_server
    token = client.call(lambda ep: ep.request(addr, coap.GET, 'obs', observe=0))
    first = client.wait_event(token)
    assert first.kind == EV_RESPONSE and first.payload == b'n0' and first.observe is not None
    got = []
    for i in range(3):
        bump()
        ev = client.wait_event(token)
        assert ev.kind == EV_NOTIFICATION
        got.append(ev.payload)
    assert got == [b'n1', b'n2', b'n3']
    client.call(lambda ep: ep.cancel(token))


# ---- (d) lossy relay --------------------------------------------------------------------------

class LossyRelay:
    """Forwards UDP between one client and `target`, dropping `loss` of datagrams each way."""

    def __init__(self, target, loss=0.2, seed=7):
        self.target = target
        self.loss = loss
        self.rng = random.Random(seed)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.peer = None
        self.passed = {'up': 0, 'down': 0}
        self.dropped = {'up': 0, 'down': 0}
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                continue
            if addr == self.target:
                way, dest = 'down', self.peer
            else:
                self.peer = addr
                way, dest = 'up', self.target
            if dest is None or self.rng.random() < self.loss:
                self.dropped[way] += 1
                continue
            self.passed[way] += 1
            self.sock.sendto(data, dest)

    def stop(self):
        self._stop = True
        self.thread.join(5)
        self.sock.close()


def test_aiocoap_through_lossy_relay_all_20_requests_complete(server):
    relay = LossyRelay(('127.0.0.1', server.port), loss=0.2, seed=2024)
    uri = 'coap://127.0.0.1:%d/echo' % relay.port

    async def main():
        ctx = await aiocoap.Context.create_client_context()
        try:
            answers = []
            for i in range(20):
                body = b'request %d' % i
                msg = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=body,
                                      transport_tuning=FastTuning())
                r = await asyncio.wait_for(ctx.request(msg).response, 20)
                answers.append((r.code, r.payload == body))
            return answers
        finally:
            await ctx.shutdown()
    try:
        answers = run_async(main(), timeout=45)
    finally:
        relay.stop()
    assert answers == [(aiocoap.CHANGED, True)] * 20
    assert relay.dropped['up'] > 0 and relay.dropped['down'] > 0   # losses both ways
    assert server.ep.stats['dup'] > 0       # lost responses were replayed from the cache
    # retransmitted requests whose response was lost were answered from the dedupe cache
    assert server.res.bodies == [b'request %d' % i for i in range(20)]


def test_our_client_through_lossy_relay(client, server):
    relay = LossyRelay(('127.0.0.1', server.port), loss=0.2, seed=99)
    addr = ('127.0.0.1', relay.port)
    try:
        for i in range(10):
            body = b'ours %d' % i
            token = client.call(lambda ep: ep.request(addr, coap.POST, 'echo', body))
            ev = client.wait_event(token, timeout=20)
            assert (ev.kind, ev.code, ev.payload) == (EV_RESPONSE, coap.CHANGED, body)
    finally:
        relay.stop()
    assert relay.dropped['up'] > 0 and relay.dropped['down'] > 0
    assert client.ep.stats['retx'] > 0


# ---- (e) bad datagrams from a raw socket -------------------------------------------------------

def raw_exchange(sock, data, expect_answer=True):
    sock.send(data)
    if not expect_answer:
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(4096)
        return None
    sock.settimeout(3)
    return coap.decode(sock.recv(4096))


def test_bad_datagrams_get_rst_4_00_4_13_and_server_keeps_serving(server):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(('127.0.0.1', server.port))
    try:
        raw_exchange(sock, b'\x40\x01', expect_answer=False)                  # truncated
        raw_exchange(sock, bytes(range(0xc0, 0xff)), expect_answer=False)      # version 3
        raw_exchange(sock, b'\x5f\x01\x00\x01' + bytes(20), expect_answer=False)  # NON junk
        rst = raw_exchange(sock, b'\x4c\x01\x11\x11' + bytes(12))              # TKL 12
        assert (rst.mtype, rst.code, rst.mid) == (coap.RST, coap.EMPTY, 0x1111)
        rst = raw_exchange(sock, b'\x40\x01\x11\x12\xff')                      # no payload
        assert (rst.mtype, rst.mid) == (coap.RST, 0x1112)
        rst = raw_exchange(sock, b'\x40\x01\x11\x13\xf1')                      # nibble 15
        assert (rst.mtype, rst.mid) == (coap.RST, 0x1113)
        rst = raw_exchange(sock, b'\x40\x00\x11\x14')                          # ping
        assert (rst.mtype, rst.mid) == (coap.RST, 0x1114)
        bad = raw_exchange(sock, b'\x41\x01\x11\x15\x09\xb2\xff\xfe')          # bad UTF-8
        assert (bad.mtype, bad.code, bad.token) == (coap.ACK, coap.BAD_REQUEST, b'\x09')
        bad = raw_exchange(sock, b'\x41\x01\x11\x16\x09\xe0\x07\xf2')          # critical opt
        assert (bad.mtype, bad.code, bad.mid) == (coap.ACK, coap.BAD_OPTION, 0x1116)
        big = coap.encode_message(coap.CON, coap.PUT, 0x1117, b'\x0a', (), bytes(5000))
        bad = raw_exchange(sock, big)                                          # oversized
        assert (bad.code, bad.token) == (coap.REQUEST_ENTITY_TOO_LARGE, b'\x0a')
        assert bad.get_uint(coap.SIZE1) == 8192
        junk = random.Random(5)
        for _ in range(200):
            sock.send(bytes(junk.getrandbits(8) for _ in range(junk.randrange(1, 60))))
        sock.settimeout(0.2)
        try:
            while True:
                sock.recv(4096)   # drain whatever RSTs the junk earned
        except socket.timeout:
            pass
        ok = raw_exchange(sock, coap.encode(coap.set_uri(
            coap.CoapMessage(coap.CON, coap.GET, 0x1118, b'\x0b'), 'test')))
        assert (ok.code, ok.payload, ok.mid) == (coap.CONTENT, b'hello', 0x1118)
    finally:
        sock.close()
    assert server.ep.stats['bad'] >= 7
