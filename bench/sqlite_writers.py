"""Do several bridge processes on one SQLite file store more telemetry than one?

    python3 bench/sqlite_writers.py                      # 1 and 2 writers, 6 s, twice
    python3 bench/sqlite_writers.py --seconds=4 --repeat=3 --batch=64

The question behind several CoAP worker processes of one bridge on one machine
(SO_REUSEPORT, issue 15): SQLite has one writer at a time, so each process's
group commit waits for the others'. Each writer is its own process with its own
SqliteStore on one shared file (WAL, synchronous=FULL, BEGIN IMMEDIATE: the
bridge's settings), storing the bench's 21-value heat pump NOTIFY frames
through Store.add_telemetry_frames (the bridge's ingest path), `batch` frames
a transaction from its own share of 1 000 devices, in a closed loop for
`seconds`. Printed: frames/s of all writers together and CPU ms per frame (all
writer processes), 1 writer against 2, alternating, in one run.
"""
import asyncio
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bridge_ingest import HEAT_PUMP, T0, VALUES, cpu_seconds, option  # noqa: E402

DEVICES = 1000


async def register(path):
    from spot.cloud_bridge.store import open_store
    store = await open_store("sqlite:///" + path)
    try:
        await store.upsert_devices([("hp-%05d" % i, [[HEAT_PUMP, 1, 0]], [], 0)
                                    for i in range(DEVICES)], T0)
    finally:
        await store.close()


async def write(path, k, n, start, seconds, batch):
    """Writer k of n: frames stored from `start` (a time.time()) for `seconds`."""
    from spot.cloud_bridge.store import open_store
    store = await open_store("sqlite:///" + path)
    ids = ["hp-%05d" % i for i in range(k, DEVICES, n)]
    done, t = 0, T0
    try:
        await asyncio.sleep(max(0.0, start - time.time()))
        end = start + seconds
        while time.time() < end:
            t += 1   # every frame of a transaction: one device, one new time
            frames = [[(ids[(done + j) % len(ids)], HEAT_PUMP, o, t, v)
                       for o, v in VALUES.items()] for j in range(batch)]
            await store.add_telemetry_frames(frames)
            done += batch
    finally:
        await store.close()
    return done


def run_writers(n, seconds, batch, tmp):
    path = os.path.join(tmp, "w%d-%d.db" % (n, time.monotonic_ns()))
    asyncio.run(register(path))
    start = time.time() + 1.5   # every process opened its store by then
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", path, str(k), str(n),
                               repr(start), str(seconds), str(batch)],
                              stdout=subprocess.PIPE, text=True) for k in range(n)]
    cpu0 = {}
    time.sleep(max(0.0, start - time.time()))
    for p in procs:
        cpu0[p.pid] = cpu_seconds(p.pid)
    # a process's CPU can be read only while it runs: sample just before its end
    time.sleep(max(0.0, seconds - 0.3))
    cpu = sum(cpu_seconds(p.pid) - cpu0[p.pid] for p in procs)
    frames = sum(int(p.communicate()[0].split()[-1]) for p in procs)
    return frames, cpu


def main(argv):
    if argv[:1] == ["--worker"]:
        path, k, n, start, seconds, batch = argv[1:]
        print(asyncio.run(write(path, int(k), int(n), float(start), float(seconds),
                                int(batch))))
        return
    seconds = float(option(argv, "seconds", 6))
    repeat = int(option(argv, "repeat", 2))
    batch = int(option(argv, "batch", 64))
    counts = [int(x) for x in option(argv, "writers", "1,2").split(",")]
    print("SQLite writers on one file, %d-frame transactions of %d-value NOTIFY, %g s each, "
          "%d cores, load average %s" % (batch, len(VALUES), seconds, os.cpu_count(),
                                         " ".join("%.2f" % x for x in os.getloadavg())))
    print()
    print("| writer processes | frames stored | frames/s (all writers) | "
          "CPU ms per frame (all writers) |")
    print("|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for n in counts:
                frames, cpu = run_writers(n, seconds, batch, tmp)
                print("| %d | %d | %.0f | %.3f |" % (n, frames, frames / seconds,
                                                      1000.0 * cpu / max(frames, 1)))
    print()
    print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main(sys.argv[1:])
