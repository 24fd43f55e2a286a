"""PostgreSQL's latest values: one row per device (schema 3), the layout before (one
row per object, schema 1 and 2) still served, and the documented migration.

Whatever the layout, latest() gives the answers SQLite gives for the same
batches: per object the value with the greatest t, the stored one on equal t.
"""
import os
import random
import shutil
import tempfile

from spot.cloud_bridge import store as S
from spot.cloud_bridge import store_fleet as F
from spot.cloud_bridge.store import open_store

from test_store import HP, T0, add_device, pg_server  # noqa: F401
from test_store_batches import pg_test, rows_in

SCHEMA_2_LATEST = (   # what schema 1 and 2 made for the latest values
    "CREATE TABLE schema_version (version integer NOT NULL, applied_at double precision NOT NULL)",
    "INSERT INTO schema_version VALUES (2, 0)",
    "CREATE TABLE latest (device text NOT NULL, service smallint NOT NULL, "
    "object integer NOT NULL, t double precision NOT NULL, value json NOT NULL, "
    "PRIMARY KEY (device, service, object)) WITH (fillfactor = 50)",
)

# the step docs/benchmarks.md gives to move a schema-2 database's latest values
# to one row per device (every bridge stopped, after this version opened it once)
MIGRATE_LATEST = (
    "INSERT INTO latest_device (device, points, fleet, alarm) "
    "SELECT device, points, spot_latest_fleet(points), spot_latest_alarm(points) "
    "FROM (SELECT device, array_agg(ROW(service, object, t, value)::latest_point "
    "ORDER BY service, object) AS points FROM latest GROUP BY device) x",
    "DROP TABLE latest",
    "INSERT INTO schema_version VALUES (3, extract(epoch FROM now()))",
)

DEVICES = ("hp-1", "hp-2", "hp-3")


def schema_2(url):
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        for stmt in SCHEMA_2_LATEST:
            db.execute(stmt)


def batches(seed, n=40):
    """Telemetry batches that overlap in time and objects: late rows, equal times,
    objects a device has not sent before, several rows of one object per batch."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        out.append([(rnd.choice(DEVICES), HP, rnd.choice((1, 2, 8, 9, 15)),
                     T0 + rnd.randrange(30), rnd.choice((rnd.randrange(-500, 500),
                                                          rnd.random() * 100, 1e20, [1, True])))
                    for _ in range(rnd.randrange(1, 12))])
    return out


async def answers(url, seed):
    """(new rows per batch, {device: latest()}) after the batches of `seed`."""
    s = await open_store(url)
    try:
        for d in DEVICES:
            await add_device(s, d)
        counts = [await s.add_telemetry(b) for b in batches(seed)]
        return counts, {d: await s.latest(d) for d in DEVICES}
    finally:
        await s.close()


async def sqlite_answers(seed):
    """answers() of the same batches on a fresh SQLite store."""
    tmp = tempfile.mkdtemp(prefix="spot-latest-")
    try:
        return await answers("sqlite://" + os.path.join(tmp, "bridge.db"), seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def latest_rows(s):
    def script():
        r = yield S.Q("SELECT count(*) FROM latest", ())
        return r.rows[0][0]
    return await s._run(script, write=False)


@pg_test
async def test_postgresql_keeps_one_latest_row_per_device(url):
    s = await open_store(url)
    try:
        assert s.latest_per_device and await s.schema_version() == 5
        await add_device(s)
        await add_device(s, "hp-2")
        rows = [(d, HP, o, T0, o) for d in ("hp-1", "hp-2") for o in range(1, 10)]
        assert await s.add_telemetry(rows) == 18
        assert await rows_in(s, "latest_device") == 2
        assert await latest_rows(s) == 18          # readers: one row per object
    finally:
        await s.close()


@pg_test
async def test_postgresql_latest_values_per_device_answer_as_sqlite_does(url):
    for seed in (1, 2, 3):
        assert await answers(url, seed) == await sqlite_answers(seed), seed
        s = await open_store(url)
        try:
            for d in DEVICES:
                assert await s.delete_device(d, "op", T0)
            assert await latest_rows(s) == 0 and await rows_in(s, "latest_device") == 0
        finally:
            await s.close()


@pg_test
async def test_a_postgresql_database_with_one_latest_row_per_object_keeps_working(url):
    schema_2(url)
    got = await answers(url, 4)
    s = await open_store(url)
    try:
        assert await s.schema_version() == 2 and s.latest_per_device is False
        assert await rows_in(s, "latest_device") == 0
        assert await latest_rows(s) == sum(len(v) for v in got[1].values())
    finally:
        await s.close()
    assert got == await sqlite_answers(4)


@pg_test
async def test_the_documented_step_moves_latest_values_to_one_row_per_device(url):
    import psycopg
    schema_2(url)
    s = await open_store(url)
    await add_device(s)
    await s.add_telemetry([("hp-1", HP, o, T0 + o, o * 10) for o in range(1, 6)] +
                          [("hp-1", HP, 9, T0, 1e20), ("hp-1", 0x03, 2, T0, 1)])
    await add_device(s, "hp-2")
    await s.add_telemetry([("hp-2", HP, 1, T0, 700), ("hp-2", 0x03, 2, T0, 0)])
    before = await s.latest("hp-1")
    totals = await F.fleet_totals(s, T0 + 10)
    await s.close()
    with psycopg.connect(url) as db:          # one transaction
        for stmt in MIGRATE_LATEST:
            db.execute(stmt)
    s = await open_store(url)
    try:
        assert s.latest_per_device and await s.schema_version() == 3
        assert await s.latest("hp-1") == before
        # the columns the fleet readers use are filled by the step too
        assert [d.id for d in await s.list_devices_page(alarm=True)] == ["hp-1"]
        assert await F.fleet_totals(s, T0 + 10) == totals
        assert type((await s.latest("hp-1"))[(HP, 9)][0]) is float
        await s.add_telemetry([("hp-1", HP, 1, T0 + 100, -1), ("hp-1", HP, 2, T0, 7)])
        assert await s.latest("hp-1") == {**before, (HP, 1): (-1, T0 + 100)}
    finally:
        await s.close()


@pg_test
async def test_postgresql_a_whole_frame_again_at_the_same_time_keeps_the_stored_values(url):
    s = await open_store(url)
    try:
        await add_device(s)
        await s.add_telemetry([("hp-1", HP, o, T0, o) for o in range(1, 10)])
        assert await s.add_telemetry([("hp-1", HP, o, T0, -o) for o in range(1, 10)]) == 0
        assert await s.latest("hp-1") == {(HP, o): (o, T0) for o in range(1, 10)}
        # one object at its stored time, the rest newer: that one stays as stored
        await s.add_telemetry([("hp-1", HP, o, T0 + (o > 1), 100 + o) for o in range(1, 10)])
        assert await s.latest("hp-1") == {(HP, o): ((1, T0) if o == 1 else (100 + o, T0 + 1))
                                          for o in range(1, 10)}
    finally:
        await s.close()


METER, BAT, ALARMS = 0x14, 0x12, 0x03

# (batch, devices in alarm after it): alarms set, cleared, and late rows that
# must not bring an alarm back (older than the value that cleared it)
ALARM_STEPS = (
    ([("m-1", METER, 22, T0, [T0, 7, 2, True]), ("m-1", METER, 1, T0, 300)], ["m-1"]),
    ([("hp-1", ALARMS, 2, T0, 1), ("hp-2", ALARMS, 2, T0, 0), ("hp-1", HP, 1, T0, 2000),
      ("hp-2", HP, 1, T0 - 3600, 1500), ("hp-2", HP, 20, T0, 3000)], ["hp-1", "m-1"]),
    ([("m-1", METER, 22, T0 + 5, [T0, 7, 2, False]), ("hp-1", HP, 1, T0 + 5, 2100)],
     ["hp-1"]),
    ([("m-1", METER, 22, T0 + 3, [T0, 7, 2, True])], ["hp-1"]),          # late: stays clear
    ([("hp-1", ALARMS, 2, T0 + 5, 0), ("hp-2", ALARMS, 2, T0 + 5, 2.5),
      ("bat-1", BAT, 1, T0 + 5, -800), ("bat-1", BAT, 9, T0 + 5, 10000),
      ("bat-1", BAT, 23, T0 + 5, "full")], ["hp-2"]),
    ([("hp-2", ALARMS, 2, T0 + 4, 0), ("hp-1", ALARMS, 2, T0 + 6, 1e20)], ["hp-1", "hp-2"]),
)


async def fleet_answers(url):
    """After each of ALARM_STEPS: the device pages with and without an alarm; at the
    end the fleet figures and a point of the power series."""
    s = await open_store(url)
    try:
        for dev, sid in (("hp-1", HP), ("hp-2", HP), ("bat-1", BAT), ("m-1", METER)):
            await s.upsert_device(dev, [[2, 1, 0], [ALARMS, 1, 0], [sid, 1, 0]], [], 0, T0)
        pages = []
        for rows, _ in ALARM_STEPS:
            await s.add_telemetry(rows)
            pages.append(([d.id for d in await s.list_devices_page(alarm=True)],
                          [d.id for d in await s.list_devices_page(alarm=False)]))
        await F.sample_power(s, T0 + 10)
        return (pages, await F.fleet_totals(s, T0 + 10), await F.power_series(s, T0))
    finally:
        await s.close()


async def sqlite_fleet_answers():
    tmp = tempfile.mkdtemp(prefix="spot-latest-")
    try:
        return await fleet_answers("sqlite://" + os.path.join(tmp, "bridge.db"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pg_test
async def test_postgresql_alarm_filter_and_fleet_figures_per_device_answer_as_sqlite_does(url):
    got = await fleet_answers(url)
    assert [alarm for alarm, _ in got[0]] == [ids for _, ids in ALARM_STEPS]
    assert got[1]["power"] and got[2]
    assert got == await sqlite_fleet_answers()


@pg_test
async def test_postgresql_alarm_filter_on_a_schema_2_database_answers_as_sqlite_does(url):
    schema_2(url)
    got = await fleet_answers(url)
    assert [alarm for alarm, _ in got[0]] == [ids for _, ids in ALARM_STEPS]
    assert got == await sqlite_fleet_answers()


@pg_test
async def test_postgresql_alarm_rules_changed_are_applied_to_every_stored_device(url):
    import psycopg
    s = await open_store(url)
    await s.upsert_device("m-1", [[METER, 1, 0]], [], 0, T0)
    await s.add_telemetry([("m-1", METER, 22, T0, [T0, 7, 2, True])])
    assert [d.id for d in await s.list_devices_page(alarm=True)] == ["m-1"]
    await s.close()
    with psycopg.connect(url) as db:    # as an older version's rules left it
        db.execute("UPDATE latest_device SET fleet = '{}', alarm = NULL")
        db.execute("UPDATE latest_rules SET rules = 'older'")
    s = await open_store(url)
    try:
        assert [d.id for d in await s.list_devices_page(alarm=True)] == ["m-1"]
    finally:
        await s.close()
