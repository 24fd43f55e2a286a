"""A registration starts a delivery only for a device that has something to deliver:
a command queued when its registration was stored, a command queued while the
registration was in flight, claims another instance never sent, a clock to set.
A registration the store cannot take is answered BUSY and changes nothing.

In-process devices (SimDevice on the local transport) that take their clock from
the registration's RESULT (ANNOUNCE flag bit 1), so no clock WRITE follows;
a real SQLite store, and a real PostgreSQL server for the instances' part
(cloud_bridge/instances.py, its periodic look set far beyond the test so that
only the registration can start the delivery).
"""
import asyncio
import contextlib
import itertools

import psycopg
import pytest

from command_states import claimed
from spot.cloud_bridge import config as C
from spot.cloud_bridge.instances import Instances, RouteRecord, _s_ddl, _s_take_routes
from spot.cloud_bridge.local_transport import LocalTransport
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import Q, StoreUnavailable, open_store
from spot.core import frame as F
from spot.core.errors import BUSY
from spot.core.services import HEAT_PUMP

from test_bridge_service import T0, Clock, hp, make_bridge, settle
from test_store import pg_server  # noqa: F401,F811  (a fixture)
from waiting import until

_numbers = itertools.count(1)
FOREVER = 3600.0   # an instance's periodic look: never within a test
GATE = (4242, 1)   # an advisory lock a test holds a transaction at


async def register(local, device_id, dev):
    """ANNOUNCE dev on the local transport as a device that takes the RESULT's clock."""
    local.devices[device_id] = dev
    reply = await local.bridge.device_frame(local.name, None, dev.node.announce(bridge="bridge"))
    assert F.decode(reply)[0] == F.RESULT
    return reply


async def away(bridge, device_id):
    """The device went offline (as the sweep marks a silent one)."""
    await bridge._set_presence(device_id, "offline", bridge.clock())


def during_registration(bridge, then):
    """Run `then()` after the registration's transaction committed, before the bridge
    has answered the ANNOUNCE (the registration is in flight)."""
    register_one = bridge.registrar.register_nowait

    def register_then(announce, route, done, bounded=False):
        async def then_done(waiting, error):
            await then()
            done(waiting, error)
        register_one(announce, route,
                     lambda waiting, error: asyncio.ensure_future(then_done(waiting, error)),
                     bounded)
    bridge.registrar.register_nowait = register_then


@contextlib.asynccontextmanager
async def one_bridge(tmp_path):
    """A started bridge on SQLite (clock at T0) and its local transport; stopped after."""
    bridge, local = await make_bridge(tmp_path, Clock())
    try:
        yield bridge, local
    finally:
        await bridge.stop()


async def registered_then_away(bridge, local):
    """hp-1 registered once, then offline: the device (its SimDevice)."""
    dev = hp()
    await register(local, "hp-1", dev)
    await away(bridge, "hp-1")
    return dev


# ------------------------------------------------------------------ one instance (SQLite)

def test_a_device_registering_with_nothing_queued_gets_no_delivery(tmp_path):
    async def main():
        async with one_bridge(tmp_path) as (bridge, local):
            await register(local, "hp-1", hp())
            await settle(bridge)
            assert (await bridge.store.get_device("hp-1")).presence == "online"
            assert bridge.writes._claim.batches == 0   # the store was not asked for commands
            assert local.requests == 0
    asyncio.run(main())


def test_a_command_queued_while_the_device_was_away_is_delivered_when_it_registers(tmp_path):
    async def main():
        async with one_bridge(tmp_path) as (bridge, local):
            dev = await registered_then_away(bridge, local)
            cmd = await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 3})
            await settle(bridge)
            assert (await bridge.store.get_command(cmd.id)).status == "queued"
            await register(local, "hp-1", dev)
            await settle(bridge)
            assert (await bridge.store.get_command(cmd.id)).status == "done"
            assert dev.node.get(HEAT_PUMP, 6) == 3
    asyncio.run(main())


def test_a_command_queued_while_the_registration_is_in_flight_is_delivered(tmp_path):
    async def main():
        async with one_bridge(tmp_path) as (bridge, local):
            dev = await registered_then_away(bridge, local)
            late = []

            async def a_command_comes():   # queued (and kicked) after the store looked
                late.append(await bridge.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 1}))
            during_registration(bridge, a_command_comes)
            await register(local, "hp-1", dev)
            await settle(bridge)
            assert (await bridge.store.get_command(late[0].id)).status == "done"
            assert dev.node.get(HEAT_PUMP, 6) == 1
    asyncio.run(main())


def test_a_registration_the_store_cannot_take_is_answered_busy_and_changes_nothing(tmp_path):
    async def main():
        async with one_bridge(tmp_path) as (bridge, local):
            async def unavailable(announces, then=None):
                raise StoreUnavailable("disk gone")
            bridge.store.register_devices_waiting = unavailable
            local.devices["hp-1"] = dev = hp()
            reply = await bridge.device_frame(local.name, None,
                                              dev.node.announce(bridge="bridge"))
            op, _, _, body = F.decode(reply)
            assert op == F.ERROR and body[0] == BUSY
            assert "hp-1" not in bridge.known and "hp-1" not in bridge.routes
            assert bridge.presence.get("hp-1") != "online"
            assert "registration failed" in bridge.store_problem
            assert await bridge.store.get_device("hp-1") is None
    asyncio.run(main())


# ------------------------------------------------------------------ instances (PostgreSQL)

@pytest.fixture
def pg_url(pg_server):  # noqa: F811
    name = "regdel%d" % next(_numbers)
    yield pg_server.create_database(name)
    pg_server.drop_database(name)


def test_a_batch_whose_routed_devices_were_all_refused_records_no_route():
    # the registration's transaction runs no route statement for an empty list
    script = Instances.s_record(object.__new__(Instances), [])
    with pytest.raises(StopIteration) as done:
        next(script)
    assert done.value.value == ([], set())


async def instance(tmp_path, pg_url, name):
    """A bridge instance `name` on the PostgreSQL store, its local transport."""
    config = C.load(None, data=str(tmp_path / name), store=pg_url, instance=name)
    store = await open_store(pg_url)
    bridge = Bridge(config, store, clock=Clock(T0 + 10))
    await bridge.start()
    bridge.instances = await Instances(bridge, store, name, poll=FOREVER).start()
    return bridge, LocalTransport(bridge)


def held_at_gate(instances):
    """This instance's registrations wait at the advisory lock GATE inside their
    transaction, after their routes were written, before they commit (on PostgreSQL
    the registration and its routes are one statement: the wait is its last part)."""
    class Gated(RouteRecord):
        def __call__(self, ids):
            yield Q("SELECT pg_advisory_xact_lock(?, ?)", GATE)
            return (yield from super().__call__(ids))

        def sql_parts(self, written):
            ctes, params, rows, rows_params = super().sql_parts(written)
            return (ctes + ", gate AS (SELECT pg_advisory_xact_lock(?, ?))",
                    tuple(params) + GATE, rows + " UNION ALL SELECT 6, NULL, NULL FROM gate",
                    rows_params)
    instances.route_record = lambda routes: Gated(instances, routes)


async def waiting_at_gate(conn):
    """A transaction waits for an advisory lock (GATE, held on conn)."""
    cur = await conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                             "AND NOT granted")
    return (await cur.fetchone())[0] > 0


async def routed_through_b_with_a_command(pg_url):
    """hp-1 registered and routed through instance b, a WRITE (SG-ready 3; the
    device starts at 2) queued for it (30 s to
    answer once sent): its id."""
    store = await open_store(pg_url)
    try:
        await store._run(_s_ddl)
        await store.upsert_device("hp-1", [[HEAT_PUMP, 1, 0]], [], 0, T0)
        await store._run(lambda: _s_take_routes("b", [("hp-1", "coap", "coap://b")], T0))
        return await store.enqueue("hp-1", HEAT_PUMP, F.WRITE, {6: 3}, "operator", T0, T0 + 60,
                                   timeout=30)
    finally:
        await store.close()


def done(bridge, cid):
    """For until(): whether command cid is done."""
    async def check():
        return (await bridge.store.get_command(cid)).status == "done"
    return check


async def stop(bridge):
    await bridge.instances.stop()
    await bridge.stop()
    await bridge.store.close()


def test_a_command_another_instance_claimed_and_never_sent_is_delivered_when_its_device_registers_here(
        tmp_path, pg_url):
    async def main():
        # hp-1 was routed through b, which claimed its command and died unsent
        cid = await routed_through_b_with_a_command(pg_url)
        store = await open_store(pg_url)
        try:
            assert (await claimed(store, "hp-1", T0, "b")).id == cid
        finally:
            await store.close()
        a, local = await instance(tmp_path, pg_url, "a")
        try:
            dev = hp()
            await register(local, "hp-1", dev)
            await settle(a)
            assert (await a.store.get_command(cid)).status == "done"
            assert dev.node.get(HEAT_PUMP, 6) == 3
        finally:
            await stop(a)
    asyncio.run(main())


def test_a_command_the_old_instance_claims_while_the_registration_is_in_flight_is_delivered(
        tmp_path, pg_url):
    async def main():
        cid = await routed_through_b_with_a_command(pg_url)
        a, local = await instance(tmp_path, pg_url, "a")
        gate = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:   # the registration takes hp-1's route; while it is in flight b claims the
            # command (it still believes it holds the route), then dies unsent
            held_at_gate(a.instances)
            await gate.execute("SELECT pg_advisory_lock(%s, %s)", GATE)
            dev = hp()
            registering = asyncio.ensure_future(register(local, "hp-1", dev))
            assert await until(lambda: waiting_at_gate(gate))
            assert (await claimed(a.store, "hp-1", T0, "b")).id == cid
            await gate.execute("SELECT pg_advisory_unlock(%s, %s)", GATE)
            await registering
            await settle(a)
            assert await until(done(a, cid)), "the claim b took during the hand-over stays b's"
            assert dev.node.get(HEAT_PUMP, 6) == 3
        finally:
            await gate.close()
            await stop(a)
    asyncio.run(main())


async def claim_and_send_as_b(pg_url, mid=1, store=None):
    """What instance b (it believes it still holds hp-1's route) writes before it sends
    hp-1's next command: [Command or None]. store: an open store to write with."""
    own = store is None
    if own:
        store = await open_store(pg_url)
    try:
        return await store.claim_and_send_many([("hp-1", mid)], T0 + 1, "b", routed=True)
    finally:
        if own:
            await store.close()


async def waiting_for_locks(conn, n):
    """n transactions wait for a lock (of any kind)."""
    cur = await conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
    return (await cur.fetchone())[0] >= n


def test_after_a_hand_over_the_old_instance_claims_and_sends_nothing_and_the_new_one_delivers(
        tmp_path, pg_url):
    async def main():
        cid = await routed_through_b_with_a_command(pg_url)
        a, local = await instance(tmp_path, pg_url, "a")
        try:
            a.presence["hp-1"] = "offline"   # a does not deliver before b has tried
            dev = hp()
            held = a._kick
            a._kick = lambda device: None
            await register(local, "hp-1", dev)   # the hand-over: a holds the route
            a._kick = held
            assert await claim_and_send_as_b(pg_url) == [None]
            assert (await a.store.get_command(cid)).status == "queued"
            a._kick("hp-1")
            assert await until(done(a, cid))
            assert dev.node.get(HEAT_PUMP, 6) == 3
        finally:
            await stop(a)
    asyncio.run(main())


def test_a_claim_and_send_of_the_old_instance_during_a_hand_over_waits_for_it_and_sends_nothing(
        tmp_path, pg_url):
    async def main():
        cid = await routed_through_b_with_a_command(pg_url)
        a, local = await instance(tmp_path, pg_url, "a")
        b_store = await open_store(pg_url)
        gate = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:   # the registration holds hp-1's route row, waiting at GATE before it commits
            held_at_gate(a.instances)
            await gate.execute("SELECT pg_advisory_lock(%s, %s)", GATE)
            dev = hp()
            registering = asyncio.ensure_future(register(local, "hp-1", dev))
            assert await until(lambda: waiting_at_gate(gate))
            b_sends = asyncio.ensure_future(claim_and_send_as_b(pg_url, store=b_store))
            # b's write waits for the hand-over in flight (it holds hp-1's route row)
            assert await until(lambda: waiting_for_locks(gate, 2))
            assert not b_sends.done()
            await gate.execute("SELECT pg_advisory_unlock(%s, %s)", GATE)
            await registering
            assert await b_sends == [None]
            assert await until(done(a, cid)), "the command is the new holder's to send"
            assert dev.node.get(HEAT_PUMP, 6) == 3
            assert (await a.store.get_command(cid)).claimed_by == "a"
        finally:
            await gate.close()
            await b_store.close()
            await stop(a)
    asyncio.run(main())


def test_a_command_the_old_instance_claimed_and_sent_before_the_hand_over_is_not_sent_again(
        tmp_path, pg_url):
    """b recorded the send and died before (or after) the datagram: nothing tells which,
    so the new holder does not send it; it times out, unanswered."""
    async def main():
        cid = await routed_through_b_with_a_command(pg_url)
        [cmd] = await claim_and_send_as_b(pg_url, mid=77)
        assert (cmd.id, cmd.status, cmd.claimed_by) == (cid, "sent", "b")
        a, local = await instance(tmp_path, pg_url, "a")
        try:
            dev = hp()
            await register(local, "hp-1", dev)   # the hand-over
            await settle(a)
            c = await a.store.get_command(cid)
            assert (c.status, c.claimed_by, c.mid) == ("sent", "b", 77)
            assert dev.node.get(HEAT_PUMP, 6) == 2   # a sent nothing (3 would be the WRITE)
            a.clock.t = T0 + 1 + 30
            await a.sweep()
            assert (await a.store.get_command(cid)).status == "timeout"
        finally:
            await stop(a)
    asyncio.run(main())


def test_a_command_queued_on_another_instance_while_the_registration_is_in_flight_is_delivered(
        tmp_path, pg_url):
    async def main():
        a, local = await instance(tmp_path, pg_url, "a")
        b, _ = await instance(tmp_path, pg_url, "b")
        gate = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:
            dev = hp()
            await register(local, "hp-1", dev)   # routed through a from now on
            await away(a, "hp-1")
            # its route row goes, as if it registered with a for the first time
            def no_routes():
                yield Q("DELETE FROM device_routes", ())
            await a.store._run(no_routes)
            a.instances.held.clear()
            # the registration's transaction, its queued commands read, waits at GATE
            # before it commits the route
            held_at_gate(a.instances)
            looked, look = [], a.instances.look

            async def counted_look():
                await look()
                looked.append(1)
            a.instances.look = counted_look
            await gate.execute("SELECT pg_advisory_lock(%s, %s)", GATE)
            registering = asyncio.ensure_future(register(local, "hp-1", dev))
            assert await until(lambda: waiting_at_gate(gate))
            cmd = await b.submit("operator", "hp-1", HEAT_PUMP, F.WRITE, {6: 1})   # wakes a
            assert await until(lambda: looked, timeout=30), "a did not look when woken"
            await gate.execute("SELECT pg_advisory_unlock(%s, %s)", GATE)
            await registering
            assert await until(done(a, cmd.id), timeout=30), "the command waits for the next poll"
            assert dev.node.get(HEAT_PUMP, 6) == 1
            assert len(looked) >= 2   # a looked again once the route was stored
        finally:
            await gate.close()
            await stop(b)
            await stop(a)
    asyncio.run(main())


def test_a_registration_after_the_instance_stopped_is_refused_busy_and_records_nothing(
        tmp_path, pg_url):
    async def main():
        a, local = await instance(tmp_path, pg_url, "a")
        try:
            await a.instances.stop()
            local.devices["hp-1"] = dev = hp()
            reply = await a.device_frame(local.name, None, dev.node.announce(bridge="bridge"))
            op, _, _, body = F.decode(reply)
            assert op == F.ERROR and body[0] == BUSY
            assert "hp-1" not in a.known and "hp-1" not in a.routes
            assert await a.store.get_device("hp-1") is None
            assert await a.instances.route_of("hp-1") is None
        finally:
            await a.stop()
            await a.store.close()
    asyncio.run(main())


def test_a_registration_in_flight_when_the_instance_stops_is_stored_before_it_stops(
        tmp_path, pg_url):
    async def main():
        a, local = await instance(tmp_path, pg_url, "a")
        gate = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:   # the registration's transaction waits at GATE before it commits the route
            held_at_gate(a.instances)
            await gate.execute("SELECT pg_advisory_lock(%s, %s)", GATE)
            registering = asyncio.ensure_future(register(local, "hp-1", hp()))
            assert await until(lambda: waiting_at_gate(gate))
            stopping = asyncio.ensure_future(a.instances.stop())
            # without the wait, stop() ends in a few loop turns (its tasks, its connection)
            await asyncio.wait([stopping], timeout=0.2)
            assert not stopping.done()   # it waits for the registration in flight
            await gate.execute("SELECT pg_advisory_unlock(%s, %s)", GATE)
            await registering   # answered RESULT: stored
            await stopping
            assert (await a.instances.route_of("hp-1"))[0] == "a"
        finally:
            await gate.close()
            await a.stop()
            await a.store.close()
    asyncio.run(main())
