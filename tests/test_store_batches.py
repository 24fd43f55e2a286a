"""The store's many-item writes (a fan-out's claims, sends and completions, a burst
of ANNOUNCEs) on SQLite and PostgreSQL, and PostgreSQL's time-partitioned telemetry.

Each batch is one transaction and gives each item its own outcome: the same
answer, item by item, as the single-item method would give.
"""
import asyncio

import pytest

from command_states import claimed
from spot.cloud_bridge import store as S
from spot.cloud_bridge.store import open_store
from spot.cloud_bridge.coalesce import Callback, Coalesced

from test_store import HP, T0, WRITE, add_device, pg_server, store_test, store_url  # noqa: F401

BRIDGE = "bridge-a"


async def queued(s, devices, n=1):
    ids = []
    for k in range(n):
        ids += await s.enqueue_many(devices, HP, WRITE, {8: k}, "op", T0)
    return ids


# ------------------------------------------------------------------ commands

@store_test
async def test_claim_and_send_many_records_each_devices_oldest_command_sent_in_one_write(s, url):
    for d in ("hp-1", "hp-2", "hp-3"):
        await add_device(s, d)
    first = await queued(s, ["hp-1", "hp-2"])
    await queued(s, ["hp-1", "hp-2"])
    got = await s.claim_and_send_many([("hp-2", 7), ("hp-3", 8), ("hp-1", 65535)], T0 + 1,
                                      BRIDGE)
    assert [c and c.id for c in got] == [first[1], None, first[0]]
    assert [(c.status, c.claimed_by, c.claimed_at, c.mid, c.sent_at) for c in (got[0], got[2])] \
        == [("sent", BRIDGE, T0 + 1, 7, T0 + 1), ("sent", BRIDGE, T0 + 1, 65535, T0 + 1)]
    assert await s.get_commands([first[1], first[0]]) == [got[0], got[2]]   # as stored


@store_test
async def test_claim_and_send_many_with_a_device_twice_sends_its_two_oldest_each_with_its_mid(
        s, url):
    await add_device(s)
    ids = await queued(s, ["hp-1"], 3)
    got = await s.claim_and_send_many([("hp-1", 1), ("hp-1", 2)], T0 + 1, BRIDGE)
    assert [(c.id, c.mid) for c in got] == [(ids[0], 1), (ids[1], 2)]
    assert (await s.get_command(ids[2])).status == "queued"


@store_test
async def test_claim_and_send_many_takes_no_expired_sent_or_claimed_command(s, url):
    for d in ("hp-1", "hp-2", "hp-3"):
        await add_device(s, d)
    await s.enqueue_many(["hp-1"], HP, WRITE, {8: 1}, "op", T0, T0 + 1)   # expires at T0+1
    await queued(s, ["hp-2", "hp-3"])
    await s.claim_and_send_many([("hp-2", 1)], T0, "bridge-b")
    await claimed(s, "hp-3", T0, "bridge-b")   # by a bridge from before one-write sends
    got = await s.claim_and_send_many([("hp-1", 1), ("hp-2", 2), ("hp-3", 3)], T0 + 2, BRIDGE)
    assert got == [None, None, None]


@store_test
async def test_claim_and_send_many_refuses_a_bad_mid_or_device_and_changes_nothing(s, url):
    await add_device(s)
    cid = (await queued(s, ["hp-1"]))[0]
    for sends in ([("hp-1", 70000)], [("hp-1", -1)], [("hp-1", "1")], [(5, 1)]):
        with pytest.raises(S.InvalidValue):
            await s.claim_and_send_many(sends, T0 + 1, BRIDGE)
    assert (await s.get_command(cid)).status == "queued"


@store_test
async def test_a_command_claimed_and_sent_in_one_write_is_not_queued_again_and_times_out(s, url):
    """The bridge died after the write, before (or after) the datagram: nothing says
    which, so the command is never sent again; it times out, unanswered."""
    await add_device(s)
    cid = (await s.enqueue_many(["hp-1"], HP, WRITE, {8: 1}, "op", T0, None, 5.0))[0]
    await s.claim_and_send_many([("hp-1", 9)], T0 + 1, BRIDGE)
    assert await s.release_claims(BRIDGE) == []   # what a restart under its id frees
    assert await s.claim_and_send_many([("hp-1", 10)], T0 + 2, BRIDGE) == [None]
    assert await s.time_out(T0 + 5.5) == []
    assert await s.time_out(T0 + 6) == [cid]
    c = await s.get_command(cid)
    assert (c.status, c.mid, c.sent_at, c.completed_at) == ("timeout", 9, T0 + 1, T0 + 6)


@store_test
async def test_complete_and_look_many_says_whose_device_has_another_command_queued(s, url):
    for d in ("hp-1", "hp-2", "hp-3", "hp-4"):
        await add_device(s, d)
    a, b, c, d = await queued(s, ["hp-1", "hp-2", "hp-3", "hp-4"])
    await queued(s, ["hp-1"])                                            # hp-1: one more
    await s.enqueue_many(["hp-3"], HP, WRITE, {8: 1}, "op", T0, T0 + 1)  # expired by T0 + 2
    await s.complete(d, "done", None, T0 + 1)                            # d: final already
    got = await s.claim_and_send_many([("hp-1", 1), ("hp-2", 2), ("hp-3", 3)], T0 + 1, BRIDGE)
    assert [x.id for x in got] == [a, b, c]
    out = await s.complete_and_look_many(
        [(a, "done", None), (b, "error", [1, "x"]), (c, "done", None), (d, "done", None),
         (999, "done", None), (a, "nonsense", None)], T0 + 2)
    assert out[:4] == [(True, True), (True, False), (True, False), (False, None)]
    assert isinstance(out[4][0], S.UnknownCommand) and out[4][1] is None
    assert isinstance(out[5][0], S.InvalidValue) and out[5][1] is None
    assert [x.status for x in await s.get_commands([a, b, c, d])] == \
        ["done", "error", "done", "done"]


@store_test
async def test_complete_many_finishes_each_once_and_moves_its_plan(s, url):
    for d in ("hp-1", "hp-2"):
        await add_device(s, d)
    a, b = await queued(s, ["hp-1", "hp-2"])
    p = await s.enqueue_plan("hp-1", [5, T0, T0 + 60, 1, {HP: {8: 1}}], "op", T0)
    await s.complete(b, "timeout", "no answer", T0 + 1)
    out = await s.complete_many([(a, "done", {0: 1}), (b, "done", None), (p, "error", [4, "x"]),
                                 (999, "done", None), (a, "nonsense", None)], T0 + 2)
    assert out[:3] == [True, False, True]
    assert isinstance(out[3], S.UnknownCommand) and isinstance(out[4], S.InvalidValue)
    ca, cb = await s.get_commands([a, b])
    assert (ca.status, ca.result, ca.completed_at) == ("done", {0: 1}, T0 + 2)
    assert (cb.status, cb.result) == ("timeout", "no answer")
    assert (await s.list_plans("hp-1", T0, include_inactive=True))[0].status == "failed"


@store_test
async def test_group_enqueue_with_a_device_twice_queues_both_in_order(s, url):
    for d in ("hp-1", "hp-2"):
        await add_device(s, d)
    ids = await s.enqueue_many(["hp-2", "hp-1", "hp-2"], HP, WRITE, {8: 1}, "op", T0)
    cmds = await s.get_commands(ids)
    assert [c.device for c in cmds] == ["hp-2", "hp-1", "hp-2"]
    assert len(set(ids)) == 3 and ids[0] < ids[2]
    with pytest.raises(S.UnknownDevice, match="'ghost'"):
        await s.enqueue_many(["hp-1", "ghost"], HP, WRITE, {8: 1}, "op", T0)
    assert len(await s.list_commands()) == 3


@store_test
async def test_a_sent_and_completed_command_reads_back_exactly_as_written(s, url):
    await add_device(s)
    now = T0 + 0.1234567890123   # times of full float precision stay exact
    cid = (await s.enqueue_many(["hp-1"], HP, WRITE, {8: 1.5}, "op", now, now + 3600.000001,
                                12.345678901234567))[0]
    sent = (await s.claim_and_send_many([("hp-1", 65535)], now + 1e-6, BRIDGE))[0]
    assert sent == await s.get_command(cid)
    assert (sent.created_at, sent.claimed_at, sent.sent_at, sent.mid, sent.timeout) == (
        now, now + 1e-6, now + 1e-6, 65535, 12.345678901234567)
    assert await s.complete_many([(cid, "done", {0: [1, "x"]})], now + 3e-6) == [True]
    done = await s.get_command(cid)
    assert (done.mid, done.sent_at, done.completed_at, done.result) == (
        65535, now + 1e-6, now + 3e-6, {0: [1, "x"]})


def _sqlite_statements(s):
    """A list that collects every SQL statement the SQLite store runs from now on."""
    seen = []

    def trace():
        s._conn.set_trace_callback(seen.append)
    return seen, s._call(trace)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sqlite_writes_a_batch_of_any_size_with_the_same_statements(store_url):
    """Each statement step hands the GIL to the event loop and back: a group command's
    queueing and a fan-out's batch are a fixed number of statements, not one per
    command."""
    async def batch_of(s, n):
        devices = ["hp-%d" % i for i in range(n)]
        for d in devices:
            await add_device(s, d)
        seen, tracing = _sqlite_statements(s)
        await tracing
        await s.get_commands(await queued(s, devices, 2))
        cmds = await s.claim_and_send_many([(d, 1) for d in devices], T0 + 1, BRIDGE)
        await s.claim_and_send_many([(d, 2) for d in devices], T0 + 2, BRIDGE)
        await s.complete_many([(c.id, "done", None) for c in cmds], T0 + 3)
        await s.register_devices([announce("new-%d" % i) for i in range(n)])
        return len(seen)

    async def main():
        counts = []
        for n in (2, 50):
            s = await open_store(store_url.replace(".db", "-%d.db" % n))
            try:
                counts.append(await batch_of(s, n))
            finally:
                await s.close()
        assert counts[0] == counts[1]
    asyncio.run(main())


# ------------------------------------------------------------------ registration

def announce(dev, identity=None, claim=None, services=((HP, 1, 0),)):
    return S.Announce(dev, [list(x) for x in services], [], 0, T0, identity,
                      [("operator", "owner")], ("bridge", "register", {"via": "test"}), claim)


@store_test
async def test_register_devices_answers_each_announce_on_its_own(s, url):
    await s.upsert_device("hp-1", [[HP, 1, 0]], [], 0, T0, credential_ref="dtls:a")
    out = await s.register_devices([
        announce("hp-2", "dtls:b"),
        announce("hp-1", "dtls:c", claim=lambda held: held == "dtls:c"),   # refused
        announce("hp-3", services=[[HP, 1, 0, 9]]),                        # malformed
        announce("hp-1", "dtls:a", claim=lambda held: held == "dtls:a"),   # its owner
    ])
    assert out[0] is True and out[3] is False
    assert isinstance(out[1], S.ClaimRefused) and isinstance(out[2], S.InvalidValue)
    assert (await s.get_device("hp-1")).credential_ref == "dtls:a"
    assert await s.get_device("hp-3") is None
    assert await s.role_of("hp-2", "operator") == "owner"
    assert [e.target for e in await s.list_audit()] == ["hp-2"]


@store_test
async def test_register_devices_keeps_each_announces_own_time_exactly(s, url):
    times = [T0 + 0.1 * k + 1e-7 for k in range(5)]
    await s.register_devices([announce("hp-%d" % k)._replace(now=t) for k, t in enumerate(times)])
    for k, t in enumerate(times):
        d = await s.get_device("hp-%d" % k)
        assert (d.first_seen, d.last_seen, d.presence_at, d.presence) == (t, t, t, "online")


@store_test
async def test_register_devices_with_an_id_twice_registers_it_new_then_known(s, url):
    out = await s.register_devices([announce("hp-1", "dtls:a"), announce("hp-1", "dtls:a")])
    assert out == [True, False]
    assert [p.controller for p in await s.pairings("hp-1")] == ["operator"]


@store_test
async def test_register_devices_stores_each_devices_own_lists_and_audit_when_a_batch_shares_them(
        s, url):
    detail = {"via": "coap"}   # one object for the batch, as the bridge passes it
    same = [[HP, 1, 0], [1, 1, 0]]
    out = await s.register_devices([
        announce("hp-1")._replace(services=[list(x) for x in same], first_audit=(
            "bridge", "register", detail)),
        announce("hp-2")._replace(services=[list(x) for x in same], consumes=[7],
                                  first_audit=("bridge", "register", detail)),
        announce("hp-3")._replace(services=[[HP, 1, 0, 9]]),      # malformed
        announce("hp-4")._replace(services=[[HP, 1, 0, 9]]),      # the same, refused too
        announce("hp-5")._replace(services=[[HP, 2, 0]], first_audit=(
            "bridge", "register", {"via": "mqtt"})),
    ])
    assert out[:2] == [True, True] and out[4] is True
    assert isinstance(out[2], S.InvalidValue) and isinstance(out[3], S.InvalidValue)
    d1, d2, d5 = [await s.get_device(d) for d in ("hp-1", "hp-2", "hp-5")]
    assert d1.services == d2.services == same and d5.services == [[HP, 2, 0]]
    assert (d1.consumes, d2.consumes) == ([], [7])
    audit = {e.target: e.detail for e in await s.list_audit()}
    assert audit == {"hp-1": {"via": "coap"}, "hp-2": {"via": "coap"}, "hp-5": {"via": "mqtt"}}


@store_test
async def test_registering_says_which_devices_have_a_command_queued(s, url):
    for d in ("hp-1", "hp-2", "hp-3"):
        await add_device(s, d)
    await queued(s, ["hp-1", "hp-2"])
    await claimed(s, "hp-2", T0 + 1, BRIDGE)   # its only command is claimed: none waits
    out, waiting, _ = await s.register_devices_waiting(
        [announce(d) for d in ("hp-1", "hp-2", "hp-3", "hp-4")])
    assert out == [False, False, False, True]
    assert waiting == {"hp-1"}


@store_test
async def test_a_refused_registration_is_not_reported_waiting(s, url):
    await s.upsert_device("hp-1", [[HP, 1, 0]], [], 0, T0, credential_ref="dtls:a")
    await queued(s, ["hp-1"])
    out, waiting, _ = await s.register_devices_waiting(
        [announce("hp-1", "dtls:b", claim=lambda held: held == "dtls:b")])
    assert isinstance(out[0], S.ClaimRefused) and waiting == set()


# ------------------------------------------------------------------ coalescing

def test_calls_arriving_together_run_as_one_batch_each_with_its_own_outcome():
    seen = []

    async def run_many(items):
        seen.append(list(items))
        return [ValueError(i) if i < 0 else i * 10 for i in items]

    async def main():
        c = Coalesced(run_many)
        out = await asyncio.gather(*(c(i) for i in (1, -2, 3)), return_exceptions=True)
        assert out[0] == 10 and out[2] == 30 and isinstance(out[1], ValueError)
        assert seen == [[1, -2, 3]]
        assert await c(4) == 40
        assert seen[-1] == [4]
    asyncio.run(main())


def test_a_failed_batch_fails_every_caller_in_it():
    async def run_many(items):
        raise S.StoreUnavailable("down")

    async def main():
        c = Coalesced(run_many)
        out = await asyncio.gather(c(1), c(2), return_exceptions=True)
        assert all(isinstance(e, S.StoreUnavailable) for e in out)
    asyncio.run(main())


def test_a_caller_handing_in_a_callback_gets_its_own_outcome_after_the_batch():
    seen, told = [], []

    async def run_many(items):
        seen.append(list(items))
        assert told == []   # nobody is told before the batch ended
        return [ValueError(i) if i < 0 else i * 10 for i in items]

    async def main():
        c = Coalesced(run_many)
        for i in (1, -2):
            c.put(i, Callback(lambda outcome, error, i=i: told.append((i, outcome, error))))
        assert await c(3) == 30
        assert seen == [[1, -2, 3]]
        assert told[0] == (1, 10, None)
        assert told[1][:2] == (-2, None) and isinstance(told[1][2], ValueError)
    asyncio.run(main())


def test_a_callback_that_raises_leaves_the_other_callers_of_its_batch_answered():
    def broken(outcome, error):
        raise RuntimeError("a caller's bug")

    async def main():
        c = Coalesced(lambda items: asyncio.sleep(0, result=items))
        c.put(1, Callback(broken))
        assert await asyncio.gather(c(2), c(3)) == [2, 3]
    asyncio.run(main())


def test_items_arriving_while_a_batch_is_written_go_in_the_next_one():
    seen = []
    gate = asyncio.Event

    async def main():
        release = gate()

        async def run_many(items):
            seen.append(list(items))
            await release.wait()
            return items

        c = Coalesced(run_many)
        first = asyncio.ensure_future(c(1))
        await asyncio.sleep(0.01)
        later = [asyncio.ensure_future(c(i)) for i in (2, 3)]
        await asyncio.sleep(0.01)
        assert seen == [[1]] and not first.done()
        release.set()
        assert await asyncio.gather(first, *later) == [1, 2, 3]
        assert seen == [[1], [2, 3]]
    asyncio.run(main())


# ------------------------------------------------------------------ partitions

def pg_test(fn):
    """A store test on PostgreSQL only (partitions are PostgreSQL's)."""
    def test(pg_server):
        name = "part_%s" % fn.__name__[-40:]
        url = pg_server.create_database(name)
        try:
            asyncio.run(asyncio.wait_for(fn(url), 60))
        finally:
            pg_server.drop_database(name)
    test.__name__ = fn.__name__
    return test


async def partitions(s):
    def script():
        return [(lo, hi) for lo, hi, _ in (yield from s._s_partitions())]
    return await s._run(script, write=False)


async def rows_in(s, table):
    def script():
        r = yield S.Q("SELECT count(*) FROM " + table, ())
        return r.rows[0][0]
    return await s._run(script, write=False)


DAY = 86400


@pg_test
async def test_postgresql_telemetry_goes_into_day_partitions_made_ahead(url):
    s = await open_store(url)
    try:
        assert s.partitioned
        await add_device(s)
        day = T0 // DAY * DAY
        await s.add_telemetry([("hp-1", HP, 8, T0 + i, i) for i in range(3)])
        assert await partitions(s) == [(day, day + DAY), (day + DAY, day + 2 * DAY)]
        assert await rows_in(s, "telemetry_%d_%d" % (day, day + DAY)) == 3
        assert await rows_in(s, "telemetry_other") == 0
    finally:
        await s.close()


@pg_test
async def test_postgresql_rows_far_from_the_batchs_time_land_in_the_default_partition(url):
    s = await open_store(url)
    try:
        await add_device(s)
        rows = [("hp-1", HP, 8, T0 + i, i) for i in range(5)] + [("hp-1", HP, 8, 1000.0, -1)]
        assert await s.add_telemetry(rows) == 6
        assert await rows_in(s, "telemetry_other") == 1
        assert (await s.history("hp-1", HP, 8, limit=1)) == [(1000, -1)]
        assert await s.add_telemetry(rows) == 0          # stored once: idempotent
    finally:
        await s.close()


@pg_test
async def test_postgresql_retention_drops_whole_partitions_and_counts_their_rows(url):
    s = await open_store(url)
    try:
        await add_device(s)
        day = T0 // DAY * DAY
        for k in range(3):
            await s.add_telemetry([("hp-1", HP, 8, day + k * DAY + i, k) for i in range(4)])
        await s.add_telemetry([("hp-1", HP, 9, 1000.0, 1)])   # default partition
        cut = day + 2 * DAY + 2
        assert await s.prune_telemetry(cut) == 4 + 4 + 2 + 1
        assert (day, day + DAY) not in await partitions(s)
        assert (day + DAY, day + 2 * DAY) not in await partitions(s)
        assert [t for t, _ in await s.history("hp-1", HP, 8)] == [cut, cut + 1]
        assert await s.latest("hp-1") == {(HP, 8): (2, day + 2 * DAY + 3), (HP, 9): (1, 1000)}
        # a dropped day gets its partition back when rows for it come again
        await s.add_telemetry([("hp-1", HP, 8, day + 5, 9)])
        assert (day, day + DAY) in await partitions(s)
    finally:
        await s.close()


@pg_test
async def test_a_postgresql_database_from_before_partitioning_keeps_working(url):
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:   # what schema 1 made
        db.execute("CREATE TABLE schema_version (version integer NOT NULL, "
                   "applied_at double precision NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1, 0)")
        db.execute("CREATE TABLE telemetry (device text NOT NULL, service smallint NOT NULL, "
                   "object integer NOT NULL, t double precision NOT NULL, value json NOT NULL, "
                   "PRIMARY KEY (device, service, object, t))")
    s = await open_store(url)
    try:
        assert await s.schema_version() == 1 and s.partitioned is False
        await add_device(s)
        assert await s.add_telemetry([("hp-1", HP, 8, T0 + i, i) for i in range(3)]) == 3
        assert await s.prune_telemetry(T0 + 1) == 1
        assert await partitions(s) == []
        assert [t for t, _ in await s.history("hp-1", HP, 8)] == [T0 + 1, T0 + 2]
    finally:
        await s.close()


# the steps docs/benchmarks.md gives to move a schema-1 database to partitions
MIGRATE_BEFORE_START = (
    "ALTER TABLE telemetry RENAME TO telemetry_v1",
    "ALTER INDEX telemetry_pkey RENAME TO telemetry_v1_pkey",
    "ALTER INDEX IF EXISTS telemetry_t RENAME TO telemetry_v1_t",
    "INSERT INTO schema_version VALUES (2, extract(epoch FROM now()))",
)
MIGRATE_AFTER_START = (
    "INSERT INTO telemetry SELECT * FROM telemetry_v1 ON CONFLICT DO NOTHING",
    "DROP TABLE telemetry_v1",
)


@pg_test
async def test_the_documented_steps_move_a_schema_1_database_to_partitions(url):
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:   # what schema 1 made, with rows
        db.execute("CREATE TABLE schema_version (version integer NOT NULL, "
                   "applied_at double precision NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1, 0)")
        db.execute("CREATE TABLE telemetry (device text NOT NULL, service smallint NOT NULL, "
                   "object integer NOT NULL, t double precision NOT NULL, value json NOT NULL, "
                   "PRIMARY KEY (device, service, object, t))")
        db.execute("CREATE INDEX telemetry_t ON telemetry USING brin (t)")
    s = await open_store(url)
    await add_device(s)
    await s.add_telemetry([("hp-1", HP, 8, T0 + i, i) for i in range(3)])
    await s.close()
    with psycopg.connect(url) as db:
        for stmt in MIGRATE_BEFORE_START:
            db.execute(stmt)
    s = await open_store(url)
    try:
        with psycopg.connect(url) as db:
            for stmt in MIGRATE_AFTER_START:
                db.execute(stmt)
        assert s.partitioned and await s.schema_version() == 2
        assert await s.history("hp-1", HP, 8) == [(T0, 0), (T0 + 1, 1), (T0 + 2, 2)]
        await s.add_telemetry([("hp-1", HP, 8, T0 + 3, 3)])
        assert await s.prune_telemetry(T0 + 1) == 1
        assert len(await s.history("hp-1", HP, 8)) == 3
    finally:
        await s.close()


class HeldBatches:
    """A run_many test double: each batch recorded (seen), and held until release is
    set; its outcomes are its items times ten."""

    def __init__(self):
        self.seen = []
        self.release = asyncio.Event()

    async def __call__(self, items):
        self.seen.append(list(items))
        await self.release.wait()
        return [i * 10 for i in items]


def test_with_two_in_flight_what_waits_is_split_between_two_batches_written_at_once():
    async def main():
        run_many = HeldBatches()
        c = Coalesced(run_many, in_flight=2)
        calls = [asyncio.ensure_future(c(i)) for i in range(1, 7)]
        await asyncio.sleep(0.01)
        assert run_many.seen == [[1, 2, 3], [4, 5, 6]]   # both started, neither answered yet
        assert not any(f.done() for f in calls)
        run_many.release.set()
        assert await asyncio.gather(*calls) == [10, 20, 30, 40, 50, 60]
    asyncio.run(main())


@pytest.mark.parametrize("n, started", [
    (6, [range(6)]),                  # halves of 3: one batch
    (7, [range(7)]),                  # 4 and 3: one batch, not 3 left waiting for the 4
    (8, [range(4), range(4, 8)])])    # halves of 4: two batches at once
def test_with_a_min_split_what_waits_is_split_only_into_batches_that_large(n, started):
    async def main():
        run_many = HeldBatches()
        c = Coalesced(run_many, in_flight=2, min_split=4)
        calls = [asyncio.ensure_future(c(i)) for i in range(n)]
        await asyncio.sleep(0.01)
        assert run_many.seen == [list(r) for r in started]   # before any batch ended
        run_many.release.set()
        assert await asyncio.gather(*calls) == [i * 10 for i in range(n)]
    asyncio.run(main())


async def two_waiting_beside_a_batch_of_one():
    """A Coalesced of min_split 3 and two in flight running a held batch of 1 (item 1),
    items 2 and 3 handed in after it started: (its HeldBatches, it, the calls)."""
    run_many = HeldBatches()
    c = Coalesced(run_many, in_flight=2, min_split=3)
    calls = [asyncio.ensure_future(c(1))]
    await asyncio.sleep(0.01)
    calls += [asyncio.ensure_future(c(i)) for i in (2, 3)]
    await asyncio.sleep(0.01)
    return run_many, c, calls


def test_with_a_min_split_a_batch_beside_a_running_one_waits_for_that_many_items():
    async def main():
        run_many, c, calls = await two_waiting_beside_a_batch_of_one()
        assert run_many.seen == [[1]]   # two waiting: they wait for the batch of 1
        calls.append(asyncio.ensure_future(c(4)))
        await asyncio.sleep(0.01)
        assert run_many.seen == [[1], [2, 3, 4]]   # three: a second batch at once
        run_many.release.set()
        assert await asyncio.gather(*calls) == [10, 20, 30, 40]
    asyncio.run(main())


def test_with_a_min_split_fewer_items_waiting_go_in_a_batch_once_the_running_one_ends():
    async def main():
        run_many, c, calls = await two_waiting_beside_a_batch_of_one()
        run_many.release.set()
        async with asyncio.timeout(5):   # none left waiting for a third item
            assert await asyncio.gather(*calls) == [10, 20, 30]
        assert run_many.seen == [[1], [2, 3]]
    asyncio.run(main())


def test_with_two_in_flight_a_third_batch_waits_for_one_to_end():
    seen = []

    async def main():
        gates = [asyncio.Event(), asyncio.Event(), asyncio.Event()]

        async def run_many(items):
            seen.append(list(items))
            await gates[len(seen) - 1].wait()
            return items

        c = Coalesced(run_many, in_flight=2)
        first = [asyncio.ensure_future(c(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        later = [asyncio.ensure_future(c(i)) for i in (3, 4)]
        await asyncio.sleep(0.01)
        assert seen == [[1], [2]]          # two in flight: 3 and 4 wait
        gates[1].set()                     # the second batch ends first
        assert await first[1] == 2
        await asyncio.sleep(0.01)
        assert seen == [[1], [2], [3, 4]]  # what waited goes in its freed place
        gates[0].set()
        gates[2].set()
        assert await asyncio.gather(*first, *later) == [1, 2, 3, 4]
        await c.close()
        assert not c._flushers
    asyncio.run(main())


def test_with_two_in_flight_a_failed_batch_fails_only_its_own_callers():
    async def run_many(items):
        if 1 in items:
            raise S.StoreUnavailable("down")
        await asyncio.sleep(0)
        return items

    async def main():
        c = Coalesced(run_many, in_flight=2)
        out = await asyncio.gather(*(c(i) for i in (1, 2, 3, 4)), return_exceptions=True)
        assert all(isinstance(e, S.StoreUnavailable) for e in out[:2])
        assert out[2:] == [3, 4]
    asyncio.run(main())


def test_a_caller_calling_again_as_soon_as_answered_gets_a_batch_of_its_own():
    async def run_many(items):
        return items

    async def main():
        c = Coalesced(run_many)
        assert await c(1) == 1
        async with asyncio.timeout(5):   # called at once, in this task
            assert await c(2) == 2       # while the batch of 1 was just ending
    asyncio.run(main())
