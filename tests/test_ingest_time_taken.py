"""A NOTIFY for a time already stored (spec 3.1): the same values again are a
retransmission, acknowledged and stored once; other values are refused (ERROR
out-of-range, CoAP 4.00) and change nothing, over real CoAP (libcoap's
coap-client-notls and aiocoap against a running bridge), and the device taking the
refused frame out of its outbox (core.coap_binding.CoapDevice on a real socket); within
one group commit, on both stores, in tests/test_store.py. aiocoap is the client where the test reads
the ERROR frame (coap-client prints a payload's bytes as text).
"""
import asyncio
import time

import aiocoap

from adversarial_peers import HP, announce, bridge, notify
from netutil import free_udp_port
from spot.cloud_bridge.store import Q, open_store
from spot.core import errors as E
from spot.core import frame as F
from spot.core.coap_binding import CF_SPOT
from test_coap_fast import libcoap_post, run


async def stored(parts, device, oid=11):
    return await parts.store.history(device, HP, oid)


def test_a_notify_repeating_a_stored_time_and_its_values_is_acknowledged_and_stored_once(
        tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            local, t = free_udp_port(), int(time.time()) - 60
            await libcoap_post(tmp_path, announce("hp-1"), parts.coap_port, local)
            for mid in (2, 3):   # a new message id: not CoAP's duplicate, SPOT's own
                r, reply = await libcoap_post(tmp_path, notify(mid, t, {11: 215}),
                                              parts.coap_port, local)
                assert r.returncode == 0 and reply == b"", r   # 2.04, no payload
            assert await stored(parts, "hp-1") == [(t, 215)]
    run(main())


def test_a_notify_giving_a_stored_time_other_values_is_refused_and_nothing_of_it_stored(
        tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            uri = "coap://127.0.0.1:%d/s" % parts.coap_port
            device = await aiocoap.Context.create_client_context()   # one source port
            t = int(time.time()) - 60
            try:
                async def post(frame):
                    msg = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=frame,
                                          content_format=CF_SPOT)
                    return await asyncio.wait_for(device.request(msg).response, 10)
                await post(announce("hp-1"))
                assert (await post(notify(2, t, {11: 215}))).code == aiocoap.CHANGED
                # object 12 is new, object 11 contradicts what is stored: the whole frame goes
                resp = await post(notify(3, t, {11: 300, 12: 7}))
                assert resp.code == aiocoap.BAD_REQUEST
                op, _, mid, body = F.decode(resp.payload)
                assert (op, mid, body[0]) == (F.ERROR, 3, E.OUT_OF_RANGE)
                assert await stored(parts, "hp-1") == [(t, 215)]
                assert await stored(parts, "hp-1", 12) == []
                assert (await parts.store.latest("hp-1"))[(HP, 11)] == (215, t)
                # a later time is stored as usual
                assert (await post(notify(4, t + 1, {11: 300}))).code == aiocoap.CHANGED
                assert await stored(parts, "hp-1") == [(t, 215), (t + 1, 300)]
            finally:
                await device.shutdown()
    run(main())


def test_frames_are_stored_as_add_telemetry_stores_the_same_rows(tmp_path):
    """The group commit's path (integers bound as they are, other values encoded) and
    Store.add_telemetry keep the same text and time in both tables."""
    frames = [[("hp-1", HP, 1, 1700000001, 5), ("hp-1", HP, 2, 1700000001, -2 ** 63)],
              [("hp-1", HP, 1, 1700000002, 0.1 + 0.2), ("hp-1", HP, 2, 1700000002, True),
               ("hp-1", HP, 3, 1700000002, 2 ** 64), ("hp-1", HP, 4, 1700000002, "on")]]

    async def tables(name, add):
        store = await open_store("sqlite:///" + str(tmp_path / name))
        try:
            await store.upsert_device("hp-1", [[HP, 1, 0]], [], 0, 1700000000)
            await add(store)
            return [await store._run(lambda: (yield Q(
                "SELECT device, service, object, t, typeof(t), value, typeof(value) FROM %s "
                "ORDER BY device, service, object, t" % table, ())), write=False)
                for table in ("telemetry", "latest")]
        finally:
            await store.close()

    async def main():
        by_frames = await tables("a.db", lambda s: s.add_telemetry_frames(frames))
        by_rows = await tables("b.db", lambda s: s.add_telemetry([r for f in frames for r in f]))
        assert by_frames == by_rows and len(by_frames[0].rows) == 6
    asyncio.run(main())


def test_a_device_drops_the_frame_the_bridge_refuses_and_its_telemetry_goes_on(tmp_path):
    """The device side of the refusal (spec 9.1): core.coap_binding.CoapDevice, served on
    a real UDP socket, takes a 4.00 for a NOTIFY out of its outbox (counted in
    `dropped`) instead of resending it for ever, stays registered, and the next
    frame is stored."""
    from spot.core.node import Node
    from spot.ports.cpython.coap_transport import serve_device
    from spot.profiles import heat_pump
    from waiting import until

    async def main():
        async with bridge(tmp_path) as parts:
            node = Node([heat_pump], "hp-1")
            dev = await serve_device(node, bridge=("127.0.0.1", parts.coap_port))
            device = dev.device
            try:
                assert await until(lambda: device.registered, timeout=15)
                t = int(time.time()) - 60
                device.send_telemetry([notify(0, t, {11: 215})])
                dev.poke()
                assert await until(lambda: not device.outbox, timeout=15)
                assert await stored(parts, "hp-1") == [(t, 215)]
                device.send_telemetry([notify(0, t, {11: 300})])   # the same time, another value
                dev.poke()
                assert await until(lambda: device.dropped == 1, timeout=15)
                assert device.outbox == [] and device.registered
                device.send_telemetry([notify(0, t + 1, {11: 301})])
                dev.poke()
                assert await until(lambda: not device.outbox, timeout=15)
                assert await stored(parts, "hp-1") == [(t, 215), (t + 1, 301)]
                assert device.dropped == 1
            finally:
                dev.close()
    run(main())
