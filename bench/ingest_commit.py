"""Group commit alone: cloud_bridge/ingest.py on a real SQLite store, no network.

    python3 bench/ingest_commit.py                       # this tree
    mkdir ../spot-before && git archive <commit> | tar -x -C ../spot-before
    python3 bench/ingest_commit.py --baseline=../spot-before  # and that tree's, alternating

N simulated devices (default 1 000) each await Ingest.add() of one 21-value
heat pump NOTIFY (the rows bench/bridge_ingest.py's frames make) in a closed
loop, at most 4 frames waiting in all (a light load), then 128 (saturation),
for SECONDS (8) each; a frame is
answered when add() returns, i.e. after the transaction holding it committed.
Counts frames answered, store transactions (Store.add_telemetry calls), frames
per transaction, ack latency and the process's CPU per frame (all threads).
Each variant runs in its own process (the baseline with PYTHONPATH at the other
tree), three times, alternating.
"""
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bridge_ingest as B  # noqa: E402

WINDOWS = (4, 128)   # frames waiting at most: a light load, saturation
SECONDS = 8.0


async def cell(n, seconds, window):
    from spot.cloud_bridge.ingest import Ingest
    from spot.cloud_bridge.store import open_store
    tmp = tempfile.mkdtemp(prefix="spot-commit-bench-")
    store = await open_store("sqlite:///" + os.path.join(tmp, "bridge.db"))
    ids = ["hp-%05d" % i for i in range(n)]
    await store.upsert_devices([(d, [[B.HEAT_PUMP, 1, 0]], [], 0) for d in ids], B.T0)
    calls = [0]
    add = store.add_telemetry

    async def counted(rows):
        calls[0] += 1
        return await add(rows)
    store.add_telemetry = counted
    ingest = Ingest(store)
    seq = [0] * n
    lat = []
    stop = [False]

    async def device(i):
        while not stop[0]:
            seq[i] += 1
            rows = [(ids[i], B.HEAT_PUMP, o, B.T0 + seq[i], v) for o, v in B.VALUES.items()]
            began = time.perf_counter()
            await ingest.add(rows)
            lat.append(time.perf_counter() - began)

    active = list(range(min(n, window)))
    c0, t0 = time.process_time(), time.perf_counter()
    tasks = [asyncio.ensure_future(device(i)) for i in active]
    await asyncio.sleep(seconds)
    stop[0] = True
    await asyncio.gather(*tasks)
    c1, t1 = time.process_time(), time.perf_counter()
    await ingest.close()
    await store.close()
    frames = len(lat)
    return {"frames": frames, "fps": frames / (t1 - t0), "transactions": calls[0],
            "per_transaction": frames / max(calls[0], 1),
            "cpu_ms": 1000.0 * (c1 - c0) / frames,
            "p50_ms": 1000 * B.percentile(lat, 50), "p99_ms": 1000 * B.percentile(lat, 99)}


def run_variant(code, n, seconds, window):
    env = dict(os.environ, PYTHONPATH=code) if code else None
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--cell", str(n),
                          str(seconds), str(window)], env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


def main(argv):
    if argv[:1] == ["--cell"]:
        print(json.dumps(asyncio.run(cell(int(argv[1]), float(argv[2]), int(argv[3])))))
        return
    n = int(B.option(argv, "devices", "1000"))
    seconds = float(B.option(argv, "seconds", str(SECONDS)))
    tmp = tempfile.mkdtemp(prefix="spot-commit-bench-")
    base = B.option(argv, "baseline")
    variants = [("this tree", None)] + ([("baseline", B.baseline_path(base, tmp))]
                                        if base else [])
    print("Ingest alone on SQLite: %d devices, %.0f s a run; one frame = %d rows"
          % (n, seconds, B.ROWS_PER_FRAME))
    print()
    print("| variant | frames waiting at most | frames/s | transactions "
          "| frames per transaction | ack ms p50 / p99 | CPU ms per frame |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for window in WINDOWS:
        for _ in range(int(B.option(argv, "repeat", "3"))):
            for name, code in variants:
                r = run_variant(code, n, seconds, window)
                print("| %s | %d | %.0f | %d | %.1f | %.0f / %.0f | %.3f |" % (
                    name, window, r["fps"], r["transactions"], r["per_transaction"],
                    r["p50_ms"], r["p99_ms"], r["cpu_ms"]), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
