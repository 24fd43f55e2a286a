"""PostgreSQL's usual telemetry batch in one statement per slice of devices (pg_ingest).

A batch of one frame per device goes in as slices, each one INSERT of its frames
and upsert of their latest values, the next slice built meanwhile. What a batch
leaves is what the path before leaves (the history of every object, the latest
values, their keys), SQLite's answers too; a batch that fails part way leaves
nothing of itself.
"""
import pytest

from spot.cloud_bridge import pg_ingest
from spot.cloud_bridge.store import InvalidValue, UnknownDevice, open_store

from test_store import HP, T0, pg_server  # noqa: F401
from test_store_batches import pg_test, rows_in
from test_store_postgres_frames import on_sqlite
from test_store_postgres_latest_keys import wrong_keys

DEVICES = ["hp-%d" % i for i in range(7)]
OBJECTS = (1, 2, 3, 8, 15)


@pytest.fixture(autouse=True)
def small_slices(monkeypatch):
    """Slices of 2 devices: a 7-device batch takes 4 statements."""
    monkeypatch.setattr(pg_ingest, "SLICE_DEVICES", 2)


def batch(t, devices=DEVICES, late=()):
    """One frame from each device at t (devices in `late` at t - 200), in an order
    other than the devices' (slices are cut in device order)."""
    return [(d, HP, o, t - 200 if d in late else t, k * 100 + o + t % 97)
            for k, d in reversed(list(enumerate(devices))) for o in OBJECTS]


def counting_statements(monkeypatch):
    """The list each slice statement run by pg_ingest is appended to."""
    seen = []
    run = pg_ingest.run_overlap

    async def counted(cur, stmt, offload):
        if stmt.sql == pg_ingest.UPSERT_FRAMES:
            seen.append(stmt)
        return await run(cur, stmt, offload)
    monkeypatch.setattr("spot.cloud_bridge.store_postgres.run_overlap", counted)
    return seen


async def fleet_store(url):
    """A store with every device of DEVICES registered and batch(T0) stored."""
    s = await open_store(url)
    try:
        for d in DEVICES:
            await s.upsert_device(d, [[HP, 1, 0]], [], 0, T0)
        await s.add_telemetry(batch(T0))
        return s
    except BaseException:
        await s.close()
        raise


async def stored(url, batches, fast=True):
    """(values stored per batch, every object's history, latest values) after `batches`;
    fast False: each batch by the path before (telemetry_frame's row type unused)."""
    s = await open_store(url)
    try:
        for d in DEVICES:
            await s.upsert_device(d, [[HP, 1, 0]], [], 0, T0)
        got = []
        for b in batches:
            if not fast:
                s._frame_rowtype = 0
            got.append(await s.add_telemetry(b))
        history = {(d, o): await s.history(d, HP, o) for d in DEVICES for o in OBJECTS}
        return got, history, [await s.latest(d) for d in DEVICES]
    finally:
        await s.close()


BATCHES = [batch(T0), batch(T0 + 300), batch(T0 + 600, late=("hp-2", "hp-5")),
           batch(T0 + 900, DEVICES[1:6]), batch(T0 + 1200)]


@pg_test
async def test_a_batch_in_slices_leaves_what_the_path_before_leaves(url):
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE DATABASE before_slices")
    before = url.rsplit("/", 1)[0] + "/before_slices"
    try:
        now = await stored(url, BATCHES)
        assert now == await stored(before, BATCHES, fast=False)
        assert now == await on_sqlite(stored, BATCHES)
        assert await wrong_keys(url) == 0
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("DROP DATABASE before_slices WITH (FORCE)")


def test_the_usual_batch_takes_one_statement_per_slice(pg_server, monkeypatch):  # noqa: F811
    seen = counting_statements(monkeypatch)

    @pg_test
    async def run(url):
        got, _, latest = await stored(url, BATCHES[:2])
        assert got == [35, 35]
        assert latest[6][(HP, 15)] == (6 * 100 + 15 + (T0 + 300) % 97, T0 + 300)
    run(pg_server)
    # the first batch makes its day's partitions by the path before; the second: 4 slices
    assert len(seen) == 4


@pg_test
async def test_a_frame_stored_already_in_a_later_slice_leaves_the_answers_sqlite_gives(url):
    # hp-6 (the last slice) sends its frame of T0 + 300 again among new frames: the
    # slices stored before it are rolled back and the path before stores the batch
    again = [r for r in BATCHES[1] if r[0] == "hp-6"]
    batches = BATCHES[:2] + [batch(T0 + 600, DEVICES[:6]) + again]
    got = await stored(url, batches)
    assert got == await on_sqlite(stored, batches)
    assert got[0] == [35, 35, 30]


@pg_test
async def test_a_batch_failing_in_a_later_slice_stores_nothing_of_it(url):
    s = await fleet_store(url)
    try:
        await s.add_telemetry(batch(T0 + 300))
        frames_before = await rows_in(s, "telemetry_frame")
        latest_before = [await s.latest(d) for d in DEVICES]
        build = pg_ingest.frame_records
        calls = []

        def failing(frames, rowtype):
            calls.append(len(frames))
            if len(calls) == 3:       # the third slice's records: two slices stored
                raise InvalidValue("a test's failure")
            return build(frames, rowtype)
        pg_ingest.frame_records = failing
        try:
            with pytest.raises(InvalidValue):
                await s.add_telemetry(batch(T0 + 600))
        finally:
            pg_ingest.frame_records = build
        assert len(calls) == 3
        assert await rows_in(s, "telemetry_frame") == frames_before
        assert [await s.latest(d) for d in DEVICES] == latest_before
        assert await s.add_telemetry(batch(T0 + 600)) == 35     # and it goes in after
    finally:
        await s.close()


@pg_test
async def test_a_batch_with_an_unknown_device_is_refused_whole(url):
    s = await fleet_store(url)
    try:
        frames_before = await rows_in(s, "telemetry_frame")
        with pytest.raises(UnknownDevice) as e:
            await s.add_telemetry(batch(T0 + 300, DEVICES + ["hp-x"]))
        assert e.value.devices == ["hp-x"]
        assert await rows_in(s, "telemetry_frame") == frames_before
    finally:
        await s.close()


@pg_test
async def test_a_bad_row_in_a_later_slice_is_named_by_its_place_in_the_batch(url):
    s = await fleet_store(url)
    try:
        frames_before = await rows_in(s, "telemetry_frame")
        rows = batch(T0 + 300)
        rows[3] = ("hp-6", HP, 8, "soon", 1)      # hp-6: the last slice
        with pytest.raises(InvalidValue, match="telemetry row 3 time"):
            await s.add_telemetry(rows)
        assert await rows_in(s, "telemetry_frame") == frames_before
    finally:
        await s.close()


def test_a_batch_with_a_device_in_two_frames_goes_the_path_before(pg_server, monkeypatch):  # noqa: F811
    seen = counting_statements(monkeypatch)
    two = batch(T0 + 300) + [("hp-3", HP, 1, T0 + 301, 5)]

    @pg_test
    async def run(url):
        got = await stored(url, [batch(T0), two])
        assert got == await on_sqlite(stored, [batch(T0), two])
        assert got[0] == [35, 36]
    run(pg_server)
    assert seen == []
