"""Re-registrations of a known id (issue 15), against the real bridge on 127.0.0.1: real
UDP datagrams to its CoAP port (RawCoap, a test double writing datagrams byte by byte),
a real SQLite store, a real mosquitto for births.

A refresh that would write what the bridge wrote for the id less than refresh_interval
seconds ago is answered without a store write; any change is written; written
re-registrations from CoAP and DTLS pass a bucket per id (refresh_burst, then one per
refresh_interval), refused 5.03 rate_refresh over it. docs/security-transports.md.

The store's registration transactions are counted by WriteSpy, which wraps the real
store's register_devices_waiting and calls through to it.
"""
import asyncio
import contextlib
import time

import pytest

from adversarial_peers import HP, RawCoap, bridge, code, mqtt_client
from spot.cloud_bridge.registration import Refreshes, registration_digest
from spot.core import coap as M
from spot.core import frame as F
from spot.core.errors import BUSY
from spot.core.node import UNIX_TIME
from spot.core.services import TIME
from test_store import pg_server  # noqa: F401  (a fixture)
from waiting import until

INTERVAL = 30


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class SteppedClock:
    """The bridge's clock: the real time plus what a test stepped it forward."""

    def __init__(self):
        self.ahead = 0.0

    def __call__(self):
        return time.time() + self.ahead

    def step(self, seconds):
        self.ahead += seconds


class WriteSpy:
    """Spy on the real store's registration transactions: the ids each one was asked to
    write, then the real store writes them."""

    def __init__(self, store):
        self.ids = []
        real = store.register_devices_waiting

        async def counted(announces, then=None):
            announces = list(announces)
            self.ids += [a.id for a in announces]
            return await real(announces, then)
        store.register_devices_waiting = counted


def announce(device="hp-1", mid=1, services=((HP, 1, 0),), flags=0):
    body = {0: device, 1: [list(s) for s in services]}
    if flags:
        body[3] = flags
    return F.encode(F.ANNOUNCE, 0, mid, body)


@contextlib.asynccontextmanager
async def registered(tmp_path, frame=None, **options):
    """A running bridge (options: its settings, clock=) and hp-1 registered with it from
    a RawCoap by `frame`: (parts, the device, a WriteSpy counting the writes from then)."""
    async with bridge(tmp_path, **options) as parts:
        device = await RawCoap.open()
        try:
            c, _ = await device.post(frame or announce(), parts.coap_port)
            assert code(c) == "2.04"
            yield parts, device, WriteSpy(parts.store)
        finally:
            device.close()


def refusals(parts, reason):
    return parts.bridge.metrics.value("frames_rejected", reason=reason)


async def stored_services(parts, device="hp-1"):
    return (await parts.store.get_device(device)).services


# ---------------------------------------------------------------- unchanged: not written

def test_an_unchanged_refresh_within_the_interval_is_answered_with_the_clock_unwritten(
        tmp_path):
    clocked = announce(services=((TIME, 1, 0), (HP, 1, 0)), flags=2)   # takes the RESULT's time
    clock = SteppedClock()

    async def main():
        async with registered(tmp_path, clocked, clock=clock,
                              reg_refresh_interval=INTERVAL) as (parts, device, writes):
            clock.step(INTERVAL - 5)
            for _ in range(20):
                c, payload = await device.post(clocked, parts.coap_port)
                assert code(c) == "2.04"
                op, _, _, body = F.decode(payload)
                assert op == F.RESULT and abs(body[UNIX_TIME] - clock()) <= 2   # now's time
            assert writes.ids == []
            assert parts.bridge.metrics.value("registrations_unchanged") == 20
            assert parts.coap.route("hp-1")[1] == device.port
    run(main())


def test_an_unchanged_mqtt_birth_within_the_interval_is_acknowledged_unwritten(tmp_path,
                                                                               broker):
    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port) as parts:
            device = mqtt_client(broker.port, "hp-9")
            try:
                device.publish("spot/v1/hp-9/announce", announce("hp-9"), qos=1).wait_for_publish()
                assert await until(lambda: "hp-9" in parts.bridge.known)
                writes = WriteSpy(parts.store)
                device.publish("spot/v1/hp-9/announce", announce("hp-9"), qos=1).wait_for_publish()
                metrics = parts.bridge.metrics
                assert await until(lambda: metrics.value("registrations_unchanged") == 1)
                assert writes.ids == []
                assert metrics.value("registrations_not_stored", transport="mqtt") == 0
            finally:
                device.loop_stop()
                device.disconnect()
    run(main())


# ---------------------------------------------------------------- changed: written

async def _new_services(parts, device):
    return await device.post(announce(services=((HP, 1, 1),)), parts.coap_port), device


async def _sleepy(parts, device):
    return await device.post(announce(flags=1), parts.coap_port), device


async def _new_source_port(parts, device):   # a rebooted device, a NAT's new mapping
    moved = await RawCoap.open()
    try:
        return await moved.post(announce(), parts.coap_port), moved
    finally:
        moved.close()


async def _after_deletion(parts, device):
    await parts.bridge.delete_device("operator", "hp-1")
    return await device.post(announce(), parts.coap_port), device


@pytest.mark.parametrize("change", [_new_services, _sleepy, _new_source_port, _after_deletion],
                         ids=["services", "flags", "source port", "deleted meanwhile"])
def test_a_refresh_within_the_interval_is_written_when_it_changes_something(tmp_path, change):
    async def main():
        async with registered(tmp_path) as (parts, device, writes):
            c, _ = await device.post(announce(), parts.coap_port)   # unchanged: not written
            assert code(c) == "2.04" and writes.ids == []
            (c, _), device = await change(parts, device)
            assert code(c) == "2.04"
            assert writes.ids == ["hp-1"]
            assert parts.coap.route("hp-1")[1] == device.port
    run(main())


def test_a_refresh_arriving_while_a_change_is_written_is_written_after_it(tmp_path):
    """The device changes its services and changes them back at once: the second
    ANNOUNCE equals what was written before the first, yet the store is about to hold
    the first. It is written (after it), so the store ends with what the device said
    last."""
    async def main():
        async with registered(tmp_path) as (parts, device, writes):
            device.post_nowait(announce(services=((HP, 1, 1),)), parts.coap_port)
            device.post_nowait(announce(), parts.coap_port)
            for _ in range(2):
                answer = M.decode(await asyncio.wait_for(device.replies.get(), 5))
                assert code(answer.code) == "2.04"
            assert writes.ids == ["hp-1", "hp-1"]
            assert await stored_services(parts) == [[HP, 1, 0]]
    run(main())


def test_a_changed_refresh_is_stored_as_sent(tmp_path):
    async def main():
        async with registered(tmp_path) as (parts, device, _):
            await device.post(announce(), parts.coap_port)
            c, _ = await device.post(announce(services=((HP, 1, 1),), flags=1), parts.coap_port)
            assert code(c) == "2.04"
            stored = await parts.store.get_device("hp-1")
            assert (stored.services, stored.flags) == ([[HP, 1, 1]], 1)
    run(main())


def test_a_refresh_of_a_device_marked_offline_meanwhile_is_written(tmp_path):
    clock = SteppedClock()

    async def main():
        async with registered(tmp_path, clock=clock, offline_after=5,
                              reg_refresh_interval=INTERVAL) as (parts, device, writes):
            await device.post(announce(), parts.coap_port)   # unchanged: not written
            clock.step(10)   # silent for longer than offline_after: the sweep marks it offline
            assert await until(lambda: parts.bridge.presence.get("hp-1") == "offline")
            c, _ = await device.post(announce(), parts.coap_port)
            assert code(c) == "2.04"
            assert writes.ids == ["hp-1"]
            assert (await parts.store.get_device("hp-1")).presence == "online"
    run(main())


def test_a_refresh_arriving_while_the_device_is_being_deleted_is_written(tmp_path):
    """The store deleted the device; the bridge's books still show it registered a
    moment ago, unchanged, routed, online, until the deletion's answer reaches it. A
    RESULT then would acknowledge a registration the store does not hold: it is
    written."""
    async def main():
        async with registered(tmp_path) as (parts, device, writes):
            await device.post(announce(), parts.coap_port)   # unchanged: not written
            deleted, release = asyncio.Event(), asyncio.Event()
            real = parts.store.delete_device

            async def held_after_commit(*args, **kwargs):
                out = await real(*args, **kwargs)
                deleted.set()
                await release.wait()
                return out
            parts.store.delete_device = held_after_commit
            deletion = asyncio.ensure_future(parts.bridge.delete_device("operator", "hp-1"))
            try:
                await asyncio.wait_for(deleted.wait(), 5)
                c, _ = await device.post(announce(), parts.coap_port)
                assert code(c) == "2.04"
                assert writes.ids == ["hp-1"]
                assert await parts.store.get_device("hp-1") is not None
            finally:
                release.set()
                await deletion
    run(main())


@pytest.fixture
def pg_url(pg_server):  # noqa: F811
    yield pg_server.create_database("refresh")
    pg_server.drop_database("refresh")


def test_with_instances_sharing_a_store_a_device_deleted_through_another_is_written_again(
        tmp_path, pg_url):
    """Instance a's books still show the device it registered a moment ago, unchanged,
    routed, online; b deleted it from the store meanwhile. In doubt, write: with
    instances sharing a store every refresh is written."""
    async def main():
        async with registered(tmp_path / "a", store=pg_url, instance="a") as (a, device, writes), \
                bridge(tmp_path / "b", store=pg_url, instance="b") as b:
            await b.bridge.delete_device("operator", "hp-1")
            assert await a.store.get_device("hp-1") is None
            c, _ = await device.post(announce(), a.coap_port)
            assert code(c) == "2.04"
            assert writes.ids == ["hp-1"]
            assert await a.store.get_device("hp-1") is not None
            assert (await a.instances.route_of("hp-1"))[0] == "a"
    run(main())


# ---------------------------------------------------------------- the refresh limit

def changes():
    """ANNOUNCEs of hp-1 that each change what is stored: version 1.k of its service."""
    k = 0
    while True:
        k += 1
        yield announce(mid=k, services=((HP, 1, k),))


def test_over_the_refresh_limit_a_change_is_refused_busy_and_changes_nothing(tmp_path):
    async def main():
        async with registered(tmp_path, reg_refresh_burst=3) as (parts, device, writes):
            sent = changes()
            codes = [code((await device.post(next(sent), parts.coap_port))[0]) for _ in range(6)]
            assert codes == ["2.04"] * 3 + ["5.03"] * 3
            assert writes.ids == ["hp-1"] * 3
            assert refusals(parts, "rate_refresh") == 3
            assert await stored_services(parts) == [[HP, 1, 3]]   # the third, not the sixth
            c, payload = await device.post(next(sent), parts.coap_port)
            assert F.decode(payload)[3][0] == BUSY   # the device retries later
    run(main())


def test_over_the_refresh_limit_an_unchanged_refresh_is_still_answered(tmp_path):
    async def main():
        async with registered(tmp_path, reg_refresh_burst=1) as (parts, device, _):
            c, _ = await device.post(announce(services=((HP, 1, 1),)), parts.coap_port)
            assert code(c) == "2.04"
            c, _ = await device.post(announce(), parts.coap_port)
            assert code(c) == "5.03"   # over the limit
            c, _ = await device.post(announce(services=((HP, 1, 1),)), parts.coap_port)
            assert code(c) == "2.04"   # what is stored: answered, nothing to write
    run(main())


def test_a_malformed_refresh_is_refused_without_spending_the_refresh_limit(tmp_path):
    """Bad input changes nothing: a re-registration the store would refuse (a service
    id above 255) is answered 4.00 and leaves the id's bucket as it was."""
    async def main():
        async with registered(tmp_path, reg_refresh_burst=1) as (parts, device, _):
            c, _ = await device.post(announce(services=((300, 1, 0),)), parts.coap_port)
            assert code(c) == "4.00"
            c, _ = await device.post(announce(services=((HP, 1, 1),)), parts.coap_port)
            assert code(c) == "2.04"
            assert await stored_services(parts) == [[HP, 1, 1]]
    run(main())


def test_changed_mqtt_births_pass_no_refresh_limit(tmp_path, broker):
    """A refused birth would come again only after the device reconnects; the broker
    authenticates births, and each one that changes something is written."""
    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port,
                          reg_refresh_burst=1) as parts:
            device = mqtt_client(broker.port, "hp-9")
            try:
                for minor in range(4):   # each waits for the one before to be stored
                    device.publish("spot/v1/hp-9/announce",
                                   announce("hp-9", services=((HP, 1, minor),)),
                                   qos=1).wait_for_publish()
                    async def stored(minor=minor):
                        d = await parts.store.get_device("hp-9")
                        return d is not None and d.services == [[HP, 1, minor]]
                    assert await until(stored, timeout=5)
                assert refusals(parts, "rate_refresh") == 0
            finally:
                device.loop_stop()
                device.disconnect()
    run(main())


def test_after_the_interval_a_refused_change_is_accepted_and_written(tmp_path):
    clock = SteppedClock()

    async def main():
        async with registered(tmp_path, clock=clock, reg_refresh_burst=2,
                              reg_refresh_interval=INTERVAL) as (parts, device, writes):
            sent = changes()
            for _ in range(2):
                await device.post(next(sent), parts.coap_port)
            refused = next(sent)
            assert code((await device.post(refused, parts.coap_port))[0]) == "5.03"
            clock.step(INTERVAL)
            assert code((await device.post(refused, parts.coap_port))[0]) == "2.04"
            assert writes.ids == ["hp-1"] * 3
            assert await stored_services(parts) == [[HP, 1, 3]]
    run(main())


def test_after_the_interval_an_unchanged_refresh_is_written_again(tmp_path):
    clock = SteppedClock()

    async def main():
        async with registered(tmp_path, clock=clock,
                              reg_refresh_interval=INTERVAL) as (parts, device, writes):
            await device.post(announce(), parts.coap_port)
            assert writes.ids == []
            clock.step(INTERVAL)
            c, _ = await device.post(announce(), parts.coap_port)
            assert code(c) == "2.04"
            assert writes.ids == ["hp-1"]
            assert (await parts.store.get_device("hp-1")).last_seen >= clock() - 5
    run(main())


# ---------------------------------------------------------------- memory

def digest(k):
    return registration_digest([[HP, 1, 0]], [], 0, "coap:127.0.0.1", "coap", k)


def test_refresh_entries_last_about_an_interval_so_the_table_stays_small_for_many_ids():
    """200 000 ids registering 1 000 a second (a million devices every 1 000 s), each
    written once and refreshed once: the table holds the last interval's ids, not all."""
    refreshes = Refreshes(4, INTERVAL)
    now = 0.0
    for k in range(200000):
        now = k / 1000.0
        refreshes.written("d%d" % k, digest(k), now)
        assert refreshes.take("d%d" % k, now)
    assert len(refreshes) <= INTERVAL * 1000 + 1
    assert refreshes.unchanged("d199999", digest(199999), now)


def test_the_refresh_table_never_holds_more_than_its_limit():
    refreshes = Refreshes(4, INTERVAL, limit=1000)
    for k in range(5000):   # all at once: none says nothing yet
        refreshes.written("d%d" % k, digest(k), 0.0)
    assert len(refreshes) == 1000
    assert refreshes.unchanged("d4999", digest(4999), 1.0)
    assert not refreshes.unchanged("d0", digest(0), 1.0)   # dropped: written again
