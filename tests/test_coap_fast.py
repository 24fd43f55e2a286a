"""The bridge's plain coap:// on SPOT's own endpoint (cloud_bridge/coap_fast.py), against
real peers: libcoap's coap-client-notls and aiocoap as clients of a running bridge.

RawCoap (tests/adversarial_peers.py) is a test double, used only where a real client
cannot be made to do it: sending the very same datagram twice.
"""
import asyncio
import shutil
import subprocess

import aiocoap
import pytest

from adversarial_peers import HP, RawCoap, announce, bridge, code, notify
from netutil import free_udp_port
from waiting import until
from spot.cloud_bridge import coap_fast
from spot.cloud_bridge.coap_fast import PENDING, FastBusServer
from spot.cloud_bridge.store import StoreError
from spot.core import coap as M
from spot.core import frame as F
from spot.core.coap_binding import CF_SPOT
from spot.core.errors import BUSY

COAP_CLIENT = shutil.which("coap-client-notls")


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def coap_client(*args, timeout=20):
    """coap-client-notls's run (off the event loop: the bridge runs on it)."""
    assert COAP_CLIENT, "coap-client-notls missing: install Debian package libcoap3-bin"
    return await asyncio.to_thread(subprocess.run, [COAP_CLIENT, "-B", "5"] + list(args),
                                   capture_output=True, timeout=timeout)


async def libcoap_post(tmp_path, frame, port, local_port):
    """POST frame to the bridge's /s from local_port; (return code, reply frame bytes)."""
    src, out = tmp_path / "frame.spot", tmp_path / "reply.spot"
    src.write_bytes(frame)
    if out.exists():
        out.unlink()
    r = await coap_client("-m", "post", "-t", str(CF_SPOT), "-p", str(local_port),
                          "-f", str(src), "-o", str(out), "coap://127.0.0.1:%d/s" % port)
    return r, out.read_bytes() if out.exists() else b""


async def rows(parts, device):
    return len(await parts.store.history(device, HP, 11))


async def answered(device, port, *datagrams):
    """The answers to datagrams, each sent once the one before was answered (the same
    one twice: a retransmission)."""
    answers = []
    for datagram in datagrams:
        device.send(datagram, port)
        answers.append(await asyncio.wait_for(device.replies.get(), 5))
    return answers


async def announced(parts, device_id="hp-1"):
    """A RawCoap device that registered as device_id with the bridge of parts."""
    device = await RawCoap.open()
    await device.post(announce(device_id), parts.coap_port)
    return device


def _bus_post(mid, frame, token=b"tk", extra=()):
    """A CON POST to /s as devices send it (Uri-Path, Content-Format), plus extra options."""
    opts = [(M.URI_PATH, "s"), (M.CONTENT_FORMAT, CF_SPOT)] + list(extra)
    return M.encode_message(M.CON, M.POST, mid, token, opts, frame)


def test_the_bridge_serves_plain_coap_on_its_own_endpoint_and_dtls_on_aiocoap(tmp_path):
    async def main():
        async with bridge(tmp_path, psk={"dev-1": "00" * 16}) as parts:
            assert isinstance(parts.coap.fast, FastBusServer)
            assert parts.coap.server.plain is False        # aiocoap: coaps:// only
            assert parts.coap.port == parts.coap_port
    run(main())


def test_libcoap_discovers_the_bus_resource(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            r = await coap_client("-m", "get",
                                  "coap://127.0.0.1:%d/.well-known/core" % parts.coap_port)
            assert r.returncode == 0 and b'</s>;rt="spot.bus";ct=65000' in r.stdout
    run(main())


def test_libcoap_registers_and_its_telemetry_is_stored_before_the_2_04(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            local = free_udp_port()
            r, reply = await libcoap_post(tmp_path, announce("hp-1"), parts.coap_port, local)
            assert r.returncode == 0 and F.decode(reply)[0] == F.RESULT
            r, reply = await libcoap_post(tmp_path, notify(mid=2, values={11: 215}),
                                          parts.coap_port, local)
            assert r.returncode == 0 and reply == b""       # 2.04, no payload
            assert await rows(parts, "hp-1") == 1           # stored when answered
    run(main())


def test_libcoap_telemetry_from_another_port_is_4_01_and_not_stored(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            r, _ = await libcoap_post(tmp_path, announce("hp-1"), parts.coap_port,
                                      free_udp_port())
            assert r.returncode == 0
            r, _ = await libcoap_post(tmp_path, notify(mid=2), parts.coap_port,
                                      free_udp_port())
            assert b"4.01" in r.stderr + r.stdout, r
            assert await rows(parts, "hp-1") == 0
    run(main())


def test_libcoap_telemetry_the_store_refuses_is_5_03_and_not_stored(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            local = free_udp_port()
            await libcoap_post(tmp_path, announce("hp-1"), parts.coap_port, local)
            add = parts.store.add_telemetry_frames

            async def failing(frames):
                raise StoreError("disk full (test)")
            parts.store.add_telemetry_frames = failing
            r, _ = await libcoap_post(tmp_path, notify(mid=2), parts.coap_port, local)
            parts.store.add_telemetry_frames = add
            assert b"5.03" in r.stderr + r.stdout, r
            assert await rows(parts, "hp-1") == 0
    run(main())


def test_aiocoap_client_registers_sends_telemetry_and_a_stranger_gets_4_01(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            uri = "coap://127.0.0.1:%d/s" % parts.coap_port
            device = await aiocoap.Context.create_client_context()
            stranger = await aiocoap.Context.create_client_context()
            try:
                async def post(ctx, frame):
                    msg = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=frame,
                                          content_format=CF_SPOT)
                    return await asyncio.wait_for(ctx.request(msg).response, 10)
                resp = await post(device, announce("hp-1"))
                assert resp.code == aiocoap.CHANGED and F.decode(resp.payload)[0] == F.RESULT
                for mid in range(2, 12):
                    resp = await post(device, notify(mid=mid, t=1700000000 + mid))
                    assert resp.code == aiocoap.CHANGED
                resp = await post(stranger, notify(mid=20))
                assert resp.code == aiocoap.UNAUTHORIZED and F.decode(resp.payload)[0] == F.ERROR
                assert await rows(parts, "hp-1") == 10
            finally:
                await device.shutdown()
                await stranger.shutdown()
    run(main())


def test_a_retransmitted_notify_is_answered_from_the_cache_and_stored_once(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            device = await announced(parts)
            datagram = _bus_post(0x4242, notify(mid=5))
            answers = await answered(device, parts.coap_port, datagram, datagram)
            assert answers[0] == answers[1]
            assert code(M.decode(answers[0]).code) == "2.04"
            assert await rows(parts, "hp-1") == 1
            assert parts.bridge.metrics.value("telemetry_rows") == 1
            device.close()
    run(main())


@pytest.mark.parametrize("method", [M.GET, M.PUT])
def test_a_method_other_than_post_on_the_bus_is_4_05(tmp_path, method):
    async def main():
        async with bridge(tmp_path) as parts:
            device = await RawCoap.open()
            device.send(M.encode_message(M.CON, method, 7, b"t", [(M.URI_PATH, "s")]),
                        parts.coap_port)
            assert code(M.decode(await asyncio.wait_for(device.replies.get(), 5)).code) \
                == "4.05"
            device.close()
    run(main())


class LossyDevice(asyncio.DatagramProtocol):
    """Test double: a device socket that drops the first request it gets and answers the
    next ones with a piggy-backed 2.04 carrying a RESULT frame."""

    def __init__(self):
        self.seen = 0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.seen += 1
        if self.seen == 1:
            return
        msg = M.decode(data)
        mid = F.message_id(msg.payload)
        self.transport.sendto(M.encode_message(M.ACK, M.CHANGED, msg.mid, msg.token,
                                               [(M.CONTENT_FORMAT, CF_SPOT)],
                                               F.encode(F.RESULT, HP, mid)), addr)


def test_a_command_whose_datagram_is_lost_is_sent_again_and_answered():
    async def main():
        server = await FastBusServer("127.0.0.1", 0).start()
        loop = asyncio.get_running_loop()
        transport, device = await loop.create_datagram_endpoint(
            LossyDevice, local_addr=("127.0.0.1", 0))
        try:
            reply = await server.send_frame(transport.get_extra_info("sockname"),
                                            F.encode(F.WRITE, HP, 9, {7: 300}), timeout=20)
            assert F.decode(reply) == (F.RESULT, HP, 9, None) and device.seen == 2
        finally:
            transport.close()
            await server.stop()
    run(main())


def test_a_lost_command_is_sent_again_on_time_while_other_commands_come_and_go():
    """The endpoint's timer is not looked at again for every datagram of a fan-out: the
    retransmission of one lost CON still goes out while other exchanges start and end."""
    async def main():
        server = await FastBusServer("127.0.0.1", 0).start()
        server.endpoint.ack_timeout_ms = 100   # a retransmission after 100-150 ms
        loop = asyncio.get_running_loop()
        errors = []   # a callback that raised (the server's datagram reader, its timer)
        loop.set_exception_handler(lambda _, context: errors.append(context))
        lossy, lost = await loop.create_datagram_endpoint(
            LossyDevice, local_addr=("127.0.0.1", 0))
        prompt, answering = await loop.create_datagram_endpoint(
            UnobservableDevice, local_addr=("127.0.0.1", 0))
        try:
            t0 = loop.time()
            first = asyncio.ensure_future(server.send_frame(
                lossy.get_extra_info("sockname"), F.encode(F.WRITE, HP, 9, {7: 300}), timeout=20))
            while not first.done() and loop.time() - t0 < 5:   # one exchange after another
                await server.send_frame(prompt.get_extra_info("sockname"),
                                        F.encode(F.WRITE, HP, 5, {7: 1}), timeout=20)
            assert F.decode(await first) == (F.RESULT, HP, 9, None) and lost.seen == 2
            assert loop.time() - t0 < 1.0, "the retransmission waited for a later timer"
            assert answering.seen > 10
            assert not errors
        finally:
            lossy.close()
            prompt.close()
            await server.stop()
    run(main())


class UnobservableDevice(LossyDevice):
    """Test double: answers every request at once (2.04, a RESULT) and never with
    Observe: it keeps no observation."""

    def datagram_received(self, data, addr):
        self.seen += 1
        msg = M.decode(data)
        self.transport.sendto(M.encode_message(M.ACK, M.CHANGED, msg.mid, msg.token,
                                               [(M.CONTENT_FORMAT, CF_SPOT)],
                                               F.encode(F.RESULT, HP, 5)), addr)


def test_a_subscription_the_device_does_not_observe_ends_after_its_answer():
    async def main():
        server = await FastBusServer("127.0.0.1", 0).start()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(UnobservableDevice,
                                                           local_addr=("127.0.0.1", 0))
        try:
            sub = await server.subscribe(transport.get_extra_info("sockname"),
                                         F.encode(F.SUBSCRIBE, HP, 5, {8: None}))
            assert F.decode(sub.result) == (F.RESULT, HP, 5, None)
            with pytest.raises(ConnectionError):
                async for _ in sub:
                    raise AssertionError("a notification from a device that keeps none")
            assert server._exchanges == {}
        finally:
            transport.close()
            await server.stop()
    run(main())


def test_a_notify_retransmitted_before_its_commit_is_not_answered_until_stored(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            device = await announced(parts)
            gate, add = asyncio.Event(), parts.store.add_telemetry_frames

            async def held(frames):   # the store's transaction waits for the gate
                await gate.wait()
                return await add(frames)
            parts.store.add_telemetry_frames = held
            stats = parts.coap.fast.endpoint.stats
            dups = stats["dup"]
            datagram = _bus_post(0x4343, notify(mid=6))
            device.send(datagram, parts.coap_port)
            device.send(datagram, parts.coap_port)
            assert await until(lambda: stats["dup"] == dups + 1)
            assert device.replies.empty() and await rows(parts, "hp-1") == 0
            gate.set()
            first = await asyncio.wait_for(device.replies.get(), 5)
            assert code(M.decode(first).code) == "2.04" and await rows(parts, "hp-1") == 1
            device.send(datagram, parts.coap_port)   # after the commit: the cached ACK
            assert await asyncio.wait_for(device.replies.get(), 5) == first
            assert device.replies.empty() and await rows(parts, "hp-1") == 1
            device.close()
    run(main())


def test_a_notify_with_other_options_gets_the_same_ack_as_the_usual_one(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            device = await announced(parts)
            usual = _bus_post(0x0101, notify(mid=7, t=1000))
            # an elective option the endpoint does not know: read by its general path
            other = _bus_post(0x0102, notify(mid=8, t=1001), extra=[(2048, b"x")])
            acks = await answered(device, parts.coap_port, usual, other)
            assert acks[0][4:] == acks[1][4:] and acks[0][:2] == acks[1][:2]
            assert [M.decode(a).mid for a in acks] == [0x0101, 0x0102]
            assert code(M.decode(acks[0]).code) == "2.04" and M.decode(acks[0]).payload == b""
            assert await rows(parts, "hp-1") == 2
            device.close()
    run(main())


# the usual datagram (coap_fast's byte-level path), and one with an elective option
# the endpoint does not know (its general path)
PATHS = pytest.mark.parametrize("extra", [(), [(2048, b"x")]], ids=["usual", "other-options"])


@PATHS
def test_a_refused_notify_is_answered_with_its_error_again_when_retransmitted(tmp_path, extra):
    async def main():
        async with bridge(tmp_path) as parts:
            device = await RawCoap.open()   # never announced: 4.01, nothing stored
            datagram = _bus_post(0x5151, notify(mid=9), extra=extra)
            answers = await answered(device, parts.coap_port, datagram, datagram)
            assert answers[0] == answers[1]
            msg = M.decode(answers[0])
            assert code(msg.code) == "4.01" and F.decode(msg.payload)[0] == F.ERROR
            assert await parts.store.history("hp-1", HP, 11) == []
            device.close()
    run(main())


@pytest.mark.parametrize("refused", [False, True], ids=["stored", "refused"])
def test_a_notify_answered_after_the_server_stopped_sends_nothing_and_raises_nothing(refused):
    async def main():
        answers = []

        def on_frame_nowait(frame, remote, answer):   # the commit ends after the stop
            answers.append(answer)
            return PENDING
        server = await FastBusServer("127.0.0.1", 0, on_frame_nowait=on_frame_nowait).start()
        device = await RawCoap.open()
        try:
            device.send(_bus_post(0x6161, notify(mid=10)), server.port)
            assert await until(lambda: answers)
        finally:
            await server.stop()
        answers[0](F.error(HP, 10, BUSY, "not stored") if refused else None, None)
        await asyncio.sleep(0)   # a flush it might have asked for
        assert device.replies.empty()
        device.close()
    run(main())


def test_the_bridge_endpoint_draws_random_numbers_from_urandom_a_block_at_a_time(monkeypatch):
    calls = []

    def urandom(n):
        calls.append(n)
        return bytes(range(len(calls) * 16, len(calls) * 16 + n))
    monkeypatch.setattr(coap_fast.os, "urandom", urandom)
    rand = coap_fast._random_ahead(8)
    assert [rand(), rand(), rand()] == [0x10111213, 0x14151617, 0x20212223]
    assert calls == [8, 8]


def test_a_datagram_larger_than_the_endpoint_takes_is_4_13_and_nothing_is_stored(tmp_path):
    """The socket reads one byte more than the endpoint takes: a larger NOTIFY is refused
    from its header (4.13, its token, Size1), as it was when read whole."""
    async def main():
        async with bridge(tmp_path) as parts:
            device = await announced(parts)
            limit = parts.coap.fast.endpoint.max_datagram
            big = _bus_post(0x6161, notify(mid=9, values={11: bytes(limit)}), token=b"bg")
            assert len(big) > limit + 1
            answer, = await answered(device, parts.coap_port, big)
            msg = M.decode(answer)
            assert (code(msg.code), msg.token) == ("4.13", b"bg")
            assert msg.get_uint(M.SIZE1) == parts.coap.fast.endpoint.max_body
            assert await rows(parts, "hp-1") == 0
            ok, = await answered(device, parts.coap_port, _bus_post(0x6162, notify(mid=10)))
            assert code(M.decode(ok).code) == "2.04" and await rows(parts, "hp-1") == 1
            device.close()
    run(main())


def test_an_announce_gets_the_same_result_in_the_ack_by_the_usual_and_the_general_path(
        tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            usual, other = await RawCoap.open(), await RawCoap.open()
            acks = await answered(usual, parts.coap_port, _bus_post(0x0201, announce("hp-1")))
            acks += await answered(other, parts.coap_port, _bus_post(
                0x0202, announce("hp-2"), extra=[(2048, b"x")]))
            msgs = [M.decode(a) for a in acks]
            assert [code(m.code) for m in msgs] == ["2.04", "2.04"]
            assert [m.mtype for m in msgs] == [M.ACK, M.ACK]
            assert [F.decode(bytes(m.payload))[0] for m in msgs] == [F.RESULT, F.RESULT]
            assert [m.options for m in msgs] == [[(M.CONTENT_FORMAT, b"\xfd\xe8")]] * 2
            assert acks[0][4:] == acks[1][4:]   # token, option and RESULT alike
            fast = parts.coap.fast
            assert fast.devices == {"hp-1": ("127.0.0.1", usual.port),
                                    "hp-2": ("127.0.0.1", other.port)}
            assert [d.id for d in await parts.store.list_devices()] == ["hp-1", "hp-2"]
            usual.close()
            other.close()
    run(main())


def test_a_retransmitted_announce_is_answered_from_the_cache_and_registered_once(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            device = await RawCoap.open()
            batches = parts.bridge.registrar._batch.batches
            datagram = _bus_post(0x0301, announce("hp-1"))
            first, again = await answered(device, parts.coap_port, datagram, datagram)
            assert again == first and F.decode(bytes(M.decode(first).payload))[0] == F.RESULT
            assert parts.bridge.registrar._batch.batches == batches + 1
            device.close()
    run(main())


@PATHS
def test_a_refused_announce_is_answered_with_its_error_and_records_no_route(tmp_path, extra):
    async def main():
        async with bridge(tmp_path, reg_allow=["hp-*"]) as parts:
            device = await RawCoap.open()
            reply, = await answered(device, parts.coap_port,
                                    _bus_post(0x0401, announce("other-1"), extra=extra))
            msg = M.decode(reply)
            assert code(msg.code) == "4.01" and F.decode(bytes(msg.payload))[0] == F.ERROR
            assert parts.coap.fast.devices == {} and await parts.store.list_devices() == []
            device.close()
    run(main())
