"""The `spot bridge` process's interpreter settings (cloud_bridge/serving.py) and the
SQLite store's page and checkpoint sizes: what the ingest's CPU per frame was measured with
(docs/benchmarks.md). The interpreter is checked in a child process: the settings
are process-wide and the tests' own process keeps CPython's."""
import asyncio
import sqlite3
import subprocess
import sys

from spot.cloud_bridge.store import open_store


def test_the_serving_process_collects_young_objects_rarely_and_hands_the_gil_over_sooner():
    code = ("import gc, sys; from spot.cloud_bridge import serving as S; "
            "S.tune_for_serving(); "
            "print(gc.get_threshold()[0], sys.getswitchinterval(), gc.get_freeze_count() > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["10000", "0.0005", "True"]


def pragmas(path, names):
    async def main():
        store = await open_store("sqlite:///%s" % path)
        try:
            return await store._call(lambda: [
                store._conn.execute("PRAGMA " + name).fetchone()[0] for name in names])
        finally:
            await store.close()
    return asyncio.run(main())


def test_a_new_sqlite_store_has_8_kib_pages_and_checkpoints_every_40_mib_of_wal(tmp_path):
    assert pragmas(tmp_path / "s.db", ["page_size", "wal_autocheckpoint"]) == [8192, 5120]


def test_an_existing_sqlite_database_keeps_its_page_size(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("PRAGMA journal_mode = WAL")
    old.execute("CREATE TABLE before (x)")
    old.close()
    assert pragmas(path, ["page_size", "wal_autocheckpoint"]) == [4096, 10240]
