"""SQLite history of schema 1 (one row per value) against schema 2 (one row per frame):
the migration at open, and history() reads before and after it.

    python3 bench/sqlite_frames_migration.py                       # migration only
    python3 bench/sqlite_frames_migration.py --baseline=../spot-before --repeat=2

A schema-1 file is made with that schema's statements (the ones
tests/test_store_sqlite_frames.py keeps): `--devices` heat pumps x `--frames`
frames a minute apart x 21 values. This tree opens a copy of it (the migration
runs in the open; its time and the pages in use after it are printed). With
--baseline, history() of one object is timed on the schema-1 file by the other
tree's code and on the migrated copy by this tree's, in turn, `--repeat` times
(median of 50 calls each, ms): the newest 100 points, the whole series, an
hour (60 points). Each reader runs in its own process.
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
READS = (("newest 100 points", dict(limit=100, descending=True)),
         ("whole series", dict(limit=100000)),
         ("an hour (60 points)", dict(t_from=T0 + 600, t_to=T0 + 600 + 3600)))


def schema_1_file(path, devices, frames):
    from test_store_sqlite_frames import (SCHEMA_1_TELEMETRY, SCHEMA_1_INSERT, SCHEMA_1_LATEST,
                                          SCHEMA_2_LATEST)
    from spot.cloud_bridge import sqlite_frames, sqlite_latest, store_sqlite
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 8192")
    db.execute("PRAGMA journal_mode = WAL")
    for stmt in store_sqlite.DDL:
        if stmt is not sqlite_frames.FRAME_TABLE and stmt not in sqlite_latest.TABLES:
            db.execute(stmt)
    for stmt in (SCHEMA_1_TELEMETRY,) + SCHEMA_2_LATEST:   # latest values one row per value
        db.execute(stmt)
    db.execute("INSERT INTO schema_version VALUES (1, 0)")
    for f in range(frames):
        rows = [("hp-%05d" % d, 16, o, T0 + 60 * f, 1000 + o + f)
                for d in range(devices) for o in range(1, 22)]
        db.executemany(SCHEMA_1_INSERT, rows)
        if f == frames - 1:
            db.executemany(SCHEMA_1_LATEST, rows)
    db.commit()
    db.close()


def in_use(path):
    db = sqlite3.connect(path)
    count, free, size = (db.execute("PRAGMA " + p).fetchone()[0]
                         for p in ("page_count", "freelist_count", "page_size"))
    db.close()
    return (count - free) * size


async def reads(path, devices):
    from spot.cloud_bridge.store import open_store
    s = await open_store("sqlite://" + path)
    try:
        out = {}
        for name, kw in READS:
            ts = []
            for k in range(50):
                began = time.perf_counter()
                await s.history("hp-%05d" % (k % devices), 16, 3, **kw)
                ts.append(time.perf_counter() - began)
            out[name] = 1000 * sorted(ts)[len(ts) // 2]
        return out
    finally:
        await s.close()


def reads_in(tree, path, devices):
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    out = subprocess.run([sys.executable, __file__, "--reads", path, str(devices)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return eval(out.strip().splitlines()[-1])   # noqa: S307 (our own child's dict)


def main(argv):
    if argv[:1] == ["--reads"]:
        print(repr(asyncio.run(reads(argv[1], int(argv[2])))))
        return
    from bridge_ingest import baseline_path, option
    devices = int(option(argv, "devices", 100))
    frames = int(option(argv, "frames", 1000))
    repeat = int(option(argv, "repeat", 1))
    base = option(argv, "baseline")
    from spot.cloud_bridge.store import open_store
    with tempfile.TemporaryDirectory() as tmp:
        old = os.path.join(tmp, "schema1.db")
        schema_1_file(old, devices, frames)
        new = os.path.join(tmp, "migrated.db")
        shutil.copy(old, new)
        print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
        began = time.perf_counter()
        asyncio.run(_open_close(open_store("sqlite://" + new)))
        took = time.perf_counter() - began
        print("%d values (%d devices x %d frames x 21): schema-1 file %.1f MiB in use; "
              "migrated at open in %.2f s; %.1f MiB in use after"
              % (devices * frames * 21, devices, frames, in_use(old) / 2 ** 20, took,
                 in_use(new) / 2 ** 20))
        if base:
            tree = baseline_path(base, tmp)
            print()
            print("| history() of one object, ms | " + " | ".join(n for n, _ in READS) + " |")
            print("|---|" + "---:|" * len(READS))
            for _ in range(repeat):
                for name, path, code in (("before, schema 1", old, tree),
                                         ("now, migrated", new, None)):
                    got = reads_in(code, path, devices)
                    print("| %s | " % name + " | ".join("%.2f" % got[n] for n, _ in READS)
                          + " |")
        print()
        print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


async def _open_close(opening):
    s = await opening
    await s.close()


if __name__ == "__main__":
    main(sys.argv[1:])
