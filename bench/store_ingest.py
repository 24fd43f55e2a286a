"""Telemetry ingest into the bridge store: rows stored per second, SQLite vs PostgreSQL.

    python3 bench/store_ingest.py             # markdown tables for docs/benchmarks.md
    python3 bench/store_ingest.py --quick     # a smaller smoke run
    python3 bench/store_ingest.py --interleave 3   # PostgreSQL layouts, cells in turn
    python3 bench/store_ingest.py --breakdown      # where a PostgreSQL batch's time goes
    python3 bench/store_ingest.py --against DIR --rounds 3
        # this tree against another checkout (DIR: e.g. `git archive main` unpacked),
        # cells in turn on one server, each in its own process; also this tree on a
        # schema-4 database (every latest row merged), a schema-3 one (history one row
        # per value too), a schema-2 one (latest values one row per object too), SQLite
    python3 bench/store_ingest.py --alternate --rounds 2
        # PostgreSQL: the usual-batch path (pg_ingest) and the path before it taking
        # turns batch by batch in one process: the comparison a loaded machine blurs least
    python3 bench/store_ingest.py --sqlite-against DIR --rounds 2
        # SQLite only: this tree against DIR's, cells in turn, each in its own process
    python3 bench/store_ingest.py --fleet [--against DIR ...] [--devices N] [--rounds R]
        # readers of the latest values (fleet figures, power sample, alarm filter,
        # one device): this tree on both PostgreSQL layouts, and each DIR's code

One batch = one add_telemetry() call (one transaction) holding one NOTIFY
from each of N devices: the heat pump's nine values (p, q, v, i, flow, dhw,
outdoor, room, thermal power), as in docs/spec.md. N = 100, 1 000, 10 000.
Each cell: a fresh database, N devices registered (upsert_devices), one
warm-up batch (it creates the latest-value rows), then timed batches five
minutes apart: each inserts 9N history rows and updates 9N latest rows, the
steady state. The time is the whole call as the bridge sees it: checking and
encoding the rows, the transaction, the commit.

History is kept per series (device, service, object) in time order, so once
each series has a page of history, every batch dirties about one index page
per series: the cost per batch grows with the history already stored until it
levels off. The second table shows it (1 000 devices, 60 batches).

PostgreSQL runs each size three ways on the same server: the store as it is
(schema 4: telemetry partitioned by day, history one row per frame, latest
values one row per device; binary COPY), the telemetry path before (schema 1: one plain telemetry table,
made here as that schema made it; text COPY, store.binary_copy = False), and
the plain table with binary COPY (what the COPY format alone changes): the
third table. `--against` compares with another checkout's code instead.

Both databases are durable as configured for production: SQLite in WAL mode
with synchronous=FULL on a local file; PostgreSQL (a throwaway server from
tests/postgres.py with fsync and synchronous_commit on) over TCP on 127.0.0.1.
"""
import asyncio
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import postgres  # noqa: E402  (tests/postgres.py)
from spot.cloud_bridge.store import open_store  # noqa: E402

T0 = 1700000000
HEAT_PUMP = 0x10
OBJECTS = (1, 2, 3, 4, 8, 10, 11, 12, 15)
BASE = (1234, -80, 2301, 536, 352, 481, -52, 214, 4520)
# devices per batch -> timed batches for the first table
PLAN = {100: 40, 1000: 10, 10000: 3}
QUICK = {100: 10, 1000: 3}
GROWTH_DEVICES, GROWTH_BATCHES = 1000, 60


def batch(devices, t):
    rows = []
    for k, dev in enumerate(devices):
        for o, b in zip(OBJECTS, BASE):
            rows.append((dev, HEAT_PUMP, o, t, b + (k + t) % 7))
    return rows


SCHEMA_1_TELEMETRY = (   # what the PostgreSQL store made before partitioning
    "CREATE TABLE schema_version (version integer NOT NULL, applied_at double precision NOT NULL)",
    "INSERT INTO schema_version VALUES (1, 0)",
    "CREATE TABLE telemetry (device text NOT NULL, service smallint NOT NULL, object integer "
    "NOT NULL, t double precision NOT NULL, value json NOT NULL, "
    "PRIMARY KEY (device, service, object, t))",
    "CREATE INDEX telemetry_t ON telemetry USING brin (t)",
)


def made(url, statements):
    """url, its database made as `statements` (an older schema's tables) make it."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        for stmt in statements:
            db.execute(stmt)
    return url


def schema_1(url):
    return made(url, SCHEMA_1_TELEMETRY)


async def run_cell(url, n, batches, binary=True):
    """Seconds taken by each of `batches` timed batches from n devices."""
    store = await open_store(url)
    store.binary_copy = binary      # PostgreSQL: COPY format (SQLite: no effect)
    try:
        devices = ["hp-%05d" % i for i in range(n)]
        await store.upsert_devices([(d, [[2, 1, 0], [4, 1, 0], [HEAT_PUMP, 1, 0]], [], 0)
                                    for d in devices], T0)
        await store.add_telemetry(batch(devices, T0))        # warm-up
        times, t = [], T0
        for _ in range(batches):
            t += 300
            rows = batch(devices, t)
            start = time.perf_counter()
            stored = await store.add_telemetry(rows)
            times.append(time.perf_counter() - start)
            assert stored == len(rows), (stored, len(rows))
        latest = await store.latest(devices[-1])
        assert latest[(HEAT_PUMP, 15)][1] == t
        return times
    finally:
        await store.close()


def interleaved(repeats, n=1000, k=10):
    """`--interleave R`: the three PostgreSQL layouts in turn, R times (rows/s each)."""
    import logging
    logging.disable(logging.WARNING)   # the schema-1 notice, once per cell
    got = {}
    with postgres.PostgresServer(durable=True) as pg:
        for r in range(repeats):
            for name in ("now", "before", "plain binary"):
                db = "i%d_%s" % (r, name.replace(" ", "_"))
                url = pg.create_database(db)
                if name != "now":
                    schema_1(url)
                ts = asyncio.run(run_cell(url, n, k, binary=(name != "before")))
                got.setdefault(name, []).append(n * len(OBJECTS) * k / sum(ts))
                pg.drop_database(db)
    print("PostgreSQL, %d devices per batch, %d batches per cell, cells interleaved %d times, "
          "rows/s:" % (n, k, repeats))
    print()
    print("| layout | " + " | ".join("run %d" % (r + 1) for r in range(repeats)) + " |")
    print("|---|" + "---:|" * repeats)
    for name, v in got.items():
        print("| %s | " % name + " | ".join("%.0f" % x for x in v) + " |")


SCHEMA_2_LATEST = (   # the latest table of schema 1 and 2 (one row per object)
    "CREATE TABLE schema_version (version integer NOT NULL, applied_at double precision NOT NULL)",
    "INSERT INTO schema_version VALUES (2, 0)",
    "CREATE TABLE latest (device text NOT NULL, service smallint NOT NULL, "
    "object integer NOT NULL, t double precision NOT NULL, value json NOT NULL, "
    "PRIMARY KEY (device, service, object)) WITH (fillfactor = 50)",
)


def schema_2(url):
    return made(url, SCHEMA_2_LATEST)


def schema_3(url):
    """A database as schema 3 leaves it: this tree keeps its history one row per value."""
    return made(url, SCHEMA_2_LATEST[:1] + ("INSERT INTO schema_version VALUES (3, 0)",))


def schema_4(url):
    """A database as schema 4 leaves it: this tree merges every latest row (no keys)."""
    return made(url, SCHEMA_2_LATEST[:1] + ("INSERT INTO schema_version VALUES (4, 0)",))


def cell_process(url, n, k, tree=None):
    """run_cell in a child process, importing `spot` from `tree` (None: this tree)."""
    import json
    import subprocess
    env = dict(os.environ)
    if tree is not None:
        link = tempfile.mkdtemp(prefix="spot-tree-")
        os.symlink(os.path.abspath(tree), os.path.join(link, "spot"))
        env["PYTHONPATH"] = link + os.pathsep + env.get("PYTHONPATH", "")
    try:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--cell", url,
                              str(n), str(k)], env=env, check=True, capture_output=True,
                             text=True).stdout
    finally:
        if tree is not None:
            shutil.rmtree(link, ignore_errors=True)
    return json.loads(out.strip().splitlines()[-1])


def against_sqlite(tree, rounds, plan=((1000, 30), (10000, 5))):
    """`--sqlite-against DIR`: SQLite rows/s of this tree and of DIR's, cells in turn."""
    began = time.perf_counter()
    load = os.getloadavg()
    got = {}
    tmp = tempfile.mkdtemp(prefix="spot-bench-")
    try:
        for r in range(rounds):
            for n, k in plan:
                for name in ("before", "now"):
                    url = "sqlite://" + os.path.join(tmp, "s%d_%d_%s.db" % (r, n, name))
                    ts = cell_process(url, n, k, tree if name == "before" else None)
                    got.setdefault((n, name), []).append(n * len(OBJECTS) * k / sum(ts))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("SQLite telemetry ingest, rows/s (store only, one transaction per batch of one "
          "9-value NOTIFY from each of N devices); before = %s; cells in turn, %d rounds:"
          % (tree, rounds))
    print_rates(got, rounds, "SQLite %s")
    for n, _ in plan:
        print("%d devices: now / before per run %s" % (n, ", ".join(
            "%.2f" % (a / b) for a, b in zip(got[(n, "now")], got[(n, "before")]))))
    print()
    print("load average at start %.1f %.1f %.1f, at end %.1f %.1f %.1f; %d cores; whole run "
          "%.0f s" % (load + os.getloadavg() + (os.cpu_count(), time.perf_counter() - began)))


def print_rates(got, rounds, store="%s"):
    """The table of rows/s per run of got {(devices, name): [rows/s per run]}, each
    row's store column `store` % name, between blank lines."""
    print()
    print("| devices per batch | store | " + " | ".join("run %d" % (r + 1)
                                                       for r in range(rounds)) + " |")
    print("|---:|---|" + "---:|" * rounds)
    for (n, name), v in got.items():
        print("| %d | " % n + store % name + " | " + " | ".join("%.0f" % x for x in v) + " |")
    print()


SETTINGS = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method",
            "wal_compression", "wal_buffers", "shared_buffers", "commit_delay", "max_wal_size",
            "jit")


def server_settings(url):
    """The server's settings that bear on ingest, as one line for the report."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as db:
        return ", ".join("%s=%s" % (name, db.execute("SHOW " + name).fetchone()[0])
                         for name in SETTINGS)


def against(tree, rounds, plan=((1000, 10), (10000, 3))):
    """`--against DIR`: rows/s of this tree and of DIR's, cells in turn (same server)."""
    began = time.perf_counter()
    load = os.getloadavg()
    got = {}
    tmp = tempfile.mkdtemp(prefix="spot-bench-")
    try:
        with postgres.PostgresServer(durable=True) as pg:
            settings = server_settings(pg.url())
            for r in range(rounds):
                for n, k in plan:
                    rows = n * len(OBJECTS) * k
                    for name in ("before", "now", "now, schema-4 database",
                                 "now, schema-3 database", "now, schema-2 database", "SQLite"):
                        db = "a%d_%d" % (r, n)
                        if name == "SQLite":
                            url = "sqlite://" + os.path.join(tmp, "a%d_%d.db" % (r, n))
                        else:
                            url = pg.create_database(db)
                        if name == "now, schema-2 database":
                            schema_2(url)
                        if name == "now, schema-3 database":
                            schema_3(url)
                        if name == "now, schema-4 database":
                            schema_4(url)
                        ts = cell_process(url, n, k, tree if name == "before" else None)
                        got.setdefault((n, name), []).append(rows / sum(ts))
                        if name != "SQLite":
                            pg.drop_database(db)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("Telemetry ingest, rows/s (store only, one transaction per batch of one 9-value "
          "NOTIFY from each of N devices); before = %s; cells in turn, %d rounds:"
          % (tree, rounds))
    print_rates(got, rounds)
    print("PostgreSQL server settings: " + settings)
    print()
    print("| devices per batch | now / before (per run) | now / now on a schema-4 database "
          "| now / now on a schema-3 database |")
    print("|---:|---|---|---|")
    for n, _ in plan:
        print("| %d | %s |" % (n, " | ".join(", ".join("%.2f" % (a / b) for a, b in zip(
            got[(n, "now")], got[(n, other)])) for other in (
                "before", "now, schema-4 database", "now, schema-3 database"))))
    print()
    print("load average at start %.1f %.1f %.1f, at end %.1f %.1f %.1f; %d cores; whole run "
          "%.0f s" % (load + os.getloadavg() + (os.cpu_count(), time.perf_counter() - began)))


def _cpu_seconds(pid):
    """user + system CPU seconds of a process of this machine (/proc)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def alternate_cell(url, n, k):
    """{path: [(seconds, this process's CPU s, the server backends' CPU s)] per batch}:
    2k timed batches from n devices in one process on one database, the usual-batch
    path (pg_ingest) and the path before it (COPY, then the upsert reading the frames
    back) taking turns batch by batch, so that the machine's load swings hit both."""
    import psycopg
    store = await open_store(url)
    try:
        devices = ["hp-%05d" % i for i in range(n)]
        await store.upsert_devices([(d, [[HEAT_PUMP, 1, 0]], [], 0) for d in devices], T0)
        await store.add_telemetry(batch(devices, T0))     # warm-up: both paths once
        await store.add_telemetry(batch(devices, T0 + 1))
        rowtype = store._frame_rowtype
        with psycopg.connect(url, autocommit=True) as mon:
            pids = [r[0] for r in mon.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")]
        got, t = {}, T0 + 1
        for j in range(2 * k):
            name = ("now", "path before")[j % 2]
            store._frame_rowtype = rowtype if name == "now" else 0
            t += 300
            rows = batch(devices, t)
            c0, s0, w0 = time.process_time(), sum(map(_cpu_seconds, pids)), time.perf_counter()
            assert await store.add_telemetry(rows) == len(rows)
            got.setdefault(name, []).append((time.perf_counter() - w0, time.process_time() - c0,
                                             sum(map(_cpu_seconds, pids)) - s0))
        return got
    finally:
        await store.close()


def alternate(rounds, plan=((1000, 12), (10000, 2))):
    """`--alternate`: the usual-batch path against the path before, batch by batch in
    one process (alternate_cell), each size `rounds` times on fresh databases."""
    import statistics
    began, load = time.perf_counter(), os.getloadavg()
    print("PostgreSQL store only, the two paths taking turns batch by batch in one process "
          "(rows/s over each path's batches; CPU ms per batch, means):")
    print()
    print("| devices per batch | round | now rows/s | before rows/s | now / before "
          "| client CPU now, before | server CPU now, before |")
    print("|---:|---:|---:|---:|---:|---|---|")
    with postgres.PostgresServer(durable=True) as pg:
        settings = server_settings(pg.url())
        for r in range(rounds):
            for n, k in plan:
                url = pg.create_database("alt_%d" % n)
                got = asyncio.run(alternate_cell(url, n, k))
                pg.drop_database("alt_%d" % n)
                rate = {p: n * len(OBJECTS) * len(v) / sum(x[0] for x in v)
                        for p, v in got.items()}
                cpu = {p: [1000 * statistics.mean(x[i] for x in v) for i in (1, 2)]
                       for p, v in got.items()}
                print("| %d | %d | %.0f | %.0f | %.2f | %.1f, %.1f | %.1f, %.1f |" % (
                    n, r + 1, rate["now"], rate["path before"],
                    rate["now"] / rate["path before"], cpu["now"][0], cpu["path before"][0],
                    cpu["now"][1], cpu["path before"][1]))
    print()
    print("PostgreSQL server settings: " + settings)
    print("load average at start %.1f %.1f %.1f, at end %.1f %.1f %.1f; %d cores; whole run "
          "%.0f s" % (load + os.getloadavg() + (os.cpu_count(), time.perf_counter() - began)))


def fleet_cell(url, n=10000, repeats=5):
    """ms (median of `repeats`) of each reader of the latest values with n heat pumps
    stored at `url` (a fresh database)."""
    import logging
    import statistics
    from spot.cloud_bridge import store_fleet as F
    logging.disable(logging.WARNING)
    devices = ["hp-%05d" % i for i in range(n)]
    now = T0 + 300

    async def cell():
        store = await open_store(url)
        try:
            await store.upsert_devices([(d, [[HEAT_PUMP, 1, 0]], [], 0) for d in devices], T0)
            for k in range(0, n, 1000):
                await store.add_telemetry(batch(devices[k:k + 1000], now))
            timed = {"fleet_totals (fleet summary)": lambda: F.fleet_totals(store, now),
                     "sample_power (power series point)": lambda: F.sample_power(store, now),
                     "device page, alarm=true": lambda: store.list_devices_page(
                         limit=50, alarm=True),
                     "device page, alarm=false": lambda: store.list_devices_page(
                         limit=50, alarm=False),
                     "latest() of one device": lambda: store.latest(devices[n // 2])}
            got = {}
            for name, fn in timed.items():
                ts = []
                for r in range(repeats):
                    now_r = now + r     # sample_power writes one point per time
                    if name.startswith("sample"):
                        fn = (lambda t: lambda: F.sample_power(store, t))(now_r)
                    t0 = time.perf_counter()
                    await fn()
                    ts.append(time.perf_counter() - t0)
                got[name] = 1000 * statistics.median(ts)
            return got
        finally:
            await store.close()
    return asyncio.run(cell())


def fleet_readers(trees=(), n=10000, rounds=3):
    """`--fleet [--against DIR ...]`: the readers of the latest values with n heat pumps,
    this tree on a new database (one latest row per device) and on a schema-2 one (one
    row per object), and each other checkout DIR on a new database; each cell its own
    process, on one server, in turn, `rounds` times (the median of the rounds shown)."""
    import json
    import subprocess
    load = os.getloadavg()
    began = time.perf_counter()
    cells = [("this tree", None, False), ("this tree, schema-2 database", None, True)]
    cells += [(tree, tree, False) for tree in trees]
    got = {}
    with postgres.PostgresServer(durable=True) as pg:
        for i, (name, tree, old) in [c for _ in range(rounds) for c in enumerate(cells)]:
            url = pg.create_database("fleet_%d" % i)
            if old:
                schema_2(url)
            env = dict(os.environ)
            link = None
            if tree is not None:
                link = tempfile.mkdtemp(prefix="spot-tree-")
                os.symlink(os.path.abspath(tree), os.path.join(link, "spot"))
                env["PYTHONPATH"] = link + os.pathsep + env.get("PYTHONPATH", "")
            try:
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--fleet-cell",
                                      url, str(n)], env=env, check=True, capture_output=True,
                                     text=True).stdout
            finally:
                if link:
                    shutil.rmtree(link, ignore_errors=True)
            got.setdefault(name, []).append(json.loads(out.strip().splitlines()[-1]))
            pg.drop_database("fleet_%d" % i)
    import statistics
    print("Readers of the latest values, %d devices x %d values, ms (median of 5 calls, "
          "then of %d rounds):" % (n, len(OBJECTS), rounds))
    print()
    print("| reader | " + " | ".join(got) + " |")
    print("|---|" + "---:|" * len(got))
    for reader in got["this tree"][0]:
        print("| %s | " % reader + " | ".join("%.1f" % statistics.median(
            r[reader] for r in got[c]) for c in got) + " |")
    print()
    print("load average at start %.1f %.1f %.1f, at end %.1f %.1f %.1f; whole run %.0f s"
          % (load + os.getloadavg() + (time.perf_counter() - began,)))


def breakdown(n=1000, k=10):
    """`--breakdown`: where a PostgreSQL batch's time goes, ms per batch (the store as
    it is; psycopg calls and the row preparation timed by wrapping them)."""
    import psycopg
    from spot.cloud_bridge import store as S
    from spot.cloud_bridge import store_postgres as P
    acc = {}

    def timed(key, fn):
        async def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return await fn(*a, **kw)
            finally:
                name = key(a)
                acc[name] = acc.get(name, 0) + time.perf_counter() - t0
        return wrapper

    P._copy = timed(lambda a: "COPY history rows", P._copy)
    psycopg.AsyncTransaction.__aexit__ = timed(
        lambda a: "commit" if a[0]._outer_transaction else "savepoint release",
        psycopg.AsyncTransaction.__aexit__)
    P.AsyncConnectionPool.getconn = timed(lambda a: "pool: take a connection",
                                          P.AsyncConnectionPool.getconn)
    psycopg.AsyncCursor.execute = timed(lambda a: str(a[1])[:24] + "...",
                                        psycopg.AsyncCursor.execute)

    def timed_sync(name, fn):
        def wrapper(*a):
            t0 = time.perf_counter()
            try:
                return fn(*a)
            finally:
                acc[name] = acc.get(name, 0) + time.perf_counter() - t0
        return wrapper
    # the Python parts (the preparation runs in a worker thread; the store module
    # calls them by its own names, so both modules' names are wrapped)
    S.prepare_telemetry = P.prepare_telemetry = timed_sync(
        "preparing the rows (checks, JSON text; worker thread)", S.prepare_telemetry)
    for name, what in (("encode_telemetry", "preparing the rows (checks, JSON text; worker thread)"),
                       ("frames_of", "grouping rows by frame (worker thread)"),
                       ("copy_payload", "building the COPY stream (in the COPY's time)"),
                       ("frame_copy_payload", "building the COPY stream (in the COPY's time)"),
                       ("row_arrays", "building the latest values' arrays"),
                       ("frame_keys", "building the latest values' arrays")):
        if hasattr(P, name):
            setattr(P, name, timed_sync(what, getattr(P, name)))
    try:     # the slices (pg_ingest: in a worker thread, beside the server's work)
        from spot.cloud_bridge import pg_ingest
        for name, what in (("encode_telemetry", "checking and encoding the slices' rows"),
                           ("frames_of", "grouping the slices' rows by frame"),
                           ("frame_records", "building the slices' records"),
                           ("_cut", "sorting the rows by device, cutting the slices")):
            setattr(pg_ingest, name, timed_sync(what + " (worker thread)",
                                                getattr(pg_ingest, name)))
    except ImportError:
        pass

    async def cell(url):
        store = await open_store(url)
        try:
            devices = ["hp-%05d" % i for i in range(n)]
            await store.upsert_devices([(d, [[HEAT_PUMP, 1, 0]], [], 0) for d in devices], T0)
            await store.add_telemetry(batch(devices, T0))
            acc.clear()
            t0 = time.perf_counter()
            for j in range(k):
                await store.add_telemetry(batch(devices, T0 + 300 * (j + 1)))
            acc["whole add_telemetry"] = time.perf_counter() - t0
        finally:
            await store.close()
    with postgres.PostgresServer(durable=True) as pg:
        asyncio.run(cell(pg.create_database("breakdown")))
    print("PostgreSQL, %d devices per batch (%d rows), ms per batch:" % (n, n * len(OBJECTS)))
    print()
    print("| part | ms |")
    print("|---|---:|")
    for name, v in sorted(acc.items(), key=lambda x: -x[1]):
        print("| %s | %.1f |" % (name, 1000 * v / k))


def main(argv):
    if argv[:1] == ["--cell"]:
        import json
        print(json.dumps(asyncio.run(run_cell(argv[1], int(argv[2]), int(argv[3])))))
        return
    if argv[:1] == ["--against"]:
        return against(argv[1], int(argv[3]) if argv[2:3] == ["--rounds"] else 3)
    if argv[:1] == ["--sqlite-against"]:
        return against_sqlite(argv[1], int(argv[3]) if argv[2:3] == ["--rounds"] else 3)
    if argv[:1] == ["--interleave"]:
        return interleaved(int(argv[1]))
    if argv[:1] == ["--fleet-cell"]:
        import json
        print(json.dumps(fleet_cell(argv[1], int(argv[2]))))
        return
    if argv[:1] == ["--fleet"]:
        trees = [argv[i + 1] for i, a in enumerate(argv) if a == "--against"]
        n = int(argv[argv.index("--devices") + 1]) if "--devices" in argv else 10000
        rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 3
        return fleet_readers(trees, n, rounds)
    if argv[:1] == ["--breakdown"]:
        return breakdown()
    if argv[:1] == ["--alternate"]:
        return alternate(int(argv[2]) if argv[1:2] == ["--rounds"] else 2)
    quick = "--quick" in argv
    plan = QUICK if quick else PLAN
    growth = 0 if quick else GROWTH_BATCHES
    began = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="spot-bench-")
    times = {}
    try:
        with postgres.PostgresServer(durable=True) as pg:
            pgver = os.path.basename(os.path.dirname(pg.bindir))
            for n in plan:
                k = max(plan[n], growth) if n == GROWTH_DEVICES else plan[n]
                url = "sqlite://" + os.path.join(tmp, "ingest-%d.db" % n)
                times[("SQLite", n)] = asyncio.run(run_cell(url, n, k))
                db = "ingest_%d" % n
                times[("PostgreSQL", n)] = asyncio.run(run_cell(pg.create_database(db), n, k))
                pg.drop_database(db)
                times[("PostgreSQL before", n)] = asyncio.run(
                    run_cell(schema_1(pg.create_database(db)), n, plan[n], binary=False))
                pg.drop_database(db)
                times[("PostgreSQL plain binary", n)] = asyncio.run(
                    run_cell(schema_1(pg.create_database(db)), n, plan[n]))
                pg.drop_database(db)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("Telemetry ingest: rows stored per second, one transaction per batch of one "
          "9-value NOTIFY from each of N devices")
    print()
    print("| devices per batch | rows per batch | timed batches | SQLite rows/s "
          "| PostgreSQL rows/s | SQLite ms/batch | PostgreSQL ms/batch |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, k in plan.items():
        sq, pq = times[("SQLite", n)][:k], times[("PostgreSQL", n)][:k]
        rows = n * len(OBJECTS)
        print("| %d | %d | %d | %.0f | %.0f | %.1f | %.1f |" % (
            n, rows, k, rows * k / sum(sq), rows * k / sum(pq),
            1000 * sum(sq) / k, 1000 * sum(pq) / k))
    print()
    print("PostgreSQL: the store now (telemetry partitioned by day, binary COPY) against "
          "the store before (schema 1: one plain table, text COPY) and the plain table "
          "with binary COPY, same run, rows/s:")
    print()
    print("| devices per batch | now | before | plain table, binary COPY | now / before |")
    print("|---:|---:|---:|---:|---:|")
    for n, k in plan.items():
        rows = n * len(OBJECTS)
        now, before, plain = (rows * k / sum(times[(name, n)][:k]) for name in (
            "PostgreSQL", "PostgreSQL before", "PostgreSQL plain binary"))
        print("| %d | %.0f | %.0f | %.0f | %.2f |" % (n, now, before, plain, now / before))
    if growth:
        print()
        print("Cost per batch as history builds up (%d devices, %d rows per batch), "
              "mean ms per batch:" % (GROWTH_DEVICES, GROWTH_DEVICES * len(OBJECTS)))
        print()
        spans = [(0, 10), (25, 35), (50, 60)]
        print("| backend | " + " | ".join("batches %d-%d" % (a + 1, b) for a, b in spans)
              + " |")
        print("|---|" + "---:|" * len(spans))
        for name in ("SQLite", "PostgreSQL"):
            ts = times[(name, GROWTH_DEVICES)]
            print("| %s | " % name + " | ".join(
                "%.1f" % (1000 * sum(ts[a:b]) / (b - a)) for a, b in spans) + " |")
    print()
    print("CPython %s, SQLite %s, PostgreSQL %s, %d cores; whole run %.0f s" % (
        platform.python_version(), sqlite3.sqlite_version, pgver, os.cpu_count(),
        time.perf_counter() - began))


if __name__ == "__main__":
    main(sys.argv[1:])
