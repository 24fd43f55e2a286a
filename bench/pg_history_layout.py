"""PostgreSQL history layouts, prototyped outside the store: values/s of one batch's COPY + commit.

    python3 bench/pg_history_layout.py [--rounds 2] [--devices 1000] [--batches 10]

A batch is one 9-value heat-pump NOTIFY from each of N devices (as
bench/store_ingest.py), written in one transaction: BEGIN, one binary COPY,
COMMIT (fsync on, synchronous_commit on: the store's durability). Only the
history table, no latest values and no checks: what the history layout alone
costs. Layouts (each a fresh database, time partitions of a day as the store):

- value rows: one row per value, PRIMARY KEY (device, service, object, t)
  (the store's schema 2 and 3);
- value rows, key (device, service, t, object): the same rows, the key's
  columns in another order (a batch's 9 entries of a device side by side);
- value rows, the key's index at fillfactor 50 (room in each leaf page);
- value rows, no key: the heap alone (what the index costs, as a floor);
- frame rows: one row per (device, service, t), the frame's object ids and
  values as parallel arrays (integer[], json[]), PRIMARY KEY (device,
  service, t).

Each cell: a few warm-up batches (history in every series), then timed
batches five minutes apart; the layouts run in turn, `rounds` times, on one
server. Per batch: building the COPY stream in Python, the COPY, the COMMIT,
and the WAL written (pg_current_wal_lsn before and after).
"""
import os
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import psycopg  # noqa: E402
import postgres  # noqa: E402  (tests/postgres.py)

T0 = 1700000000
DAY = 86400
HEAT_PUMP = 0x10
OBJECTS = (1, 2, 3, 4, 8, 10, 11, 12, 15)
BASE = (1234, -80, 2301, 536, 352, 481, -52, 214, 4520)

_HEAD = b"PGCOPY\n\xff\r\n\0" + bytes(8)
_END = b"\xff\xff"

VALUE_COLUMNS = ("device text NOT NULL, service smallint NOT NULL, object integer NOT NULL, "
                 "t double precision NOT NULL, value json NOT NULL")
LAYOUTS = {
    "value rows, key (device, service, object, t)":
        ("(%s, PRIMARY KEY (device, service, object, t))" % VALUE_COLUMNS, "value"),
    "value rows, key (device, service, t, object)":
        ("(%s, PRIMARY KEY (device, service, t, object))" % VALUE_COLUMNS, "value"),
    "value rows, key (device, service, object, t), index fillfactor 50":
        ("(%s, PRIMARY KEY (device, service, object, t) WITH (fillfactor = 50))"
         % VALUE_COLUMNS, "value"),
    "value rows, no key":
        ("(%s)" % VALUE_COLUMNS, "value"),
    "frame rows, key (device, service, t)":
        ("(device text NOT NULL, service smallint NOT NULL, t double precision NOT NULL, "
         "objects integer[] NOT NULL, vals json[] NOT NULL, "
         "PRIMARY KEY (device, service, t))", "frame"),
}


def frames(devices, t):
    """[(device, service, t, [object], [value JSON text])] of one batch."""
    return [(d, HEAT_PUMP, float(t), OBJECTS,
             [str(b + (k + t) % 7) for b in BASE]) for k, d in enumerate(devices)]


def value_stream(batch):
    out = [_HEAD]
    row = struct.Struct("!hi").pack
    rest = struct.Struct("!ihiiidi").pack
    for dev, sid, t, objs, vals in batch:
        d = dev.encode()
        h = row(5, len(d)) + d
        for o, v in zip(objs, vals):
            b = v.encode()
            out += (h, rest(2, sid, 4, o, 8, t, len(b)), b)
    out.append(_END)
    return b"".join(out)


def frame_stream(batch):
    out = [_HEAD]
    head = struct.Struct("!hi").pack
    mid = struct.Struct("!ihid").pack
    arr = struct.Struct("!iiiiii").pack     # length, ndim 1, no NULLs, oid, n, from 1
    for dev, sid, t, objs, vals in batch:
        d = dev.encode()
        n = len(objs)
        ints = struct.pack("!" + "ii" * n, *[x for o in objs for x in (4, o)])
        vs = b"".join(struct.pack("!i", len(v)) + v.encode() for v in vals)
        out += (head(5, len(d)), d, mid(2, sid, 8, t),
                arr(20 + len(ints), 1, 0, 23, n, 1), ints, arr(20 + len(vs), 1, 0, 114, n, 1), vs)
    out.append(_END)
    return b"".join(out)


def cell(url, layout, n, warm, timed):
    ddl, kind = LAYOUTS[layout]
    cols = ("device, service, object, t, value" if kind == "value"
            else "device, service, t, objects, vals")
    build = value_stream if kind == "value" else frame_stream
    devices = ["hp-%05d" % i for i in range(n)]
    got = {"build": [], "copy": [], "commit": [], "wal": []}
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE h %s PARTITION BY RANGE (t)" % ddl)
        for k in range(T0 // DAY, T0 // DAY + 2):
            db.execute("CREATE TABLE h_%d PARTITION OF h FOR VALUES FROM (%d) TO (%d)"
                       % (k, k * DAY, (k + 1) * DAY))
        t = T0
        for i in range(warm + timed):
            t += 300
            t0 = time.perf_counter()
            payload = build(frames(devices, t))
            t1 = time.perf_counter()
            lsn = db.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            db.execute("BEGIN")
            t2 = time.perf_counter()
            with db.cursor().copy("COPY h (%s) FROM STDIN (FORMAT BINARY)" % cols) as cp:
                cp.write(payload)
            t3 = time.perf_counter()
            db.execute("COMMIT")
            t4 = time.perf_counter()
            wal = db.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (lsn,)).fetchone()[0]
            if i >= warm:
                got["build"].append(t1 - t0)
                got["copy"].append(t3 - t2)
                got["commit"].append(t4 - t3)
                got["wal"].append(float(wal))
        size = db.execute("SELECT pg_total_relation_size('h_%d')" % (T0 // DAY)).fetchone()[0]
    got["size"] = size
    return got


def main(argv):
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 2
    n = int(argv[argv.index("--devices") + 1]) if "--devices" in argv else 1000
    k = int(argv[argv.index("--batches") + 1]) if "--batches" in argv else 10
    warm = 5
    load = os.getloadavg()
    began = time.perf_counter()
    res = {}
    with postgres.PostgresServer(durable=True) as pg:
        for r in range(rounds):
            for i, layout in enumerate(LAYOUTS):
                name = "l%d_%d" % (r, i)
                got = cell(pg.create_database(name), layout, n, warm, k)
                pg.drop_database(name)
                res.setdefault(layout, []).append(got)
    values = n * len(OBJECTS)
    print("History layouts, %d devices x %d values per batch (%d values), %d timed batches "
          "after %d warm-up, cells in turn, %d rounds; values/s of COPY + COMMIT per round, "
          "then medians of all batches in ms:" % (n, len(OBJECTS), values, k, warm, rounds))
    print()
    print("| layout | values/s, COPY + COMMIT (per round) | build ms | COPY ms | COMMIT ms "
          "| WAL KiB per batch | day partition MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for layout, cells in res.items():
        rates = ", ".join("%.0f" % (values * k / (sum(c["copy"]) + sum(c["commit"])))
                          for c in cells)

        def med(key):
            return statistics.median(x for c in cells for x in c[key])
        print("| %s | %s | %.1f | %.1f | %.1f | %.0f | %.1f |" % (
            layout, rates, 1000 * med("build"), 1000 * med("copy"), 1000 * med("commit"),
            med("wal") / 1024, cells[-1]["size"] / 2 ** 20))
    print()
    print("load average at start %.1f %.1f %.1f, at end %.1f %.1f %.1f; %d cores; %.0f s"
          % (load + os.getloadavg() + (os.cpu_count(), time.perf_counter() - began)))


if __name__ == "__main__":
    main(sys.argv[1:])
