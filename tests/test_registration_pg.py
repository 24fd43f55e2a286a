"""PostgreSQL registers a batch in one statement: it decides the claims itself
(registration.Claim.sql_rule) exactly as may_claim does, and a batch with a
claim it cannot put in SQL still registers; of two first registrations of one id
at the same moment, the later is claimed against the earlier's identity; a pooled
connection that died while idle is replaced and the registration stored (the pool
checks one at checkout without a round trip: store_postgres._alive). The
statement reads the stored devices through their key whatever plan the server
cached for it (a plan made while the table was small scanned the whole table for
every batch: a burst of N registrations cost N² / batch rows read), and locks
them in id order whatever order the batch gives (two instances: no deadlock).

A real PostgreSQL server (tests/postgres.py, the session's cluster).
"""
import asyncio
import itertools
import time

import psycopg
import pytest

from spot.cloud_bridge.registration import MIN_SPLIT, Claim, Registrar, may_claim
from spot.cloud_bridge.store import Announce, ClaimRefused, open_store
from spot.core.services import HEAT_PUMP

from test_store import pg_server  # noqa: F401  (a fixture)
from waiting import until

_numbers = itertools.count(1)
T0 = 1_700_000_000.0
IDENTITIES = (None, "coap:127.0.0.1", "coap:10.0.0.9", "dtls:a", "dtls:b", "oscore:hp-1")


@pytest.fixture
def pg_url(pg_server):  # noqa: F811
    name = "regpg%d" % next(_numbers)
    yield pg_server.create_database(name)
    pg_server.drop_database(name)


def announce(dev, identity, claim, t=T0):
    return Announce(dev, [[HEAT_PUMP, 1, 0]], [], 2, t, identity,
                    [("operator", "owner")], ("bridge", "register", {}), claim)


def test_postgresql_decides_each_claim_in_its_statement_as_may_claim_does(pg_url):
    pairs = [(held, claimant) for held in IDENTITIES for claimant in IDENTITIES]

    async def main():
        store = await open_store(pg_url)
        try:   # device k registered first under held, then claimed by claimant
            first = [announce("hp-%d" % k, held, None) for k, (held, _) in enumerate(pairs)]
            assert (await store.register_devices_waiting(first))[0] == [True] * len(pairs)
            again = [announce("hp-%d" % k, claimant, Claim(claimant), T0 + 1)
                     for k, (_, claimant) in enumerate(pairs)]
            out, waiting, _ = await store.register_devices_waiting(again)
            assert waiting == set()
            for k, (held, claimant) in enumerate(pairs):
                device = await store.get_device("hp-%d" % k)
                if may_claim(held, claimant):
                    assert out[k] is False, (held, claimant)
                    assert device.credential_ref == (claimant or held)
                    assert device.last_seen == T0 + 1
                else:
                    assert isinstance(out[k], ClaimRefused), (held, claimant)
                    assert out[k].held == held
                    assert device.credential_ref == held and device.last_seen == T0
        finally:
            await store.close()
    asyncio.run(main())


def test_a_new_device_gets_its_owner_and_audit_row_once(pg_url):
    async def main():
        store = await open_store(pg_url)
        try:
            for t in (T0, T0 + 1):
                await store.register_devices_waiting([announce("hp-1", "dtls:a", Claim("dtls:a"), t)])
            assert [(p.controller, p.role) for p in await store.pairings("hp-1")] == [
                ("operator", "owner")]
            assert len([e for e in await store.list_audit(target="hp-1")
                        if e.action == "register"]) == 1
        finally:
            await store.close()
    asyncio.run(main())


def test_a_batch_with_a_claim_not_in_sql_is_decided_by_it(pg_url):
    async def main():
        store = await open_store(pg_url)
        try:
            await store.register_devices_waiting([announce("hp-1", "dtls:a", None),
                                                  announce("hp-2", "dtls:a", None)])
            out, _, _ = await store.register_devices_waiting([
                announce("hp-1", "dtls:b", lambda held: held == "dtls:b", T0 + 1),
                announce("hp-2", "dtls:b", Claim("dtls:b"), T0 + 1)])
            assert isinstance(out[0], ClaimRefused) and isinstance(out[1], ClaimRefused)
            assert (await store.get_device("hp-1")).last_seen == T0
        finally:
            await store.close()
    asyncio.run(main())


def idle(db):
    """Wait until db's connection is the only client of its database."""
    for _ in range(300):
        if not db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND pid <> pg_backend_pid()").fetchone()[0]:
            return
        time.sleep(0.05)
    raise AssertionError("the store's connections did not end")


def rows_scanned(url, table):
    """The rows sequential scans of table read so far, once no other client of url's
    database is connected (a backend's counts reach the statistics when it ends)."""
    with psycopg.connect(url, autocommit=True) as db:
        idle(db)
        return db.execute("SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = %s",
                          (table,)).fetchone()[0]


def test_a_registration_batch_reads_the_stored_devices_by_key_after_the_table_grew(pg_url):
    """psycopg prepares a statement at its fifth run and PostgreSQL then keeps a generic
    plan, made without the batch's rows and for the table's size then (generic from
    the first run here, made for good at the fifth). Made while a fleet comes online,
    the table nearly empty, it read the whole table for every batch once the table had
    grown (spot_devices_held now plans its read at each call)."""
    async def main(url):
        store = await open_store(url)
        try:
            for k, n in enumerate((20,) * 6 + (10000, 20, 20, 20)):
                batch = [announce("hp-%d-%d" % (k, i), "coap:127.0.0.1",
                                  Claim("coap:127.0.0.1")) for i in range(n)]
                assert (await store.register_devices_waiting(batch))[0] == [True] * n
        finally:
            await store.close()

    async def schema():
        await (await open_store(pg_url)).close()
    asyncio.run(schema())
    with psycopg.connect(pg_url, autocommit=True) as db:   # no ANALYZE to replan meanwhile
        db.execute("ALTER TABLE devices SET (autovacuum_enabled = false)")
    asyncio.run(main(pg_url + "?options=-c%20plan_cache_mode%3Dforce_generic_plan"))
    # less than the table once for the three batches after it grew (before: each read
    # all of it: 30 840 rows in all)
    assert rows_scanned(pg_url, "devices") < 10000


def test_the_stored_rows_of_a_batch_are_read_by_id_none_for_an_id_not_stored(pg_url):
    async def main():
        store = await open_store(pg_url)
        try:
            await store.register_devices_waiting([announce(d, "dtls:" + d, Claim("dtls:" + d))
                                                  for d in ("hp-a", "hp-b")])
        finally:
            await store.close()
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as db:
            async def held(ids):
                cur = await db.execute("SELECT * FROM spot_devices_held(%s::text[])", (ids,))
                return await cur.fetchall()
            assert await held(["hp-b", "hp-x", None, "hp-a"]) == [
                ("hp-a", "dtls:hp-a"), ("hp-b", "dtls:hp-b")]
            assert await held([]) == []
            assert await held(None) == []
    asyncio.run(main())


def test_the_stored_rows_of_a_batch_are_locked_in_id_order_whatever_order_it_gives(pg_url):
    """Two instances registering overlapping ids in different batches lock them in one
    order (no deadlock): spot_devices_held, handed c, b, a while another transaction
    holds b, waits at b having locked a and not c."""
    async def main():
        store = await open_store(pg_url)
        try:
            await store.register_devices_waiting([announce(d, "dtls:a", Claim("dtls:a"))
                                                  for d in ("hp-a", "hp-b", "hp-c")])
        finally:
            await store.close()
        connect = psycopg.AsyncConnection.connect
        async with await connect(pg_url) as holder, await connect(pg_url) as reader, \
                await connect(pg_url, autocommit=True) as probe:
            await holder.execute("SELECT id FROM devices WHERE id = 'hp-b' FOR UPDATE")
            pid = reader.info.backend_pid
            read = asyncio.ensure_future(reader.execute(
                "SELECT id FROM spot_devices_held(ARRAY['hp-c', 'hp-b', 'hp-a'])"))

            async def waiting():
                cur = await probe.execute("SELECT wait_event_type FROM pg_stat_activity "
                                          "WHERE pid = %s", (pid,))
                return (await cur.fetchone())[0] == "Lock"

            async def free(dev):   # not locked by another transaction now
                cur = await probe.execute("SELECT id FROM devices WHERE id = %s "
                                          "FOR NO KEY UPDATE SKIP LOCKED", (dev,))
                return bool(await cur.fetchall())
            try:
                assert await until(waiting)
                assert (await free("hp-a"), await free("hp-c")) == (False, True)
            finally:   # the read ends, whatever the outcome (its connection closes after)
                await holder.rollback()
            assert await (await read).fetchall() == [("hp-a",), ("hp-b",), ("hp-c",)]
            await reader.rollback()
    asyncio.run(main())


async def kill_others(admin):
    """End every other client connection to admin's database; once those are gone, how
    many. It waits for the ones it ended, not for none at all: the store may open a new
    connection meanwhile, which is no connection of the ones that died."""
    cur = await admin.execute(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND backend_type = 'client backend' "
        "AND pid <> pg_backend_pid()")
    pids = [pid for pid, ended in await cur.fetchall() if ended]

    async def gone():
        cur = await admin.execute("SELECT count(*) FROM pg_stat_activity "
                                  "WHERE pid = ANY(%s)", (pids,))
        return (await cur.fetchone())[0] == 0
    assert await until(gone)
    return len(pids)


def test_a_pooled_connection_that_died_is_replaced_and_the_registration_stored(pg_url):
    async def main():
        store = await open_store(pg_url)
        admin = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:
            await store.register_devices_waiting([announce("hp-1", "dtls:a", Claim("dtls:a"))])
            # every connection of the store's pool dies while idle (a server restart)
            assert await kill_others(admin) >= 1
            out, _, _ = await store.register_devices_waiting(
                [announce("hp-2", "dtls:a", Claim("dtls:a"))])   # one statement, no BEGIN
            assert out == [True]
            assert await kill_others(admin) >= 1
            assert await store.upsert_device("hp-3", [[HEAT_PUMP, 1, 0]], [], 0, T0)  # a transaction
            assert {d.id for d in await store.list_devices()} == {"hp-1", "hp-2", "hp-3"}
        finally:
            await admin.close()
            await store.close()
    asyncio.run(main())


def test_a_store_whose_connections_have_high_descriptor_numbers_still_works(pg_url):
    """A busy bridge has over a thousand sockets open: the pool's checkout check
    (store_postgres._alive) must work with a descriptor past select()'s limit."""
    import os
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("the hard limit of open files is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = []

    async def main():
        while True:   # every descriptor below 1024 taken: the pool's connections get higher ones
            fd = os.open(os.devnull, os.O_RDONLY)
            filler.append(fd)
            if fd >= 1030:
                break
        store = await open_store(pg_url)
        try:
            for dev in ("hp-1", "hp-2"):   # each checked out, so checked, again
                out, _, _ = await asyncio.wait_for(store.register_devices_waiting(
                    [announce(dev, "dtls:a", Claim("dtls:a"))]), 30)
                assert out == [True]
        finally:
            await store.close()
    try:
        asyncio.run(main())
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


GATE = (4243, 1)   # an advisory lock a test holds a registration statement at


class HeldAtGate:
    """A `then` folded into the registration statement (as instances.RouteRecord is)
    whose last part waits at the advisory lock GATE: the statement has written its
    rows and not committed."""

    @staticmethod
    def sql_parts(written):
        return ("gate AS (SELECT pg_advisory_xact_lock(?, ?))", GATE,
                " UNION ALL SELECT 6, NULL, NULL FROM gate", ())

    @staticmethod
    def result(rows):
        return rows


def test_a_first_registration_of_an_id_at_the_same_time_as_another_is_claimed_against_it(
        pg_url):
    async def main():
        first_store, second_store = await open_store(pg_url), await open_store(pg_url)
        gate = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:   # dtls:a registers hp-1 first; before it commits, a plain CoAP source does
            await gate.execute("SELECT pg_advisory_lock(%s, %s)", GATE)
            first = asyncio.ensure_future(first_store.register_devices_waiting(
                [announce("hp-1", "dtls:a", Claim("dtls:a"))], HeldAtGate()))

            async def held():
                cur = await gate.execute("SELECT count(*) FROM pg_locks "
                                         "WHERE locktype = 'advisory' AND NOT granted")
                return (await cur.fetchone())[0] > 0
            assert await until(held)
            second = asyncio.ensure_future(second_store.register_devices_waiting(
                [announce("hp-1", "coap:10.0.0.9", Claim("coap:10.0.0.9"), T0 + 1)]))

            async def second_waits():   # for the first one's row
                cur = await gate.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                return (await cur.fetchone())[0] >= 2
            assert await until(second_waits)
            await gate.execute("SELECT pg_advisory_unlock(%s, %s)", GATE)
            assert (await first)[0] == [True]
            assert isinstance((await second)[0][0], ClaimRefused)
            device = await first_store.get_device("hp-1")
            assert (device.credential_ref, device.last_seen) == ("dtls:a", T0)
        finally:
            await gate.close()
            await first_store.close()
            await second_store.close()
    asyncio.run(main())


class CountingStore:
    """The store with register_devices_waiting counted: calls, and most at once."""

    def __init__(self, store):
        self.store = store
        self.calls = self.now = self.most = 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def register_devices_waiting(self, announces, then=None):
        self.calls += 1
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self.store.register_devices_waiting(announces, then)
        finally:
            self.now -= 1


@pytest.mark.parametrize("n, min_split, batches", [
    (10, MIN_SPLIT, 1),            # the bridge's: a small burst is one batch
    (2 * MIN_SPLIT, MIN_SPLIT, 2),  # a large one two, written at once
    (10, 1, 2)])                   # asked to split whatever arrives together
def test_on_postgresql_registrations_arriving_together_are_one_batch_or_two_at_once(
        pg_url, n, min_split, batches):
    async def main():
        store = await open_store(pg_url)
        counted = CountingStore(store)
        try:
            registrar = Registrar(counted, min_split=min_split)
            await store.register_devices_waiting([announce("hp-x", "dtls:a", Claim("dtls:a"))])
            ids = ["hp-%d" % k for k in range(n - 1)] + ["hp-x"]
            out = await asyncio.gather(*(registrar.register(announce(
                d, "dtls:b", Claim("dtls:b"), T0 + 1)) for d in ids), return_exceptions=True)
            assert (counted.calls, counted.most) == (batches, batches)
            assert out[:-1] == [False] * (n - 1)   # stored, nothing queued for them
            assert isinstance(out[-1], ClaimRefused)   # its batch's other devices are stored
            assert {(await store.get_device(d)).credential_ref for d in ids[:-1]} == {"dtls:b"}
            assert (await store.get_device("hp-x")).credential_ref == "dtls:a"
        finally:
            await store.close()
    asyncio.run(main())


@pytest.mark.parametrize("in_flight, min_split, batches", [
    (1, MIN_SPLIT, 1),   # one batch: the store registers hp-1 in two rounds of it
    (2, MIN_SPLIT, 2),   # hp-2 and hp-3 beside hp-1, then hp-1 again once written
    (2, 1, 3)])          # the same, hp-3 in a batch of its own beside the first
def test_a_new_device_announcing_twice_at_once_is_registered_once_then_again(
        pg_url, in_flight, min_split, batches):
    async def main():
        store = await open_store(pg_url)
        counted = CountingStore(store)
        try:
            registrar = Registrar(counted, in_flight=in_flight, min_split=min_split)
            out = await asyncio.gather(*(registrar.register(announce(d, "dtls:a", Claim("dtls:a")))
                                         for d in ("hp-1", "hp-2", "hp-1", "hp-3")))
            assert out == [False] * 4
            assert counted.calls == batches
            assert [(p.controller, p.role) for p in await store.pairings("hp-1")] == [
                ("operator", "owner")]
            assert len([e for e in await store.list_audit(target="hp-1")
                        if e.action == "register"]) == 1
        finally:
            await store.close()
    asyncio.run(main())
