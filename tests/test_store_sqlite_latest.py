"""SQLite latest values one row per device and service (cloud_bridge/sqlite_latest.py,
schema 3).

What the readers see is tested on both stores in tests/test_store.py and
tests/test_store_fleet.py; here what is particular to the layout, on real files:
the latest values of random batches (late frames, equal times, other objects,
other services, refused frames, frames at a time whose history was pruned) are
those schema 2's upsert of one row per value
gives for the same rows, on the view and on the fleet figures' table; a schema-2
database is migrated when opened, its latest values read back the same (or left
as they were when the migration fails); the fleet table follows this version's
rules; a device's deletion leaves none of its rows.
"""
import asyncio
import json
import random
import sqlite3

import pytest

from spot.cloud_bridge import sqlite_frames, sqlite_latest, store_sqlite
from spot.cloud_bridge.store import StoreError, open_store, value_text
from spot.cloud_bridge.store_fleet import fleet_totals

from test_store_sqlite_frames import SCHEMA_1_LATEST, SCHEMA_2_LATEST

T0 = 1700000000
HP = 0x10
ALARMS = 3
DEVICES = ("hp-1", "hp-2", "hp-3")

VIEW_ROWS = ("SELECT device, service, object, t, value, typeof(t), typeof(value) "
             "FROM latest ORDER BY device, service, object")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def frame(dev, t, values, sid=HP):
    return [(dev, sid, oid, t, v) for oid, v in values.items()]


async def opened(path, devices=DEVICES):
    s = await open_store("sqlite://" + str(path))
    for dev in devices:
        await s.upsert_device(dev, [[2, 1, 0], [HP, 1, 0]], [], 0, T0)
    return s


def schema_2(db):
    """Schema 2's latest table in an sqlite3 connection (the reference)."""
    for stmt in SCHEMA_2_LATEST:
        db.execute(stmt)


def apply_schema_2(db, rows):
    """Rows (device, service, object, t, value) through schema 2's upsert, in order."""
    for d, s, o, t, v in rows:
        db.execute(SCHEMA_1_LATEST, (d, s, o, float(t), value_text(v)))


def random_batch(rng):
    """Frames of a random batch: full frames in order, late ones, equal times, subsets
    of the objects in another order, the alarms service, a value twice at one time."""
    frames = []
    for _ in range(rng.randint(1, 6)):
        dev = rng.choice(DEVICES)
        t = T0 + rng.choice((0, 1, 2, 3, 5, 8)) + rng.choice((0, 0.1, 1 / 3))
        if rng.random() < 0.15:
            sid, objects = ALARMS, [2]
        else:
            sid = HP
            objects = list(range(1, 9)) + [20]
            if rng.random() < 0.4:
                objects = rng.sample(objects, rng.randint(1, len(objects)))
        values = {o: rng.choice((rng.randint(-3, 3), 0.5 * rng.randint(0, 4), "on",
                                 'q"x', None, [1, True])) for o in objects}
        frames.append(frame(dev, t, values, sid))
    return frames


def test_random_batches_leave_the_latest_values_schema_2_leaves(tmp_path):
    rng = random.Random(15)
    ref = sqlite3.connect(":memory:")
    schema_2(ref)

    async def main():
        s = await opened(tmp_path / "b.db")
        try:
            for n in range(120):
                batch = random_batch(rng)
                if n % 7 == 6:   # history gone, latest values kept: stored times come again
                    await s.prune_telemetry(T0 + 100)
                if n % 5 == 4:   # the generic path: every row taken
                    await s.add_telemetry([r for fr in batch for r in fr])
                    taken = batch
                else:
                    refused = await s.add_telemetry_frames(batch)
                    taken = [fr for fr, no in zip(batch, refused) if not no]
                apply_schema_2(ref, [r for fr in taken for r in fr])
                want = {}
                for d, sv, o, t, v in ref.execute("SELECT * FROM latest"):
                    want.setdefault(d, {})[(sv, o)] = (t, v)
                for dev in DEVICES:
                    got = {k: (t, value_text(v)) for k, (v, t) in (await s.latest(dev)).items()}
                    assert got == want.get(dev, {}), (n, dev)
        finally:
            await s.close()
    run(main())
    with sqlite3.connect(str(tmp_path / "b.db")) as db:
        assert db.execute(VIEW_ROWS).fetchall() == ref.execute(VIEW_ROWS).fetchall()
        fleet = "SELECT * FROM %s l WHERE " + sqlite_latest.FLEET_POINT + \
            " ORDER BY device, service, object"
        assert db.execute(fleet % "latest_fleet").fetchall() == ref.execute(
            fleet % "latest").fetchall()
        assert db.execute("SELECT count(*) FROM latest_fleet").fetchone()[0] > 0


def test_a_newer_subset_is_patched_in_and_the_values_it_lacks_keep_their_times(tmp_path):
    values = {o: 100 + o for o in range(1, 22)}
    t1 = T0 + 10 + 1 / 3   # a time 15 digits would not keep

    def row(db):
        (t, tv, keys), = db.execute("SELECT t, tv, keys FROM latest_frame").fetchall()
        return t, json.loads(tv), keys

    async def main(db):
        s = await opened(tmp_path / "b.db")
        try:
            for k in range(3):
                await s.add_telemetry_frames([frame("hp-1", T0 + k, values)])
            assert row(db) == (T0 + 2, {str(o): T0 + 2 for o in values},
                               ",".join(map(str, values)))
            await s.add_telemetry_frames([frame("hp-1", t1, {5: 7, 1: 8, 22: 9})])
            latest = await s.latest("hp-1")
            assert latest[(HP, 5)] == (7, t1) and latest[(HP, 22)] == (9, t1)
            assert latest[(HP, 6)] == (106, T0 + 2) and len(latest) == 22
            t, tv, keys = row(db)
            assert t == t1 and tv["5"] == t1 and tv["6"] == T0 + 2 and keys is None
            await s.add_telemetry_frames([frame("hp-1", t1 + 1, {6: 1})])
            latest = await s.latest("hp-1")
            assert latest[(HP, 5)] == (7, t1) and latest[(HP, 6)] == (1, t1 + 1)
            assert latest[(HP, 7)] == (107, T0 + 2)
            # a late frame: merged, the row written whole with its keys again
            await s.add_telemetry_frames([frame("hp-1", T0 + 5, {7: 0, 5: 0})])
            latest = await s.latest("hp-1")
            assert latest[(HP, 7)] == (0, T0 + 5) and latest[(HP, 5)] == (7, t1)
            assert row(db)[2].split(",")[:2] == ["7", "5"]
        finally:
            await s.close()
    run(_close(opened(tmp_path / "b.db", ())))
    with sqlite3.connect(str(tmp_path / "b.db")) as db:
        run(main(db))


def test_the_fleet_objects_kept_are_those_fleet_point_names():
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE l (service INTEGER, object INTEGER)")
    db.executemany("INSERT INTO l VALUES (?, ?)",
                   [(s, o) for s in range(256) for o in range(64)])
    in_sql = set(db.execute("SELECT service, object FROM l WHERE " + sqlite_latest.FLEET_POINT))
    in_python = {(s, o) for s, objects in sqlite_latest.FLEET.items() for o in objects}
    assert in_sql == in_python and (HP, 1) in in_sql and (HP, 2) not in in_sql


def test_a_deleted_device_leaves_no_latest_rows(tmp_path):
    async def main():
        s = await opened(tmp_path / "b.db")
        try:
            await s.add_telemetry_frames([frame("hp-1", T0, {1: 5, 2: 6}),
                                          frame("hp-2", T0, {1: 9})])
            assert await s.delete_device("hp-1", "op", T0 + 1)
            assert await s.latest("hp-1") == {}
            assert await s.latest("hp-2") == {(HP, 1): (9, T0)}
        finally:
            await s.close()
    run(main())
    with sqlite3.connect(str(tmp_path / "b.db")) as db:
        for table in ("latest_frame", "latest_fleet"):
            assert db.execute("SELECT DISTINCT device FROM " + table).fetchall() == [("hp-2",)]


def test_the_latest_values_of_a_device_are_read_by_its_key(tmp_path):
    run(_close(opened(tmp_path / "b.db", ())))
    with sqlite3.connect(str(tmp_path / "b.db")) as db:
        plan = [r[3] for r in db.execute(
            "EXPLAIN QUERY PLAN SELECT service, object, value, t FROM latest WHERE device = ?",
            ("hp-1",))]
    assert plan[0].startswith("SEARCH l USING PRIMARY KEY (device=?)")


async def _close(opening):
    s = await opening
    await s.close()


# ---------------------------------------------------------- schema 2 -> 3

# rows of schema 2's latest table (values as it held them): times of one device's
# objects differing, times that 15 digits would not keep, texts to escape
OLD_ROWS = [("hp-1", HP, 1, T0 + 0.1, 1234), ("hp-1", HP, 2, T0 + 1 / 3, "0.25"),
            ("hp-1", HP, 20, T0 + 60.123456789, 5), ("hp-1", HP, 3, T0 + 60.123456789,
                                                      '"on \\"x\\""'),
            ("hp-2", HP, 1, T0, -5), ("hp-2", HP, 20, T0, 7), ("hp-2", ALARMS, 2, T0 + 2, 1),
            ("hp-3", HP, 1, T0 + 1e-6, 3)]


def schema_2_file(path):
    """A database file as the schema-2 store left it: its statements, its rows."""
    with sqlite3.connect(str(path)) as db:
        for stmt in store_sqlite.DDL:
            if stmt not in sqlite_latest.TABLES:
                db.execute(stmt)
        for stmt in SCHEMA_2_LATEST + sqlite_frames.VIEW:
            db.execute(stmt)
        db.execute("INSERT INTO schema_version VALUES (2, 0)")
        for dev in DEVICES:
            db.execute("INSERT INTO devices VALUES (?, '[[16,1,0],[3,1,0]]', '[]', 0, NULL, "
                       "?, ?, 'online', ?)", (dev, T0, T0, T0))
        for row in OLD_ROWS:   # values as stored texts
            db.execute(SCHEMA_1_LATEST, row)
        return db.execute(VIEW_ROWS).fetchall()


def test_a_schema_2_database_is_migrated_and_reads_the_same(tmp_path):
    path = tmp_path / "old.db"
    before = schema_2_file(path)

    async def main():
        s = await open_store("sqlite://" + str(path))
        try:
            assert await s.schema_version() == 3
            assert await s.latest("hp-1") == {(HP, 1): (1234, T0 + 0.1),
                                              (HP, 2): (0.25, T0 + 1 / 3),
                                              (HP, 20): (5, T0 + 60.123456789),
                                              (HP, 3): ('on "x"', T0 + 60.123456789)}
            totals = await fleet_totals(s, T0 + 61)
            page = await s.list_devices_page(alarm=True)
            # a later frame of the stored objects takes the one-statement path
            await s.add_telemetry_frames([frame("hp-2", T0 + 5, {1: 6, 20: 8})])
            assert await s.latest("hp-2") == {(HP, 1): (6, T0 + 5), (HP, 20): (8, T0 + 5),
                                              (ALARMS, 2): (1, T0 + 2)}
            return totals, [d.id for d in page]
        finally:
            await s.close()
    totals, alarmed = run(main())
    assert totals["power"][HP] == {"w": 1234 - 5 + 3, "devices": 3}
    assert alarmed == ["hp-2"]
    with sqlite3.connect(str(path)) as db:
        kind = db.execute("SELECT type FROM sqlite_master WHERE name = 'latest'").fetchone()
        assert kind == ("view",)
        after = db.execute(VIEW_ROWS).fetchall()
    assert [r for r in after if r[0] != "hp-2"] == [r for r in before if r[0] != "hp-2"]
    assert after[0][5:] == ("real", "text")


def test_reopening_a_migrated_latest_database_changes_nothing(tmp_path):
    path = tmp_path / "old.db"
    before = schema_2_file(path)
    run(_close(open_store("sqlite://" + str(path))))
    run(_close(open_store("sqlite://" + str(path))))
    with sqlite3.connect(str(path)) as db:
        assert db.execute(VIEW_ROWS).fetchall() == before
        assert db.execute("SELECT version FROM schema_version ORDER BY version").fetchall() \
            == [(2,), (3,)]


def test_a_latest_migration_that_fails_leaves_the_schema_2_database_as_it_was(tmp_path,
                                                                              monkeypatch):
    path = tmp_path / "old.db"
    before = schema_2_file(path)
    monkeypatch.setattr(sqlite_latest, "MIGRATE", sqlite_latest.MIGRATE + ("SELECT no_such()",))
    with pytest.raises(StoreError, match="no_such"):
        run(_close(open_store("sqlite://" + str(path))))
    with sqlite3.connect(str(path)) as db:
        kind = db.execute("SELECT type FROM sqlite_master WHERE name = 'latest'").fetchone()
        assert kind == ("table",)
        assert db.execute(VIEW_ROWS).fetchall() == before
        assert db.execute("SELECT max(version) FROM schema_version").fetchone() == (2,)


def test_the_fleet_table_is_filled_again_when_its_rules_changed(tmp_path):
    path = tmp_path / "old.db"
    schema_2_file(path)
    run(_close(open_store("sqlite://" + str(path))))
    with sqlite3.connect(str(path)) as db:
        want = db.execute("SELECT * FROM latest_fleet ORDER BY device, object").fetchall()
        db.execute("UPDATE latest_fleet_rules SET rules = 'an older version''s'")
        db.execute("DELETE FROM latest_fleet")
    run(_close(open_store("sqlite://" + str(path))))
    with sqlite3.connect(str(path)) as db:
        got = db.execute("SELECT * FROM latest_fleet ORDER BY device, object").fetchall()
    assert got == want and len(want) == 6   # hp-1's 1 and 20, hp-2's 1, 20, alarms, hp-3's 1
