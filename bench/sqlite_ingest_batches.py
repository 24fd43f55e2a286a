"""The SQLite store alone at the bridge's own batch size, on a table that grows as in
a bench cell: where the store thread's time goes per frame.

    python3 bench/sqlite_ingest_batches.py                       # this tree
    python3 bench/sqlite_ingest_batches.py --baseline=../spot-before --repeat=2 --key-order

bench/bridge_ingest.py's --floor stores 10 batches of one frame from each of
1 000 devices on a fresh table; under the bridge's closed loop (128 frames in
flight) group commit makes batches of about 64 frames, and the table grows by
some 40 000 frames a cell. This bench does that: 1 000 registered devices,
`--frames` 21-value NOTIFY frames (round robin over the devices, each with its
next time; with `--changed=N`, N of the 21 values a frame, another N each time) in batches of `--batch` frames through Store.add_telemetry_frames,
the first 50 batches as warm-up. Printed per variant: frames/s (wall, one
thread of work, no event-loop load beside it), process CPU per frame, and the
store thread's CPU (and wall) per frame by statement. With --baseline the
store of another tree runs too; with --key-order, this tree again with the
telemetry table keyed (device, service, t, object) (a frame's rows side by
side) instead of (device, service, object, t): measured, not adopted (see
docs/benchmarks.md; a tree keeping history one row per frame, SQLite schema 2,
has no such key and refuses it). Each variant in its own process, alternating.
"""
import asyncio
import collections
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

VALUES = {i: 1000 + 7 * i for i in range(1, 22)}
DEVICES = 1000
WARM = 50


def objects(n, changed):
    """The object ids of frame n: all 21, or `changed` of them (a window moving by 7 a
    frame, ascending: a device notifying what changed)."""
    if not changed:
        return VALUES
    return sorted((n * 7 + i) % len(VALUES) + 1 for i in range(changed))


async def measure(batch, nframes, key_order, changed=0):
    from spot.cloud_bridge import store_sqlite as SS
    from spot.cloud_bridge.store import open_store
    if key_order:
        ddl = tuple(d.replace("PRIMARY KEY (device, service, object, t)) WITHOUT ROWID",
                              "PRIMARY KEY (device, service, t, object)) WITHOUT ROWID")
                    for d in SS.DDL)
        if ddl == SS.DDL:
            raise SystemExit("--key-order: this tree's history has no row per value "
                             "(one row per frame, schema 2)")
        SS.DDL = ddl
    wall, cpu = collections.Counter(), collections.Counter()

    class Timed:
        """The store's connection, each statement's time added up (first three words)."""

        def __init__(self, c):
            self.c = c

        def execute(self, sql, params=()):
            w, t = time.perf_counter(), time.thread_time()
            try:
                return self.c.execute(sql, params)
            finally:
                key = " ".join(sql.split()[:3])
                wall[key] += time.perf_counter() - w
                cpu[key] += time.thread_time() - t

        def __getattr__(self, name):
            return getattr(self.c, name)

    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store("sqlite:///" + os.path.join(tmp, "batches.db"))
        try:
            ids = ["hp-%05d" % i for i in range(DEVICES)]
            t0 = int(time.time()) - 86400
            await store.upsert_devices([(d, [[16, 1, 0]], [], 0) for d in ids], t0)
            store._conn = Timed(store._conn)
            k = 0
            for b in range(WARM + nframes // batch):
                if b == WARM:
                    wall.clear()
                    cpu.clear()
                    w0, p0, k0 = time.perf_counter(), time.process_time(), k
                frames = [[(ids[n % DEVICES], 16, o, t0 + n // DEVICES, VALUES[o])
                           for o in objects(n, changed)] for n in range(k, k + batch)]
                k += batch
                await store.add_telemetry_frames(frames)
            n = k - k0
            return {"fps": n / (time.perf_counter() - w0),
                    "cpu_us": 1e6 * (time.process_time() - p0) / n,
                    "parts": {key: (1e6 * cpu[key] / n, 1e6 * wall[key] / n) for key in cpu}}
        finally:
            await store.close()


def run_variant(code, batch, nframes, key_order, changed):
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = code
    out = subprocess.run([sys.executable, __file__, "--child", str(batch), str(nframes),
                          str(int(key_order)), str(changed)], capture_output=True, text=True, env=env,
                         timeout=600)
    if out.returncode:
        raise SystemExit(out.stderr)
    return eval(out.stdout.strip().splitlines()[-1])   # noqa: S307 (our own child's dict)


def main(argv):
    if argv[:1] == ["--child"]:
        print(repr(asyncio.run(measure(int(argv[1]), int(argv[2]), argv[3] == "1",
                                       int(argv[4])))))
        return
    from bridge_ingest import baseline_path, option
    batch = int(option(argv, "batch", 64))
    nframes = int(option(argv, "frames", 38400))
    repeat = int(option(argv, "repeat", 1))
    base = option(argv, "baseline")
    changed = int(option(argv, "changed", 0))
    with tempfile.TemporaryDirectory() as tmp:
        variants = [("this tree", None, False)]
        if base:
            variants.append(("baseline", baseline_path(base, tmp), False))
        if "--key-order" in argv:
            variants.append(("this tree, key (device, service, t, object)", None, True))
        print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
        print()
        print("%d frames of %d values in batches of %d, 1 000 devices"
              % (nframes, changed or len(VALUES), batch))
        print()
        print("| variant | frames/s | CPU us per frame | INSERT telemetry | upsert latest | "
              "COMMIT (CPU / wall) | rest of the statements |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for _ in range(repeat):
            for name, code, key_order in variants:
                r = run_variant(code, batch, nframes, key_order, changed)
                parts = dict(r["parts"])
                ins = parts.pop("INSERT OR IGNORE", (0, 0))
                # one statement (one row per value), or two (SQLite schema 3: latest_frame,
                # latest_fleet)
                latest = [sum(x) for x in zip((0, 0), *(parts.pop(key) for key in list(parts)
                                                        if key.startswith("INSERT INTO latest")))]
                commit = parts.pop("COMMIT", (0, 0))
                rest = sum(c for c, _ in parts.values())
                print("| %s | %.0f | %.1f | %.1f | %.1f | %.1f / %.1f | %.1f |" % (
                    name, r["fps"], r["cpu_us"], ins[0], latest[0], commit[0], commit[1],
                    rest))
        print()
        print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main(sys.argv[1:])
