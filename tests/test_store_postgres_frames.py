"""PostgreSQL's telemetry history one row per frame (schema 4), the layout before (one
row per value, schema 1-3) still served, and the documented migration.

Whatever the layout, the store gives the answers SQLite gives for the same
batches: the count of new values, the frames refused (spec 3.1: other values
for a stored object and time), and the history of every object.
"""
import os
import random
import shutil
import tempfile

from spot.cloud_bridge.store import open_store

from test_store import HP, T0, add_device, pg_server  # noqa: F401
from test_store_batches import DAY, partitions, pg_test, rows_in

# the step docs/benchmarks.md gives to move a schema-3 database's history to one
# row per frame (every bridge stopped, after this version opened it once)
MIGRATE_HISTORY = (
    """DO $$ DECLARE p text; BEGIN
        FOR p IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'telemetry'::regclass LOOP
            EXECUTE format('ALTER TABLE %I RENAME TO %I', p, p || '_v3');
            IF p ~ '^telemetry_[0-9]+_[0-9]+$' THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF telemetry_frame '
                               'FOR VALUES FROM (%s) TO (%s)',
                               p, split_part(p, '_', 2), split_part(p, '_', 3));
            END IF;
        END LOOP;
        CREATE TABLE telemetry_other PARTITION OF telemetry_frame DEFAULT;
    END $$""",
    "INSERT INTO telemetry_frame (device, service, t, objects, vals) "
    "SELECT device, service, t, array_agg(object ORDER BY object), "
    "array_agg(value ORDER BY object) FROM telemetry GROUP BY device, service, t",
    "DROP TABLE telemetry",
    "INSERT INTO schema_version VALUES (4, extract(epoch FROM now()))",
)

DEVICES = ("hp-1", "hp-2")
ALARMS = 0x03


def schema_3(url):
    """A database as schema 3 left it, before its first open by this version."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE schema_version (version integer NOT NULL, "
                   "applied_at double precision NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (3, 0)")


def frames(seed, n=30):
    """Batches of frames (rows of one device, service and t) that meet each other: the
    same time again with the same values, other values, other objects; two
    frames of one time in one batch."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        batch = []
        for _ in range(rnd.randrange(1, 5)):
            dev, sid, t = rnd.choice(DEVICES), rnd.choice((HP, ALARMS)), T0 + rnd.randrange(6)
            objs = rnd.sample((1, 2, 3, 8, 9), rnd.randrange(1, 4))
            batch.append([(dev, sid, o, t, rnd.choice((o * 10, o * 10 + 1, 1e20, "x")))
                          for o in objs])
        out.append(batch)
    return out


async def answers(url, seed, refuse):
    """(per batch: new values, or the frames refused; the history of every object)."""
    s = await open_store(url)
    try:
        for d in DEVICES:
            await add_device(s, d)
        got = []
        for b in frames(seed):
            if refuse:
                got.append(await s.add_telemetry_frames(b))
            else:
                got.append(await s.add_telemetry([r for fr in b for r in fr]))
        history = {(d, sid, o): await s.history(d, sid, o)
                   for d in DEVICES for sid in (HP, ALARMS) for o in (1, 2, 3, 8, 9)}
        return got, history
    finally:
        await s.close()


async def on_sqlite(answers, *args):
    """answers(url, *args) on a fresh SQLite file: what PostgreSQL is compared with."""
    tmp = tempfile.mkdtemp(prefix="spot-frames-")
    try:
        return await answers("sqlite://" + os.path.join(tmp, "bridge.db"), *args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def forget(url, devices):
    """Delete the devices and their telemetry, so that the next seed starts from none."""
    s = await open_store(url)
    try:
        for d in devices:
            assert await s.delete_device(d, "op", T0)
    finally:
        await s.close()


@pg_test
async def test_postgresql_keeps_one_history_row_per_frame(url):
    s = await open_store(url)
    try:
        assert s.frames and s.partitioned
        await add_device(s)
        await add_device(s, "hp-2")
        rows = [(d, HP, o, T0, o) for d in ("hp-1", "hp-2") for o in range(1, 10)]
        assert await s.add_telemetry(rows) == 18
        assert await rows_in(s, "telemetry_frame") == 2
        assert await rows_in(s, "telemetry") == 18       # readers: one row per value
        assert await s.history("hp-2", HP, 9) == [(T0, 9)]
    finally:
        await s.close()


@pg_test
async def test_postgresql_history_per_frame_counts_and_answers_as_sqlite_does(url):
    for seed in (1, 2, 3):
        got = await answers(url, seed, refuse=False)
        assert got == await on_sqlite(answers, seed, False), seed
        s = await open_store(url)
        try:
            for d in DEVICES:
                assert await s.delete_device(d, "op", T0)
            assert await rows_in(s, "telemetry_frame") == 0
        finally:
            await s.close()


@pg_test
async def test_postgresql_history_per_frame_refuses_the_frames_sqlite_refuses(url):
    for seed in (4, 5, 6):
        got = await answers(url, seed, refuse=True)
        assert any(True in refused for refused in got[0])      # the rule was exercised
        assert got == await on_sqlite(answers, seed, True), seed
        await forget(url, DEVICES)


@pg_test
async def test_a_frame_adding_objects_to_a_stored_time_is_stored_beside_them(url):
    s = await open_store(url)
    try:
        await add_device(s)
        assert await s.add_telemetry_frames([[("hp-1", HP, 1, T0, 10), ("hp-1", HP, 2, T0, 20)]]) \
            == [False]
        assert await s.add_telemetry_frames([[("hp-1", HP, 2, T0, 20), ("hp-1", HP, 3, T0, 30)]]) \
            == [False]
        assert await rows_in(s, "telemetry_frame") == 1
        assert [await s.history("hp-1", HP, o) for o in (1, 2, 3)] == [
            [(T0, 10)], [(T0, 20)], [(T0, 30)]]
    finally:
        await s.close()


@pg_test
async def test_postgresql_retention_counts_the_values_of_the_frames_it_drops(url):
    s = await open_store(url)
    try:
        await add_device(s)
        day = T0 // DAY * DAY
        for k in range(3):
            await s.add_telemetry([("hp-1", HP, o, day + k * DAY + i, k)
                                   for i in range(2) for o in (1, 2, 3)])
        cut = day + 2 * DAY + 1
        assert await s.prune_telemetry(cut) == 6 + 6 + 3
        assert (day, day + DAY) not in await partitions(s)
        assert await s.history("hp-1", HP, 2) == [(cut, 2)]
    finally:
        await s.close()


@pg_test
async def test_a_schema_3_postgresql_database_keeps_one_history_row_per_value(url):
    schema_3(url)
    s = await open_store(url)
    try:
        assert await s.schema_version() == 3 and s.partitioned and not s.frames
        await add_device(s)
        assert await s.add_telemetry([("hp-1", HP, o, T0, o) for o in (1, 2, 3)]) == 3
        assert await rows_in(s, "telemetry") == 3
        assert await rows_in(s, "telemetry_frame") == 0
        assert await s.add_telemetry_frames([[("hp-1", HP, 1, T0, 5)]]) == [True]
    finally:
        await s.close()


@pg_test
async def test_the_documented_step_moves_history_to_one_row_per_frame(url):
    import psycopg
    schema_3(url)
    s = await open_store(url)
    await add_device(s)
    day = T0 // DAY * DAY
    for k in range(2):                         # two day partitions
        await s.add_telemetry([("hp-1", HP, o, day + k * DAY + i, o * 10 + i)
                               for i in range(3) for o in (3, 1, 2)])
    await s.add_telemetry([("hp-1", ALARMS, 2, 1000.0, 1)])    # the default partition
    before = {o: await s.history("hp-1", HP, o) for o in (1, 2, 3)}
    parts = await partitions(s)
    await s.close()
    with psycopg.connect(url) as db:          # one transaction
        for stmt in MIGRATE_HISTORY:
            db.execute(stmt)
    s = await open_store(url)
    try:
        assert s.frames and await s.schema_version() == 4
        assert await rows_in(s, "telemetry_frame") == 6 + 1
        assert {o: await s.history("hp-1", HP, o) for o in (1, 2, 3)} == before
        assert await s.history("hp-1", ALARMS, 2) == [(1000, 1)]
        assert await partitions(s) == parts
        assert await s.add_telemetry_frames([[("hp-1", HP, 1, day, 99)],
                                             [("hp-1", HP, 1, day + 9, 1)]]) == [True, False]
        assert await s.prune_telemetry(day + DAY) == 9 + 1 + 1
        assert await s.history("hp-1", HP, 1) == before[1][3:]
    finally:
        await s.close()


def notifies(seed, n=20):
    """Batches of one frame per device and service (the usual batch), times that go
    back now and then (a late frame) and sets of objects that change."""
    rnd = random.Random(seed)
    def frame(d, sid, t):
        return [(d, sid, o, t, rnd.randrange(-99, 99))
                for o in rnd.sample((1, 2, 3, 8, 9), rnd.randrange(1, 6))]
    return [[frame(d, sid, T0 + rnd.randrange(40)) for d in DEVICES for sid in (HP, ALARMS)]
            for _ in range(n)]


async def latest_answers(url, seed):
    s = await open_store(url)
    try:
        for d in DEVICES:
            await add_device(s, d)
        got = []
        for b in notifies(seed):
            got.append((await s.add_telemetry_frames(b),
                        [await s.latest(d) for d in DEVICES]))   # after each batch
        return got
    finally:
        await s.close()


@pg_test
async def test_latest_values_taken_from_the_frames_just_stored_answer_as_sqlite_does(url):
    for seed in (7, 8):
        want = await on_sqlite(latest_answers, seed)
        assert await latest_answers(url, seed) == want, seed
        await forget(url, DEVICES)
