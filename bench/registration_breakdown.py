"""Where a burst of registrations spends its time, store and service only (no network).

    python3 bench/registration_breakdown.py                    # 10 000 devices, both stores
    python3 bench/registration_breakdown.py 10000 --baseline=../spot-before --repeat=2
    python3 bench/registration_breakdown.py 10000 --stores=postgresql --pg-stats

N test-double devices on the in-process transport (local_transport.LocalTransport)
ANNOUNCE to the bridge service (service.Bridge) on a real store (a SQLite file;
a durable PostgreSQL from tests/postgres.py), 64 at a time, as devices that take
their clock from the RESULT (ANNOUNCE flag bit 1), so nothing but the
registration itself is due. Per cell, until every registration is answered and
every delivery the registrations started has ended:

- wall seconds, and the CPU seconds of the event loop's thread (time.thread_time:
  on PostgreSQL that includes the driver; SQLite's statements run on the store's
  own thread and are not in it) per registration;
- the registration batches (store.register_devices / register_devices_waiting:
  one transaction each), their mean size and mean seconds from call to commit;
- the delivery checks: store.claim_and_send_many calls (claim_many in a tree
  older than it; one transaction each), the devices they asked for, and their
  mean seconds.

On PostgreSQL also the server's CPU seconds per registration (every process of
the cluster, from /proc, the same cell's start to end) and, with --pg-stats
(the server started with pg_stat_statements), the statements that took the
server's time: calls, planning and execution ms per registration, WAL bytes
per registration.

--baseline=DIR runs the same cells with the project tree at DIR (e.g. `git
archive main`) in a subprocess, alternating with this tree's, so a before/after
comes from one run. The interfaces used are older than this bench.
"""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bridge_ingest import cluster_cpu_seconds  # noqa: E402
WINDOW = 64


class ClockedDevice:
    """Test double: ANNOUNCEs with flag bit 1 (takes the clock from the RESULT) and
    answers every request with a RESULT."""

    def __init__(self, device_id):
        self.id = device_id

    def announce(self):
        from spot.core import frame as F
        return F.encode(F.ANNOUNCE, 0, 1, {0: self.id, 1: [[0x10, 1, 0]], 3: 2})

    def receive(self, frame, now, peer):
        from spot.core import frame as F
        _, sid, mid, _ = F.decode(frame)
        return F.encode(F.RESULT, sid, mid, None)


def timed(counts, name, method):
    """method, counting its calls, items (first argument) and seconds in counts[name]."""
    async def call(items, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return await method(items, *args, **kwargs)
        finally:
            c = counts.setdefault(name, [0, 0, 0.0])
            c[0] += 1
            c[1] += len(items)
            c[2] += time.perf_counter() - t0
    return call


async def cell(n, url, data):
    from spot.cloud_bridge import config as C
    from spot.cloud_bridge.local_transport import LocalTransport
    from spot.cloud_bridge.service import Bridge
    from spot.cloud_bridge.store import open_store
    store = await open_store(url)
    counts = {}
    for name in ("register_devices", "register_devices_waiting", "claim_many",
                 "claim_and_send_many"):
        if hasattr(store, name):   # before the bridge binds them
            setattr(store, name, timed(counts, name, getattr(store, name)))
    bridge = Bridge(C.load(None, data=data), store)
    await bridge.start()
    try:
        local = LocalTransport(bridge)
        gate = asyncio.Semaphore(WINDOW)

        async def register(dev):
            async with gate:
                await local.connect(dev.id, dev)
        fleet = [ClockedDevice("hp-%05d" % i) for i in range(n)]
        t0, c0 = time.perf_counter(), time.thread_time()
        await asyncio.gather(*(register(dev) for dev in fleet))
        await bridge.deliveries_done()
        wall, loop_cpu = time.perf_counter() - t0, time.thread_time() - c0
        assert len(await store.list_devices()) == n
    finally:
        await bridge.stop()
        await store.close()
    reg = counts.get("register_devices_waiting") or counts.get("register_devices") or [0, 0, 0]
    claim = counts.get("claim_and_send_many") or counts.get("claim_many", [0, 0, 0.0])
    return {"wall": wall, "loop_ms": 1000.0 * loop_cpu / n,
            "reg_batches": reg[0], "reg_size": reg[1] / max(1, reg[0]),
            "reg_ms": 1000.0 * reg[2] / max(1, reg[0]),
            "claims": claim[0], "claimed_for": claim[1],
            "claim_ms": 1000.0 * claim[2] / max(1, claim[0])}


def statement_stats(url, n, top=6):
    """The statements of the cell's database by server time (pg_stat_statements)."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT calls, total_plan_time, total_exec_time, wal_bytes, wal_records, "
            "left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "ORDER BY total_plan_time + total_exec_time DESC LIMIT %s", (top,)).fetchall()
    return ["  %6d calls, plan %.3f + exec %.3f ms/registration, WAL %.0f B (%.1f records)"
            "/registration: %s" % (c, p / n, e / n, float(w) / n, r / n, q)
            for c, p, e, w, r, q in rows]


def run_in(code, n, url, data):
    """cell() in a subprocess importing `spot` from code (None: this tree)."""
    env = dict(os.environ)
    if code:
        d = tempfile.mkdtemp(dir=data, prefix="code-")
        os.symlink(os.path.abspath(code), os.path.join(d, "spot"))
        env["PYTHONPATH"] = d
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--cell", str(n), url,
                          tempfile.mkdtemp(dir=data)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv):
    if argv[:1] == ["--cell"]:
        print(json.dumps(asyncio.run(cell(int(argv[1]), argv[2], argv[3]))))
        return
    args = [a for a in argv if not a.startswith("--")]
    n = int(args[0]) if args else 10000
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    codes = [("after", None)] + ([("before", opts["baseline"])] if "baseline" in opts else [])
    repeat = int(opts.get("repeat", 1))
    stores = [{"sqlite": "SQLite", "postgresql": "PostgreSQL"}[x]
              for x in opts.get("stores", "sqlite,postgresql").split(",")]
    tmp = tempfile.mkdtemp(prefix="spot-regbreak-")
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    import postgres
    stats = "--pg-stats" in argv
    pg = postgres.PostgresServer(durable=True, options=(
        "shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=all",
        "pg_stat_statements.track_planning=on") if stats else ()).start()
    rows, notes, k = [], [], 0
    try:
        for r in range(repeat):
            for store in stores:
                for label, code in (codes if r % 2 == 0 else codes[::-1]):
                    k += 1
                    url = ("sqlite:///" + os.path.join(tmp, "r%d.db" % k) if store == "SQLite"
                           else pg.create_database("r%d" % k))
                    pg_url = store == "PostgreSQL"
                    if pg_url and stats:
                        import psycopg
                        with psycopg.connect(url, autocommit=True) as db:
                            db.execute("CREATE EXTENSION pg_stat_statements")
                    s0 = cluster_cpu_seconds(pg.datadir)
                    x = run_in(code, n, url, tmp)
                    server = cluster_cpu_seconds(pg.datadir) - s0
                    server = "%.3f" % (1000.0 * server / n) if pg_url else "-"
                    if pg_url and stats:
                        notes.append("%s, %s (cell %d):" % (store, label, k))
                        notes += statement_stats(url, n)
                    rows.append("| %s | %s | %d | %.2f | %.3f | %s | %d | %.1f | %.1f | %d | %d "
                                "| %.1f |" % (store, label, n, x["wall"], x["loop_ms"], server,
                                              x["reg_batches"], x["reg_size"], x["reg_ms"],
                                              x["claims"], x["claimed_for"], x["claim_ms"]))
                    print(rows[-1], file=sys.stderr, flush=True)
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| store | code | devices | wall s | loop CPU ms per registration | server CPU ms "
          "per registration | registration batches | devices per batch | ms per batch | "
          "delivery checks (claim batches) | devices checked | ms per claim batch |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if notes:
        print("\nStatements by server time (pg_stat_statements):\n" + "\n".join(notes))
    print("\nCPython %s, %d cores; 1-minute load average %.1f at the end"
          % (sys.version.split()[0], os.cpu_count(), os.getloadavg()[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
