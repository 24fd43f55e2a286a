"""A flood of ANNOUNCEs from ONE registered device: what it costs the bridge (issue 15).

    python3 bench/refresh_flood.py                              # this tree only
    mkdir ../spot-before && git archive main | tar -x -C ../spot-before
    python3 bench/refresh_flood.py --baseline=../spot-before --repeat=2 --count=3000
    python3 bench/refresh_flood.py --postgresql ...   # the cells on PostgreSQL too

Each run starts `spot bridge` (bench/bridge_ingest.BridgeProcess: the real
service on a fresh SQLite store, or with --postgresql also a fresh database of a
durable PostgreSQL from tests/postgres.py, plain CoAP on 127.0.0.1) and registers one
device (bridge_ingest.CoapFleet, one UDP socket). That device then sends
--count ANNOUNCEs as confirmable POSTs to /s, --window of them in flight (closed
loop; default WINDOW; 1: a device that waits for each answer), in one of two cells:

- unchanged: the very ANNOUNCE it registered with, again and again (a device
  or a spoofer of its address re-registering in a loop);
- changed: each ANNOUNCE names another minor version of its service, so each
  would change the stored registration.

Per cell: ANNOUNCEs answered per second, how they were answered (2.04 / 5.03),
the bridge process's CPU (user + system, all its threads: the loop and the
SQLite writer), PostgreSQL's server processes' CPU (ended backends included), per
1 000 ANNOUNCEs, and its write syscalls per ANNOUNCE (/proc/<pid>/io syscw:
SQLite's WAL page writes, and the loop's wake-up pipe writes from the store's
thread; PostgreSQL's are the server's). --baseline=DIR runs the same cells with
the tree at DIR, alternating with this one, so a before/after comes from one run.
"""
import asyncio
from functools import partial
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bridge_ingest import (SERVICES, BridgeProcess, CoapFleet, baseline_path,  # noqa: E402
                           cluster_cpu_seconds, cpu_seconds, option)
from spot.core import frame as F  # noqa: E402
from spot.core.node import A_FLAGS, A_ID, A_SERVICES, FLAG_CLOCK  # noqa: E402

WINDOW = 16


def announce(device, mid, minor):
    """The bench device's ANNOUNCE (CoapFleet's: the one it registered with when minor
    is 0), its last service at version 1.minor."""
    services = SERVICES[:-1] + [SERVICES[-1][:2] + [minor]]
    return F.encode(F.ANNOUNCE, 0, mid, {A_ID: device, A_SERVICES: services,
                                         A_FLAGS: FLAG_CLOCK})


def write_calls(pid):
    with open("/proc/%d/io" % pid) as f:
        return int(dict(line.split(": ") for line in f.read().splitlines())["syscw"])


async def flood(bridge, cell, count, window=WINDOW, server_cpu=lambda: 0.0):
    """Register one device, then `count` ANNOUNCEs of the cell; the cell's figures.
    server_cpu(): the store server's CPU seconds so far (PostgreSQL), counted too."""
    fleet = await CoapFleet(1, bridge.coap).open()
    try:
        await fleet.register()
        device = fleet.ids[0]
        codes = {}
        left = [count]
        done = asyncio.get_running_loop().create_future()
        state = {"open": 0, "k": 0}

        def launch():
            while left[0] and state["open"] < window:
                left[0] -= 1
                state["open"] += 1
                state["k"] += 1
                minor = 0 if cell == "unchanged" else state["k"]
                fleet.post(0, announce(device, state["k"] & 0xFFFF, minor), answered)

        def answered(code, data):
            state["open"] -= 1
            key = "none" if code is None else "%d.%02d" % (code >> 5, code & 31)
            codes[key] = codes.get(key, 0) + 1
            if not left[0] and not state["open"]:
                if not done.done():
                    done.set_result(None)
            else:
                launch()

        s0 = server_cpu()
        cpu0, w0, t0 = cpu_seconds(bridge.pid), write_calls(bridge.pid), time.monotonic()
        launch()
        await asyncio.wait_for(done, 600)
        wall = time.monotonic() - t0
        cpu, writes = cpu_seconds(bridge.pid) - cpu0, write_calls(bridge.pid) - w0
        server = server_cpu() - s0
        return {"rate": count / wall, "cpu_ms": 1000.0 * 1000.0 * cpu / count,
                "server_ms": 1000.0 * 1000.0 * server / count,
                "writes": writes / count, "codes": codes}
    finally:
        fleet.close()


def main(argv):
    count = int(option(argv, "count", 3000))
    window = int(option(argv, "window", WINDOW))
    repeat = int(option(argv, "repeat", 1))
    tmp = tempfile.mkdtemp(prefix="spot-refresh-flood-")
    trees = [("this tree", None)]
    if option(argv, "baseline"):
        trees.append(("before", baseline_path(option(argv, "baseline"), tmp)))
    stores = ["SQLite"]
    pg = None
    if "--postgresql" in argv:
        import postgres   # tests/postgres.py (bridge_ingest put tests/ on sys.path)
        pg = postgres.PostgresServer(durable=True).start()
        stores.append("PostgreSQL")
    rows, k = [], 0
    try:
        for r in range(repeat):
            for store in stores:
                for cell in ("unchanged", "changed"):
                    for label, code in (trees if r % 2 == 0 else trees[::-1]):
                        k += 1
                        url = pg.create_database("f%d" % k) if store == "PostgreSQL" else None
                        bridge = BridgeProcess(os.path.join(tmp, "b%d" % k), store=url,
                                               code=code).start()
                        try:
                            x = asyncio.run(flood(bridge, cell, count, window,
                                                  partial(cluster_cpu_seconds, pg.datadir) if url
                                                  else lambda: 0.0))
                        finally:
                            bridge.stop()
                        codes = ", ".join("%s %d" % kv for kv in sorted(x["codes"].items()))
                        rows.append("| %s | %s | %s | %d | %.0f | %.1f | %s | %.2f | %s |" % (
                            store, cell, label, count, x["rate"], x["cpu_ms"],
                            "%.1f" % x["server_ms"] if url else "-", x["writes"], codes))
                        print(rows[-1], file=sys.stderr, flush=True)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| store | ANNOUNCEs | code | sent | answered per s | bridge CPU ms per 1 000 | "
          "PostgreSQL server CPU ms per 1 000 | bridge write syscalls per ANNOUNCE | answers |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    print("\n%d in flight; CPython %s, %d cores; 1-minute load average %.1f at the end"
          % (window, sys.version.split()[0], os.cpu_count(), os.getloadavg()[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
