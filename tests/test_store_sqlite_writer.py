"""The SQLite store's telemetry written by a process of its own (writer=process,
cloud_bridge/sqlite_writer.py): stored = acknowledged through it, per-frame
outcomes, kill -9 of the writer, no orphan writer. Real SQLite files, a real
writer process; the last tests run a real `spot bridge` process."""
import asyncio
import os
import signal
import sqlite3
import time

import pytest

from bridge_process import bridges  # noqa: F401  (a fixture)
from test_bridge_faults import Devices, missing_rows
from waiting import until
from spot.cloud_bridge.ingest import Ingest, TimeTaken
from spot.cloud_bridge.store import InvalidValue, StoreUnavailable, UnknownDevice, open_store

T = 1700000000


def rows(device, n=2, t=T, base=1000):
    return [(device, 16, o, t, base + o) for o in range(n)]


def stored_rows(path):
    """Telemetry rows in the file, read by a connection of the test's own."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM telemetry").fetchone()[0]


def children(pid):
    """Pids of the processes whose parent is pid."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def gone(pid):
    """True once pid is no process (or a zombie nobody waits for: its parent died)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def writer_store(tmp_path, devices=("hp-1",)):
    path = str(tmp_path / "w.db")
    store = await open_store("sqlite:///%s?writer=process" % path)
    await store.upsert_devices([(d, [[16, 1, 0]], [], 0) for d in devices], T)
    return store, path


def test_the_store_url_chooses_the_writer_and_refuses_other_options(tmp_path):
    async def main():
        for query, writer in (("", "thread"), ("?writer=thread", "thread"),
                              ("?writer=process", "process")):
            store = await open_store("sqlite:///%s%s" % (tmp_path / "o.db", query))
            assert store.writer == writer
            await store.close()
        for query in ("?writer=fork", "?timeout=3"):
            with pytest.raises(InvalidValue):
                await open_store("sqlite:///%s%s" % (tmp_path / "o.db", query))
    asyncio.run(main())


def test_telemetry_is_written_by_the_writer_process_and_answered_only_after_its_commit(
        tmp_path):
    async def main():
        store, path = await writer_store(tmp_path)
        try:
            changes = store._conn.total_changes   # the bridge's own connection
            ingest = Ingest(store)
            await ingest.add(rows("hp-1", 21))
            assert stored_rows(path) == 21
            pid = store._process.proc.pid
            os.kill(pid, signal.SIGSTOP)   # the writer holds on: nothing commits
            try:
                pending = asyncio.ensure_future(ingest.add(rows("hp-1", 21, T + 1)))
                await asyncio.sleep(0.5)
                assert not pending.done() and stored_rows(path) == 21
            finally:
                os.kill(pid, signal.SIGCONT)
            await asyncio.wait_for(pending, 10)
            assert stored_rows(path) == 42
            assert store._conn.total_changes == changes   # it wrote none of them
        finally:
            await store.close()
    asyncio.run(main())


def test_a_refused_frame_gets_its_own_error_while_the_rest_commits_through_the_writer(
        tmp_path):
    async def main():
        store, path = await writer_store(tmp_path)
        try:
            ingest = Ingest(store, interval=0)
            await ingest.add(rows("hp-1"))
            os.kill(store._process.proc.pid, signal.SIGSTOP)
            try:   # the three frames wait together for one transaction
                first = asyncio.ensure_future(ingest.add(rows("hp-1", t=T - 1)))
                await asyncio.sleep(0.2)
                same = ingest.add(rows("hp-1"))                              # a repeat
                other = ingest.add([("hp-1", 16, 0, T, 7), ("hp-1", 16, 5, T, 7)])
                new = ingest.add(rows("hp-1", t=T + 1))
                batch = asyncio.gather(same, other, new, return_exceptions=True)
                await asyncio.sleep(0.2)
            finally:
                os.kill(store._process.proc.pid, signal.SIGCONT)
            await first
            transactions = ingest.transactions
            results = await batch
            assert ingest.transactions == transactions + 1
            assert results[0] is None and isinstance(results[1], TimeTaken) and results[2] is None
            assert await store.history("hp-1", 16, 0) == [(T - 1, 1000), (T, 1000), (T + 1, 1000)]
            assert await store.history("hp-1", 16, 5) == []
        finally:
            await store.close()
    asyncio.run(main())


def test_an_unknown_device_is_refused_by_the_writer_as_unknown_device(tmp_path):
    async def main():
        store, path = await writer_store(tmp_path)
        try:
            with pytest.raises(UnknownDevice) as e:
                await store.add_telemetry_frames([rows("hp-2")])
            assert e.value.devices == ["hp-2"] and stored_rows(path) == 0
        finally:
            await store.close()
    asyncio.run(main())


def test_kill_9_of_the_writer_fails_its_transaction_and_a_new_writer_stores_the_next(
        tmp_path):
    async def main():
        store, path = await writer_store(tmp_path)
        try:
            ingest = Ingest(store)
            await ingest.add(rows("hp-1", 21))
            old = store._process.proc.pid
            os.kill(old, signal.SIGSTOP)   # the next frames reach its pipe, not its SQLite
            lost = asyncio.ensure_future(ingest.add(rows("hp-1", 21, T + 1)))
            await asyncio.sleep(0.3)
            os.kill(old, signal.SIGKILL)
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(lost, 10)
            await ingest.add(rows("hp-1", 21, T + 2))
            assert store._process.proc.pid != old and gone(old)
            assert await store.history("hp-1", 16, 3) == [(T, 1003), (T + 2, 1003)]
            await ingest.add(rows("hp-1", 21, T + 1))   # the device sends it again
            assert stored_rows(path) == 63
        finally:
            await store.close()
    asyncio.run(main())


def test_closing_the_store_ends_its_writer_process(tmp_path):
    async def main():
        store, _ = await writer_store(tmp_path)
        proc = store._process.proc
        await store.close()
        assert proc.poll() == 0
    asyncio.run(main())


# ------------------------------------------------------- a real bridge with writer=process

def writer_bridge(bridges, tmp_path):
    url = "sqlite:///%s?writer=process" % (tmp_path / "data0" / "bridge.db")
    bridge = bridges(offline_after=60, toml='store = "%s"\n' % url)
    writers = children(bridge.proc.pid)
    assert len(writers) == 1, writers
    return bridge, writers[0]


def test_kill_9_of_the_writer_mid_stream_loses_nothing_acknowledged_and_the_bridge_carries_on(
        bridges, tmp_path):
    bridge, writer = writer_bridge(bridges, tmp_path)

    async def main():
        devices = await Devices(3, bridge.coap).start()
        try:
            async def streaming():
                return all(len(v) >= 10 for v in devices.acknowledged().values())
            assert await until(streaming), "telemetry is not flowing before the kill"
            os.kill(writer, signal.SIGKILL)
            killed_at = devices.count(devices.acknowledged())

            async def new_writer():
                return [p for p in children(bridge.proc.pid) if p != writer]
            assert await until(new_writer, timeout=15), "no new writer process"

            async def carries_on():
                return devices.count(devices.acknowledged()) >= killed_at + 60
            assert await until(carries_on, timeout=30)
        finally:
            await devices.stop()
        acknowledged = devices.acknowledged()
        await asyncio.to_thread(bridge.stop)
        assert await missing_rows(bridge.store_url, acknowledged) == []
    asyncio.run(main())
    with open(os.path.join(bridge.data, "bridge.log")) as f:
        assert "sqlite writer process %d died" % writer in f.read()


def test_the_writer_process_exits_when_the_bridge_is_killed(bridges, tmp_path):
    bridge, writer = writer_bridge(bridges, tmp_path)
    bridge.kill()
    deadline = time.monotonic() + 10
    while not gone(writer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(writer)
