"""PostgreSQL's latest rows keeping their points' keys and greatest time (schema 5), a
schema-4 database still served, and the documented migration.

Whatever path a batch takes (the usual frame taken as it comes, or the merge),
latest() gives the answers SQLite gives for the same frames, and every row's
keys and t_max are what its points make them.
"""
import random

import psycopg

from spot.cloud_bridge.store import open_store

from test_store import HP, T0, add_device, pg_server  # noqa: F401
from test_store_batches import pg_test
from test_store_postgres_frames import forget, on_sqlite

# the step docs/benchmarks.md gives to move a schema-4 database to schema 5 (every
# bridge stopped), run in one transaction
MIGRATE_TO_5 = (
    "ALTER TABLE latest_device ADD COLUMN IF NOT EXISTS keys bigint[], "
    "ADD COLUMN IF NOT EXISTS t_max double precision",
    "UPDATE latest_device SET (keys, t_max) = (SELECT array_agg(p.service::bigint << 32 "
    "| p.object ORDER BY p.service, p.object), max(p.t) FROM unnest(points) AS p)",
    "INSERT INTO schema_version VALUES (5, extract(epoch FROM now()))",
)

DEVICES = ("hp-1", "hp-2", "hp-3")
ALARMS = 0x03
# rows whose keys or t_max are not what their points make them
WRONG_KEYS = (
    "SELECT count(*) FROM latest_device WHERE keys IS DISTINCT FROM "
    "(SELECT array_agg(p.service::bigint << 32 | p.object ORDER BY p.service, p.object) "
    "FROM unnest(points) AS p) OR t_max IS DISTINCT FROM (SELECT max(p.t) FROM unnest(points) p)")


def one_frame_each(seed, n=40):
    """Batches of one frame per device (the batch the fast path takes): the same objects
    at a later time mostly, now and then a late or equal time, another service, or
    another set of objects."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        batch = []
        for d in DEVICES:
            sid = HP if rnd.random() < 0.8 else ALARMS
            objs = (1, 2, 3, 8) if rnd.random() < 0.7 else rnd.sample((1, 2, 3, 8, 9), 2)
            t = T0 + len(out) * 10 + rnd.choice((0, 0, 0, -15, -10, 5))
            batch.append([(d, sid, o, t, rnd.randrange(-99, 99)) for o in objs])
        out.append(batch)
    return out


async def wrong_keys(url):
    async with await psycopg.AsyncConnection.connect(url) as db:
        return (await (await db.execute(WRONG_KEYS)).fetchone())[0]


async def latest_answers(url, seed, check_keys=False):
    """latest() of every device after each batch of one_frame_each(seed)."""
    s = await open_store(url)
    try:
        for d in DEVICES:
            await add_device(s, d)
        got = []
        for b in one_frame_each(seed):
            await s.add_telemetry_frames(b)
            got.append([await s.latest(d) for d in DEVICES])
            if check_keys:
                assert await wrong_keys(url) == 0
        return got
    finally:
        await s.close()


@pg_test
async def test_latest_values_from_one_frame_per_device_answer_as_sqlite_does(url):
    for seed in (1, 2):
        assert await latest_answers(url, seed) == await on_sqlite(latest_answers, seed), seed
        await forget(url, DEVICES)


@pg_test
async def test_each_latest_row_keeps_the_keys_and_greatest_time_of_its_points(url):
    s = await open_store(url)
    try:
        assert s.latest_keys and await s.schema_version() == 5
    finally:
        await s.close()
    await latest_answers(url, 3, check_keys=True)


@pg_test
async def test_a_late_frame_with_the_stored_objects_leaves_the_newer_values(url):
    s = await open_store(url)
    try:
        await add_device(s)
        await s.add_telemetry_frames([[("hp-1", HP, o, T0 + 10, o) for o in (1, 2)]])
        await s.add_telemetry_frames([[("hp-1", HP, o, T0 + 5, 9) for o in (1, 2)]])
        await s.add_telemetry_frames([[("hp-1", HP, o, T0 + 10, 7) for o in (1, 2)]])
        assert await s.latest("hp-1") == {(HP, 1): (1, T0 + 10), (HP, 2): (2, T0 + 10)}
    finally:
        await s.close()


def schema_4(url):
    """A database as schema 4 left it, before its first open by this version."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE schema_version (version integer NOT NULL, "
                   "applied_at double precision NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (4, 0)")
        # schema 4's latest table (this version's DDL leaves a table it finds as it is)
        db.execute("CREATE TYPE latest_point AS (service smallint, object integer, "
                   "t double precision, value json)")
        db.execute("CREATE TABLE latest_device (device text PRIMARY KEY, "
                   "points latest_point[] NOT NULL, fleet latest_point[] NOT NULL, "
                   "alarm boolean) WITH (fillfactor = 50)")


@pg_test
async def test_a_schema_4_postgresql_database_keeps_merging_every_row(url):
    schema_4(url)
    got = await latest_answers(url, 4)
    s = await open_store(url)
    try:
        assert await s.schema_version() == 4 and s.latest_per_device and not s.latest_keys
    finally:
        await s.close()
    assert got == await on_sqlite(latest_answers, 4)


@pg_test
async def test_the_documented_step_moves_a_schema_4_database_to_schema_5(url):
    schema_4(url)
    s = await open_store(url)
    for d in DEVICES:
        await add_device(s, d)
    batches = one_frame_each(5)
    for b in batches[:20]:
        await s.add_telemetry_frames(b)
    before = [await s.latest(d) for d in DEVICES]
    await s.close()
    with psycopg.connect(url) as db:          # one transaction
        for stmt in MIGRATE_TO_5:
            db.execute(stmt)
    assert await wrong_keys(url) == 0
    s = await open_store(url)
    try:
        assert s.latest_keys and await s.schema_version() == 5
        assert [await s.latest(d) for d in DEVICES] == before
        got = []
        for b in batches[20:]:
            await s.add_telemetry_frames(b)
            got.append([await s.latest(d) for d in DEVICES])
        assert await wrong_keys(url) == 0
    finally:
        await s.close()
    assert got == (await on_sqlite(latest_answers, 5))[20:]


@pg_test
async def test_two_stores_writing_one_device_at_once_keep_its_newest_points_and_keys(url):
    import asyncio
    s, s2 = await open_store(url), await open_store(url)
    try:
        for d in DEVICES:
            await add_device(s, d)

        async def writer(store, times):
            for t in times:
                await store.add_telemetry_frames([[(d, HP, o, T0 + t, t) for o in (1, 2, 3)]
                                                  for d in DEVICES])
        # one writer ahead of the other: half its frames are late when they arrive
        await asyncio.gather(writer(s, range(0, 60, 2)), writer(s2, range(59, 0, -2)))
        assert await s2.latest("hp-2") == {(HP, o): (59, T0 + 59) for o in (1, 2, 3)}
        assert await wrong_keys(url) == 0
    finally:
        await s.close()
        await s2.close()


@pg_test
async def test_a_batch_from_more_devices_than_the_jit_limit_is_stored_whole(url):
    from spot.cloud_bridge.store_postgres import NO_JIT_DEVICES
    devs = ["d%05d" % i for i in range(NO_JIT_DEVICES + 1)]
    s = await open_store(url)
    try:
        await s.upsert_devices([(d, [[HP, 1, 0]], [], 0) for d in devs], T0)
        for t in (T0, T0 + 60):
            assert await s.add_telemetry([(d, HP, o, t, o) for d in devs for o in (1, 2)]) \
                == 2 * len(devs)
        assert await s.latest(devs[-1]) == {(HP, 1): (1, T0 + 60), (HP, 2): (2, T0 + 60)}
        assert await wrong_keys(url) == 0
    finally:
        await s.close()
