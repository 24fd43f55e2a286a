"""Registrations and commands on SQLite while telemetry streams in: how long they wait,
with the telemetry written on the store's thread and by a writer process.

    python3 bench/sqlite_writer_others.py                  # 6 s a cell, twice each
    python3 bench/sqlite_writer_others.py --seconds=4 --repeat=3

One SqliteStore (in this process) on a fresh file with 1 000 registered heat
pumps; the bridge's Ingest (group commit, the store taking its batch late)
kept busy by 128 frames in flight (the bench's 21-value NOTIFY, each device's
next frame as soon as its last one committed: bridge_ingest's closed loop
without the network). Beside it, every 20 ms, one new device registered
(upsert_device) and one command queued (enqueue): the writes the store's
other callers make. Printed per cell: telemetry frames/s, and the time those
writes took, p50 / p99 / max. With the store option writer=process the
telemetry transactions run in the child process, the others on the store's
thread, one writer at a time either way (cloud_bridge/sqlite_writer.py).
"""
import asyncio
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bridge_ingest import HEAT_PUMP, T0, VALUES, option, percentile  # noqa: E402

DEVICES = 1000
WINDOW = 128


async def cell(path, writer, seconds):
    from spot.cloud_bridge.ingest import Ingest
    from spot.cloud_bridge.store import open_store
    store = await open_store("sqlite:///%s?writer=%s" % (path, writer))
    try:
        ids = ["hp-%05d" % i for i in range(DEVICES)]
        await store.upsert_devices([(d, [[HEAT_PUMP, 1, 0]], [], 0) for d in ids], T0)
        ingest = Ingest(store)
        end = time.monotonic() + seconds
        frames = [0]

        async def device(k):
            d, t = ids[k], T0 + 1
            while time.monotonic() < end:
                await ingest.add([(d, HEAT_PUMP, o, t, v) for o, v in VALUES.items()])
                frames[0] += 1
                t += 1

        async def others():
            reg, cmd, n = [], [], 0
            while time.monotonic() < end:
                n += 1
                t = time.perf_counter()
                await store.upsert_device("new-%05d" % n, [[HEAT_PUMP, 1, 0]], [], 0, T0)
                reg.append(time.perf_counter() - t)
                t = time.perf_counter()
                await store.enqueue(ids[n % DEVICES], HEAT_PUMP, 2, {"6": 4}, "bench", T0)
                cmd.append(time.perf_counter() - t)
                await asyncio.sleep(0.02)
            return reg, cmd
        began = time.monotonic()
        got = await asyncio.gather(others(), *[device(k) for k in range(WINDOW)])
        took = time.monotonic() - began
        await ingest.close()
        return frames[0] / took, got[0]
    finally:
        await store.close()


def ms(xs):
    return "%.1f / %.1f / %.1f" % (1e3 * percentile(xs, 50), 1e3 * percentile(xs, 99),
                                   1e3 * max(xs))


def main(argv):
    seconds = float(option(argv, "seconds", "6"))
    repeat = int(option(argv, "repeat", "2"))
    print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    print()
    print("| writer | telemetry frames/s | registration ms p50 / p99 / max "
          "| command queued ms p50 / p99 / max |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        k = 0
        for _ in range(repeat):
            for writer in ("thread", "process"):
                k += 1
                fps, (reg, cmd) = asyncio.run(cell(os.path.join(tmp, "c%d.db" % k), writer,
                                                   seconds))
                print("| %s | %.0f | %s | %s |" % (writer, fps, ms(reg), ms(cmd)), flush=True)
    print()
    print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main(sys.argv[1:])
