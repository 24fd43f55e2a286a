"""SQLite history one row per frame (cloud_bridge/sqlite_frames.py, schema 2).

What the readers see is tested on both stores in tests/test_store.py; here what
is particular to the layout: one row per frame, values read back exactly
through the view, a second frame at a stored time merged by spec 3.1's rule,
retention and device deletion on the frame table, history reads by the frame
key, and a database of schema 1 (one row per value) migrated when opened (or left as it
was when the migration fails), on a real file made with that schema's statements.
"""
import asyncio
import math
import sqlite3

import pytest

from spot.cloud_bridge import sqlite_frames, sqlite_latest, store_sqlite
from spot.cloud_bridge.store import StoreError, open_store

T0 = 1700000000
HP = 0x10


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def frame(dev, t, values, sid=HP):
    return [(dev, sid, oid, t, v) for oid, v in values.items()]


async def opened(path, devices=("hp-1",)):
    s = await open_store("sqlite://" + str(path))
    for dev in devices:
        await s.upsert_device(dev, [[2, 1, 0], [HP, 1, 0]], [], 0, T0)
    return s


def frame_rows(path):
    with sqlite3.connect(str(path)) as db:
        return db.execute("SELECT device, service, t, vals FROM telemetry_frame "
                          "ORDER BY device, service, t").fetchall()


def test_a_notify_is_stored_as_one_history_row(tmp_path):
    async def main():
        s = await opened(tmp_path / "b.db")
        try:
            values = {oid: 1000 + oid for oid in range(1, 22)}
            assert await s.add_telemetry_frames([frame("hp-1", T0, values)]) == [False]
            for oid, v in values.items():
                assert await s.history("hp-1", HP, oid) == [(T0, v)]
        finally:
            await s.close()
    run(main())
    rows = frame_rows(tmp_path / "b.db")
    assert len(rows) == 1 and rows[0][:3] == ("hp-1", HP, float(T0))


def test_values_needing_json_escapes_read_back_exactly(tmp_path):
    values = {1: 'say "hi" \\ back', 2: "é\n\t", 3: 0.1, 4: 1e20, 5: -0.0, 6: b"\x00\xff",
              7: {1: [True, None]}, 8: float("nan"), 9: -(2 ** 70), 10: 2 ** 63 - 1}

    async def main():
        s = await opened(tmp_path / "b.db")
        try:
            assert await s.add_telemetry_frames([frame("hp-1", T0, values)]) == [False]
            assert await s.add_telemetry(frame("hp-1", T0 + 1, values)) == len(values)
            for t in (T0, T0 + 1):
                for oid, v in values.items():
                    (got_t, got), = await s.history("hp-1", HP, oid, t_from=t, t_to=t + 1)
                    if isinstance(v, float) and math.isnan(v):
                        assert math.isnan(got)
                    else:
                        assert got == v and type(got) is type(v)
                        if isinstance(v, float):
                            assert math.copysign(1, got) == math.copysign(1, v)
        finally:
            await s.close()
    run(main())


def test_the_latest_values_of_a_batch_of_frames_are_those_of_its_rows_one_by_one(tmp_path):
    values = {1: 'say "hi" \\ back', 2: "é\n\t", 3: 0.1, 4: 1e20, 5: -0.0, 6: b"\x00\xff",
              7: {1: [True, None]}, 8: 2 ** 63 - 1, 9: -(2 ** 70), 10: 1007, 11: False}
    ints = {1: 5, 2: -7, 3: 2 ** 70}

    def latest_rows(path):
        with sqlite3.connect(str(path)) as db:
            return db.execute("SELECT device, service, object, t, value, typeof(value) "
                              "FROM latest ORDER BY device, service, object").fetchall()

    async def main(path, frames_path):
        s = await opened(path, ("hp-1", "hp-2"))
        try:
            if frames_path:   # newest first in one batch, then an older frame alone
                assert await s.add_telemetry_frames([
                    frame("hp-1", T0 + 60, values), frame("hp-2", T0, ints),
                    frame("hp-1", T0, {1: "old", 10: 1}), frame("hp-2", T0 + 60, {2: 8})]) \
                    == [False] * 4
                assert await s.add_telemetry_frames([frame("hp-2", T0 + 30, {1: 6, 2: 9})]) \
                    == [False]
            else:             # the same through add_telemetry: one latest row per value
                for rows in (frame("hp-1", T0 + 60, values) + frame("hp-2", T0, ints)
                             + frame("hp-1", T0, {1: "old", 10: 1})
                             + frame("hp-2", T0 + 60, {2: 8}),
                             frame("hp-2", T0 + 30, {1: 6, 2: 9})):
                    await s.add_telemetry(rows)
            latest = await s.latest("hp-1")
            assert {k[1]: v for k, v in latest.items()} == {
                o: (v, T0 + 60) for o, v in values.items()}
            assert await s.latest("hp-2") == {(HP, 1): (6, T0 + 30), (HP, 2): (8, T0 + 60),
                                              (HP, 3): (2 ** 70, T0)}
        finally:
            await s.close()
    run(main(tmp_path / "frames.db", True))
    run(main(tmp_path / "rows.db", False))
    assert latest_rows(tmp_path / "frames.db") == latest_rows(tmp_path / "rows.db")


def test_a_second_frame_at_a_stored_time_adds_its_new_objects_and_keeps_stored_values(tmp_path):
    async def main():
        s = await opened(tmp_path / "b.db")
        try:
            await s.add_telemetry_frames([frame("hp-1", T0, {1: 10, 2: 20})])
            refused = await s.add_telemetry_frames([frame("hp-1", T0, {2: 20, 3: 30}),
                                                    frame("hp-1", T0, {1: 11})])
            assert refused == [False, True]
            got = {oid: await s.history("hp-1", HP, oid) for oid in (1, 2, 3)}
            assert got == {1: [(T0, 10)], 2: [(T0, 20)], 3: [(T0, 30)]}
        finally:
            await s.close()
    run(main())
    assert len(frame_rows(tmp_path / "b.db")) == 1


def test_a_batch_of_more_frames_than_one_statement_takes_refuses_only_the_conflicting_one(
        tmp_path):
    devices = ["hp-%03d" % i for i in range(300)]

    async def main():
        s = await opened(tmp_path / "b.db", devices)
        try:
            await s.add_telemetry_frames([frame(devices[299], T0, {1: 1})])
            batch = [frame(dev, T0, {1: i, 2: i}) for i, dev in enumerate(devices)]
            refused = await s.add_telemetry_frames(batch)
            assert refused == [False] * 299 + [True]
            assert await s.history(devices[0], HP, 2) == [(T0, 0)]
            assert await s.history(devices[298], HP, 2) == [(T0, 298)]
            assert await s.history(devices[299], HP, 1) == [(T0, 1)]
            assert await s.history(devices[299], HP, 2) == []
        finally:
            await s.close()
    run(main())
    assert len(frame_rows(tmp_path / "b.db")) == 300


def test_add_telemetry_counts_only_values_not_stored_before(tmp_path):
    async def main():
        s = await opened(tmp_path / "b.db")
        try:
            assert await s.add_telemetry(frame("hp-1", T0, {1: 10, 2: 20})) == 2
            assert await s.add_telemetry(frame("hp-1", T0, {1: 99, 3: 30})
                                         + frame("hp-1", T0 + 1, {1: 12})) == 2
            assert await s.history("hp-1", HP, 1) == [(T0, 10), (T0 + 1, 12)]
            assert await s.history("hp-1", HP, 3) == [(T0, 30)]
        finally:
            await s.close()
    run(main())


def test_retention_deletes_older_frames_and_counts_their_values(tmp_path):
    async def main():
        s = await opened(tmp_path / "b.db")
        try:
            await s.add_telemetry_frames([frame("hp-1", T0 + k, {1: k, 2: k}) for k in range(4)])
            assert await s.prune_telemetry(T0 + 2) == 4
            assert await s.history("hp-1", HP, 1) == [(T0 + 2, 2), (T0 + 3, 3)]
            assert (await s.latest("hp-1"))[(HP, 1)] == (3, T0 + 3)
        finally:
            await s.close()
    run(main())


def test_deleting_a_device_deletes_its_frames_only(tmp_path):
    async def main():
        s = await opened(tmp_path / "b.db", ("hp-1", "hp-2"))
        try:
            await s.add_telemetry_frames([frame("hp-1", T0, {1: 1}), frame("hp-2", T0, {1: 2})])
            assert await s.delete_device("hp-1", "op", T0 + 1)
            assert await s.history("hp-2", HP, 1) == [(T0, 2)]
        finally:
            await s.close()
    run(main())
    assert [r[0] for r in frame_rows(tmp_path / "b.db")] == ["hp-2"]


def test_a_delete_on_the_view_deletes_the_frames_it_matches(tmp_path):
    run(_close(opened(tmp_path / "b.db")))
    with sqlite3.connect(str(tmp_path / "b.db")) as db:
        db.execute("INSERT INTO telemetry_frame VALUES ('hp-1', 16, 1.0, '{\"1\":\"5\"}'), "
                   "('hp-1', 16, 2.0, '{\"1\":\"6\",\"2\":\"7\"}')")
        db.execute("DELETE FROM telemetry WHERE t > 1.5")
        assert db.execute("SELECT object, t, value FROM telemetry").fetchall() == [(1, 1.0, "5")]


async def _close(opening):
    s = await opening
    await s.close()


@pytest.mark.parametrize("bounds, order", [
    (" AND t >= ? AND t < ?", " ORDER BY t LIMIT ?"),
    ("", " ORDER BY t DESC LIMIT ?"),
])
def test_a_series_history_is_read_by_the_frame_key_in_time_order(tmp_path, bounds, order):
    """The statement history() runs (store.Store.history) on the view."""
    run(_close(opened(tmp_path / "b.db")))
    sql = ("SELECT t, value FROM telemetry WHERE device = ? AND service = ? AND object = ?"
           + bounds + order)
    params = ("hp-1", HP, 1) + ((1.0, 2.0) if bounds else ()) + (10,)
    with sqlite3.connect(str(tmp_path / "b.db")) as db:
        plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
    assert plan[0].startswith("SEARCH f USING PRIMARY KEY (device=? AND service=?")
    assert ("t>? AND t<?" in plan[0]) == bool(bounds)
    assert not any("TEMP B-TREE" in p for p in plan)   # no sort: the key's order


# ---------------------------------------------------------- schema 1 -> 2

# schema 1's history table and its writer's statement, as the store made them
SCHEMA_1_TELEMETRY = """CREATE TABLE IF NOT EXISTS telemetry (
        device TEXT NOT NULL,
        service INTEGER NOT NULL,
        object INTEGER NOT NULL,
        t REAL NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (device, service, object, t)) WITHOUT ROWID"""
SCHEMA_1_INSERT = ("INSERT OR IGNORE INTO telemetry (device, service, object, t, value) "
                   "VALUES (?,?,?,?,?)")
# the latest values' table of schema 1 and 2 (one row per value), and its writer
SCHEMA_2_LATEST = (
    """CREATE TABLE latest (
        device TEXT NOT NULL,
        service INTEGER NOT NULL,
        object INTEGER NOT NULL,
        t REAL NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (device, service, object)) WITHOUT ROWID""",
    "CREATE INDEX latest_object ON latest (object, service)",
)
SCHEMA_1_LATEST = ("INSERT INTO latest (device, service, object, t, value) VALUES (?,?,?,?,?) "
                   "ON CONFLICT (device, service, object) DO UPDATE "
                   "SET t = excluded.t, value = excluded.value WHERE latest.t < excluded.t")
OLD_ROWS = [("hp-1", HP, 1, T0, 1234), ("hp-1", HP, 2, T0, "0.25"),
            ("hp-1", HP, 1, T0 + 60, 1240), ("hp-1", HP, 3, T0 + 60, '"on \\"x\\""'),
            ("hp-2", HP, 1, T0, -5), ("hp-2", 4, 1, T0, 7)]


def schema_1_file(path):
    """A database file as the schema-1 store left it: its statements, its rows."""
    with sqlite3.connect(str(path)) as db:
        for stmt in store_sqlite.DDL:
            if stmt is not sqlite_frames.FRAME_TABLE and stmt not in sqlite_latest.TABLES:
                db.execute(stmt)
        for stmt in (SCHEMA_1_TELEMETRY,) + SCHEMA_2_LATEST:
            db.execute(stmt)
        db.execute("INSERT INTO schema_version VALUES (1, 0)")
        for dev in ("hp-1", "hp-2"):
            db.execute("INSERT INTO devices VALUES (?, '[[16,1,0]]', '[]', 0, NULL, ?, ?, "
                       "'online', ?)", (dev, T0, T0, T0))
        for row in OLD_ROWS:
            db.execute(SCHEMA_1_INSERT, row)
            db.execute(SCHEMA_1_LATEST, row)


def test_a_schema_1_database_is_migrated_to_frames_when_opened(tmp_path):
    path = tmp_path / "old.db"
    schema_1_file(path)

    async def main():
        s = await open_store("sqlite://" + str(path))
        try:
            assert await s.schema_version() == 3
            assert await s.history("hp-1", HP, 1) == [(T0, 1234), (T0 + 60, 1240)]
            assert await s.history("hp-1", HP, 2) == [(T0, 0.25)]
            assert await s.history("hp-1", HP, 3) == [(T0 + 60, 'on "x"')]
            assert await s.history("hp-2", 4, 1) == [(T0, 7)]
            assert await s.latest("hp-1") == {(HP, 1): (1240, T0 + 60), (HP, 2): (0.25, T0),
                                              (HP, 3): ('on "x"', T0 + 60)}
        finally:
            await s.close()
    run(main())
    with sqlite3.connect(str(path)) as db:
        kind = db.execute("SELECT type FROM sqlite_master WHERE name = 'telemetry'").fetchone()
        assert kind == ("view",)
    assert len(frame_rows(path)) == 4


def test_a_migrated_frame_takes_spec_3_1s_rule(tmp_path):
    path = tmp_path / "old.db"
    schema_1_file(path)

    async def main():
        s = await open_store("sqlite://" + str(path))
        try:
            refused = await s.add_telemetry_frames([frame("hp-1", T0, {1: 1234, 4: 9}),
                                                    frame("hp-1", T0 + 60, {1: 1})])
            assert refused == [False, True]
            assert await s.history("hp-1", HP, 4) == [(T0, 9)]
            assert await s.history("hp-1", HP, 1) == [(T0, 1234), (T0 + 60, 1240)]
        finally:
            await s.close()
    run(main())


def test_reopening_a_migrated_database_changes_nothing(tmp_path):
    path = tmp_path / "old.db"
    schema_1_file(path)
    run(_close(open_store("sqlite://" + str(path))))
    before = frame_rows(path)
    run(_close(open_store("sqlite://" + str(path))))
    assert frame_rows(path) == before
    with sqlite3.connect(str(path)) as db:
        assert db.execute("SELECT version FROM schema_version ORDER BY version").fetchall() \
            == [(1,), (2,), (3,)]


def test_a_migration_that_fails_leaves_the_schema_1_database_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    schema_1_file(path)
    # the move's last step fails, after the frames were written and the table dropped
    monkeypatch.setattr(sqlite_frames, "MIGRATE", sqlite_frames.MIGRATE + ("SELECT no_such()",))
    with pytest.raises(StoreError, match="no_such"):
        run(_close(open_store("sqlite://" + str(path))))
    with sqlite3.connect(str(path)) as db:
        kind = db.execute("SELECT type FROM sqlite_master WHERE name = 'telemetry'").fetchone()
        assert kind == ("table",)
        assert db.execute("SELECT count(*) FROM telemetry").fetchone() == (len(OLD_ROWS),)
        assert db.execute("SELECT max(version) FROM schema_version").fetchone() == (1,)
        frames = db.execute("SELECT name FROM sqlite_master WHERE name = 'telemetry_frame'")
        assert frames.fetchone() is None
