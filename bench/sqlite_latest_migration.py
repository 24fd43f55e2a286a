"""SQLite latest values of schema 2 (one row per value) against schema 3 (one row per
device and service): the migration at open, and the readers before and after it.

    python3 bench/sqlite_latest_migration.py --devices=10000
    python3 bench/sqlite_latest_migration.py --devices=10000 --baseline=../spot-before --repeat=2

A schema-2 file is made with that schema's statements (the ones
tests/test_store_sqlite_frames.py keeps): `--devices` heat pumps, each with one
21-value NOTIFY of history and its 21 latest values. This tree opens a copy of it
(the migration runs in the open; its time is printed). With --baseline, the
readers of the latest values are timed on the schema-2 file by the other tree's
code and on the migrated copy by this tree's, in turn, `--repeat` times, each in
its own process (ms, medians): latest() of one device (200 calls), the fleet
summary (fleet_totals, 10 calls), a device page filtered on alarms (none in alarm:
every device checked; 10 calls).
"""
import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

T0 = 1700000000
READERS = ("latest() of one device", "fleet_totals", "device page, alarm=true")


def schema_2_file(path, devices):
    from test_store_sqlite_frames import SCHEMA_1_LATEST, SCHEMA_2_LATEST
    from spot.cloud_bridge import sqlite_frames, sqlite_latest, store_sqlite
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 8192")
    db.execute("PRAGMA journal_mode = WAL")
    for stmt in store_sqlite.DDL:
        if stmt not in sqlite_latest.TABLES:
            db.execute(stmt)
    for stmt in SCHEMA_2_LATEST + sqlite_frames.VIEW:
        db.execute(stmt)
    db.execute("INSERT INTO schema_version VALUES (2, 0)")
    ids = ["hp-%05d" % d for d in range(devices)]
    db.executemany("INSERT INTO devices VALUES (?, '[[16,1,0]]', '[]', 0, NULL, ?, ?, "
                   "'online', ?)", [(d, T0, T0, T0) for d in ids])
    vals = sqlite_frames.vals_text(tuple(range(1, 22)), tuple(1000 + o for o in range(1, 22)))
    db.executemany("INSERT INTO telemetry_frame VALUES (?, 16, ?, ?)",
                   [(d, float(T0), vals) for d in ids])
    db.executemany(SCHEMA_1_LATEST, [(d, 16, o, float(T0), 1000 + o)
                                     for d in ids for o in range(1, 22)])
    db.commit()
    db.close()


async def readers(path, devices):
    from spot.cloud_bridge.store import open_store
    from spot.cloud_bridge.store_fleet import fleet_totals
    s = await open_store("sqlite://" + path)

    async def median(n, call):
        ts = []
        for k in range(n):
            began = time.perf_counter()
            await call(k)
            ts.append(time.perf_counter() - began)
        return 1000 * sorted(ts)[len(ts) // 2]
    try:
        return {READERS[0]: await median(200, lambda k: s.latest("hp-%05d" % (k % devices))),
                READERS[1]: await median(10, lambda k: fleet_totals(s, T0 + 60)),
                READERS[2]: await median(10, lambda k: s.list_devices_page(alarm=True))}
    finally:
        await s.close()


def readers_in(tree, path, devices):
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    out = subprocess.run([sys.executable, __file__, "--readers", path, str(devices)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return eval(out.strip().splitlines()[-1])   # noqa: S307 (our own child's dict)


async def _open_close(opening):
    s = await opening
    await s.close()


def main(argv):
    if argv[:1] == ["--readers"]:
        print(repr(asyncio.run(readers(argv[1], int(argv[2])))))
        return
    from bridge_ingest import baseline_path, option
    devices = int(option(argv, "devices", 10000))
    repeat = int(option(argv, "repeat", 1))
    base = option(argv, "baseline")
    from spot.cloud_bridge.store import open_store
    with tempfile.TemporaryDirectory() as tmp:
        old = os.path.join(tmp, "schema2.db")
        schema_2_file(old, devices)
        new = os.path.join(tmp, "migrated.db")
        shutil.copy(old, new)
        print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
        began = time.perf_counter()
        asyncio.run(_open_close(open_store("sqlite://" + new)))
        print("%d devices x 21 latest values: migrated at open in %.2f s"
              % (devices, time.perf_counter() - began))
        if base:
            tree = baseline_path(base, tmp)
            print()
            print("| ms | " + " | ".join(READERS) + " |")
            print("|---|" + "---:|" * len(READERS))
            for _ in range(repeat):
                for name, path, code in (("before, schema 2", old, tree),
                                         ("now, migrated", new, None)):
                    got = readers_in(code, path, devices)
                    print("| %s | " % name + " | ".join("%.2f" % got[n] for n in READERS) + " |")
        print()
        print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main(sys.argv[1:])
