"""Two bridge instances against one, on one PostgreSQL store: CoAP frames stored per second.

    python3 bench/multi_instance.py               # markdown for docs/benchmarks.md
    python3 bench/multi_instance.py --devices=1000 --rounds=2
    python3 bench/multi_instance.py --no-fsync     # PostgreSQL without fsync: CPU, not disk

One PostgreSQL server (durable: fsync on, as in production) for the whole run.
Cells alternate, "one" then "two", `rounds` times, each on a fresh database:

- one: one `spot bridge` (instance a); one load generator process with all N
  devices (bench/bridge_ingest.py's CoapFleet: real CoAP, closed loop, a
  window of requests in flight, 2.04 only after commit) for LOAD_SECONDS.
- two: instances a and b on the same database; two load generators, each
  with N/2 devices (distinct ids) and half the window, one per instance,
  started together. Frames/s = all frames acknowledged / the longer window.

Stored rows are counted at the end and must equal acknowledged frames x 21.

The second table is the cost of routing: commands posted one at a time to
instance b for devices registered with b (local), or to instance a for
those same devices (a queues, sends NOTIFY spot_wake, b looks up and
delivers), timed from the POST to the device receiving the request (a
CoapFleet device records when).

Everything shares the machine's cores: the bridges, the generators and
PostgreSQL. The ratio says what a second instance buys on THIS machine; on
separate machines the instances do not compete for CPU (docs/scale-out.md).
"""
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bridge_ingest as B  # noqa: E402  (also puts tests/ on sys.path)

LOAD_SECONDS = B.LOAD_SECONDS
ROWS = B.ROWS_PER_FRAME


def bridge(tmp, url, name):
    data = tempfile.mkdtemp(dir=tmp, prefix="bridge-%s-" % name)
    return B.BridgeProcess(data, store=url, extra_args=["--instance", name]).start()


def run_cell(tmp, pg, k, instances, n, window):
    name = "mi_%d" % k
    url = pg.create_database(name)
    bridges, gens = [], []
    try:
        for i in range(instances):
            bridges.append(bridge(tmp, url, "ab"[i]))
        per = n // instances
        for i, b in enumerate(bridges):
            gens.append(B.LoadGen("coap", per, "127.0.0.1", b.coap_port, LOAD_SECONDS,
                                  window // instances, 0, "d%s" % "ab"[i]))
        reg = max(g.read()["registered"] for g in gens)
        B.settle(bridges[0].pid, [b.pid for b in bridges[1:]] + B.pg_backends(pg)())
        cpu = B.CpuWindow(**{"bridge_" + "ab"[i]: b.pid for i, b in enumerate(bridges)}).start()
        for g in gens:
            g.go()
        stats = [g.read() for g in gens]
        usage = cpu.stop()
        for g in gens:
            g.close()
        for b in bridges:
            b.stop()
        acked = sum(s["acked"] for s in stats)
        seconds = max(s["seconds"] for s in stats)
        stored, devices = B.count_rows(url)
        return {"instances": instances, "devices": n, "registered_s": reg, "acked": acked,
                "seconds": seconds, "fps": acked / seconds, "stored_rows": stored,
                "acked_rows": acked * ROWS, "per_instance": [s["acked"] for s in stats],
                "cpu": usage, "p99_ms": max(s["p99_ms"] for s in stats)}
    finally:
        for g in gens:
            if g.proc.poll() is None:
                g.proc.kill()
        for b in bridges:
            b.kill()
        pg.drop_database(name)


async def command_latency(tmp, pg, count=20):
    """{"local": [s], "routed": [s]}: POST to the device's request, by where posted."""
    url = pg.create_database("mi_cmd")
    a, b = bridge(tmp, url, "a"), bridge(tmp, url, "b")
    fleet = None
    try:
        fleet = await B.CoapFleet(count, b.coap, prefix="cmd").open()
        await fleet.register()
        deadline = time.monotonic() + 10   # the bridge sets each device's clock first
        while len(fleet.commanded) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        fleet.commanded.clear()
        out = {"local": [], "routed": []}
        for i, device in enumerate(fleet.ids):
            where, via = (b, "local") if i % 2 == 0 else (a, "routed")
            t = time.time()
            await asyncio.to_thread(where.post, "/api/v1/devices/%s/commands" % device,
                                    {"service": "heat_pump", "op": "write",
                                     "values": {"sg_ready": 4}})
            deadline = time.monotonic() + 30
            while i not in fleet.commanded and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            if i in fleet.commanded:
                out[via].append(fleet.commanded[i][0] - t)
        return out
    finally:
        if fleet is not None:
            fleet.close()
        a.stop()
        b.stop()
        pg.drop_database("mi_cmd")


def per_bridge_cpu(r):
    """Frames stored per second of the bridges' CPU (all instances together)."""
    busy = sum(v for k, v in r["cpu"].items() if k.startswith("bridge")) / 100.0
    return r["fps"] / busy if busy else float("nan")


def fmt(r, base):
    """A table row; base is the one-instance row of the same round."""
    ok = "yes" if r["stored_rows"] == r["acked_rows"] else "NO (%d of %d)" % (
        r["stored_rows"], r["acked_rows"])
    cpu = " + ".join("%.0f" % v for k, v in sorted(r["cpu"].items()) if k.startswith("bridge"))
    # what a second instance could add here at most: the cores over what one cell (its
    # bridge, generator and PostgreSQL) already takes of them
    ceiling = (os.cpu_count() or 1) * 100.0 / base["cpu"]["machine"]
    return "| %d | %d | %d | %.0f | %s | %s | %.2f | %s | %.0f | %.0f | %.2f | %.2f |" % (
        r["instances"], r["devices"], r["acked"], r["fps"],
        " / ".join(str(a) for a in r["per_instance"]), ok,
        r["fps"] / base["fps"], cpu, r["cpu"]["machine"], per_bridge_cpu(r),
        r["instances"] * per_bridge_cpu(r) / per_bridge_cpu(base), ceiling)


def main(argv):
    n = 1000
    rounds = 2
    window = B.WINDOW
    durable = "--no-fsync" not in argv
    for a in argv:
        if a.startswith("--devices="):
            n = int(a.split("=", 1)[1])
        elif a.startswith("--rounds="):
            rounds = int(a.split("=", 1)[1])
        elif a.startswith("--window="):
            window = int(a.split("=", 1)[1])
    B.raise_fd_limit()
    began = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="spot-multi-bench-")
    import postgres
    pg = postgres.PostgresServer(durable=durable).start()
    results = []
    latency = None
    try:
        latency = asyncio.run(command_latency(tmp, pg))
        k = 0
        for _ in range(rounds):
            for instances in (1, 2):
                k += 1
                r = run_cell(tmp, pg, k, instances, n, window)
                results.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("CoAP telemetry stored by one vs two `spot bridge` instances on one PostgreSQL "
          "(fsync %s), %d devices in all, window %d, %.0f s per cell; one frame = 21 rows"
          % ("on" if durable else "off", n, window, LOAD_SECONDS))
    print()
    print("| instances | devices | frames acked | frames/s | acked per instance "
          "| stored = acked | × one (same round) | bridge CPU % | machine CPU % "
          "| frames per bridge CPU s | × one, instances on cores of their own | × one at most here |")
    print("|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|")
    base = None
    for r in results:
        if r["instances"] == 1:
            base = r
        print(fmt(r, base))
    print()
    print("× one, instances on cores of their own: the instances times their frames per "
          "bridge CPU second over one instance's, i.e. the ratio if each instance had a core "
          "of its own and the generators and PostgreSQL did not compete with them. "
          "× one at most here: the machine's cores over what the one-instance cell (its "
          "bridge, generator and PostgreSQL) took of them.")
    print()
    print("A command to one device, POST to the device's request (ms), %d commands each:"
          % len(latency["local"]))
    print()
    print("| posted to | median | max |")
    print("|---|---:|---:|")
    for via, text in (("local", "b, the instance holding the route"),
                      ("routed", "a (NOTIFY wake-up to b)")):
        ts = sorted(latency[via])
        print("| %s | %.1f | %.1f |" % (text, 1000 * B.percentile(ts, 50), 1000 * ts[-1])
              if ts else "| %s | none delivered | |" % text)
    print()
    print("CPython %s, %d cores; whole run %.0f s" % (platform.python_version(),
                                                    os.cpu_count(), time.perf_counter() - began))


if __name__ == "__main__":
    main(sys.argv[1:])
