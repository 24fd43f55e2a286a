"""The `spot bridge` process's interpreter settings (cloud_bridge/serving.py) and the
SQLite store's checkpoint size: what the ingest's CPU per frame was measured with
(docs/benchmarks.md). The interpreter is checked in a child process: the settings
are process-wide and the tests' own process keeps CPython's."""
import asyncio
import subprocess
import sys

from spot.cloud_bridge import store_sqlite
from spot.cloud_bridge.store import open_store


def test_the_serving_process_collects_young_objects_rarely_and_hands_the_gil_over_sooner():
    code = ("import gc, sys; from spot.cloud_bridge import serving as S; "
            "S.tune_for_serving(); "
            "print(gc.get_threshold()[0], sys.getswitchinterval(), gc.get_freeze_count() > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["10000", "0.0005", "True"]


def test_the_sqlite_store_checkpoints_its_wal_every_wal_pages(tmp_path):
    async def main():
        store = await open_store("sqlite:///%s" % (tmp_path / "s.db"))
        try:
            return await store._call(
                lambda: store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        finally:
            await store.close()
    assert asyncio.run(main()) == store_sqlite.WAL_PAGES == 10000
