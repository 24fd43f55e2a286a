"""Command fan-out of one bridge process: one group command to N devices until all are done.

    python3 bench/bridge_fanout.py            # markdown table for docs/benchmarks.md
    python3 bench/bridge_fanout.py --quick    # 100 and 1 000 devices, SQLite only
    python3 bench/bridge_fanout.py --sizes=1000,10000 --baseline=../spot-before --repeat=2
    python3 bench/bridge_fanout.py --sizes=10000 --stores=sqlite --profile=prof
    python3 bench/bridge_fanout.py --target=HOST:5683 --api=http://HOST:8080 --devices=1000
                                              # a deployment: bench/fanout_against.py

Options: --sizes=N,N (devices per cell), --stores=sqlite,postgresql, --window=64
(ANNOUNCEs the device process keeps in flight while registering),
--clock=result,write (the devices take their clock from the registration's
RESULT, ANNOUNCE flag bit 1 of spec 3.1, the default; or are old-style devices
that get a clock WRITE after registering: a cell for each kind given),
--baseline=DIR (a project tree, e.g. `git archive main`: every cell is run with
that code too, alternating with this tree's, so before/after come from one
run), --repeat=K (each cell K times), --profile=DIR (py-spy samples the bridge
during registration and during the fan-out: DIR/<cell>-register.txt and
-fanout.txt, raw collapsed stacks, plus a summary by function printed to
stderr).

Each cell runs `spot bridge` (the real service) on a fresh store and, as a
second process, N light CoAP devices (bench/bridge_ingest.CoapFleet: one UDP
socket each) that register with the bridge and answer every request the
bridge POSTs to their /s with a RESULT. Every device is put in group "all"
(one SQL statement on the store before the timed part: group assignment is
set-up, not what is measured), then the bench POSTs ONE command,

    POST /api/v1/groups/all/commands  {"service": "heat_pump", "op": "write",
                                       "values": {"sg_ready": 2}}

and waits until /metrics counts N commands done. Per device, the latency is
the command's completed_at in the store (the bridge's RESULT handled and
committed) minus the moment the POST was sent; the table gives its p50 and
p99, the time to the last device, and the time the POST took to answer 202
(every command queued: the API answers only after queueing all N).
The store is read directly at the end to count statuses: every command must
be done and every device must have received exactly its command.
Registration: "registration s" until every device had the RESULT to its
ANNOUNCE; "every clock set s" until the last clock WRITE that follows was
answered too (the same as registration when the devices take the time from the
RESULT and the bridge knows flag bit 1); "bridge CPU s, registration to idle"
the bridge process's CPU from the first ANNOUNCE until it is idle again (clock
sets and delivery checks included).

    python3 bench/bridge_fanout.py --in-process [N]   # the store and service only

The same registration and group command in ONE process, without a network:
the bridge service (service.Bridge) on a real store (a SQLite file, a durable
PostgreSQL from tests/postgres.py) and N test-double devices on the
in-process transport (local_transport.LocalTransport), each ANNOUNCE sent by
64 concurrent registrations, each command answered with a RESULT at once. It
times what the store and the service cost, apart from CoAP, and the process's
CPU seconds (both threads: the event loop and SQLite's worker) of each phase. It uses only
interfaces older than the batching, so the same file run against an older
checkout (PYTHONPATH) gives the before column of one comparison.
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

from bridge_ingest import (BridgeProcess, CoapFleet, CpuWindow, baseline_path,  # noqa: E402
                           cluster_cpu_seconds, cpu_seconds, option, percentile, raise_fd_limit, settle,
                           wait_progress, wait_until)
from spot.core.node import FLAG_CLOCK  # noqa: E402

SIZES = (100, 1000, 10000)
COMMAND = {"service": "heat_pump", "op": "write", "values": {"sg_ready": 2}}


# ------------------------------------------------------------------ the device process

async def devices(n, host, port, window, flags=None):
    """`--devices N HOST PORT WINDOW [FLAGS]`: open N sockets, say so, register the N
    devices when told `go` on stdin (WINDOW ANNOUNCEs in flight; ANNOUNCE flags FLAGS,
    0: old-style devices that get a clock WRITE), then answer commands until told
    `report`; print what they received."""
    raise_fd_limit()
    fleet = CoapFleet(n, (host, port))
    if flags is not None:
        fleet.flags = flags
    await fleet.open()
    loop = asyncio.get_running_loop()
    print(json.dumps({"opened": n}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    reg = await fleet.register(concurrency=window)
    print(json.dumps({"registered": reg, "retransmits": fleet.retransmits}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    times = [t for t, _ in fleet.commanded.values()]
    print(json.dumps({"commanded": len(fleet.commanded), "served": fleet.requests_served,
                      "first": min(times) if times else None,
                      "last": max(times) if times else None}), flush=True)
    fleet.close()


# ------------------------------------------------------------------ the orchestrator

def store_query(url, sql):
    if url.startswith("sqlite"):
        import sqlite3
        with sqlite3.connect(url.split("://", 1)[1]) as db:
            rows = db.execute(sql).fetchall()
            db.commit()
            return rows
    import psycopg
    with psycopg.connect(url) as db:
        cur = db.execute(sql)
        rows = cur.fetchall() if cur.description else []
        db.commit()
        return rows


class Sampler:
    """py-spy recording one process into a raw collapsed-stacks file until stop()."""

    def __init__(self, pid, out):
        import subprocess
        self.out = out
        self.proc = subprocess.Popen(
            [shutil.which("py-spy"), "record", "-p", str(pid), "-r", "200", "-f", "raw",
             "--nonblocking", "--full-filenames", "-o", out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)   # py-spy attaches

    def stop(self):
        import signal
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)
        return self.out


def summarise(path, top=25):
    """The functions most samples were in (innermost SPOT or library frame), as text."""
    import collections
    import re
    own, total = collections.Counter(), 0
    frame = re.compile(r"^(.*) \(([^():]+):\d+\)$")
    with open(path) as f:
        for line in f:
            stack, _, k = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            k = int(k)
            total += k
            seen = set()
            for fr in stack.split(";"):
                m = frame.match(fr)
                name = "%s (%s)" % (m.group(1), "/".join(m.group(2).split("/")[-2:])) if m else fr
                if name not in seen:   # inclusive: once per stack
                    seen.add(name)
                    own[name] += k
    lines = ["%d samples in %s; inclusive share per function:" % (total, os.path.basename(path))]
    for name, k in own.most_common(top):
        lines.append("  %5.1f %%  %s" % (100.0 * k / max(1, total), name))
    return "\n".join(lines)


def run_cell(tmp, n, store_url, code=None, window=64, profile=None, label="", clock="result",
             pg=None):
    import subprocess
    data = tempfile.mkdtemp(dir=tmp, prefix="bridge-")
    bridge = BridgeProcess(data, store=store_url, command_timeout=60, code=code)
    gen = None
    try:
        bridge.start()
        gen = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--devices", str(n),
                                "127.0.0.1", str(bridge.coap_port), str(window),
                                str(FLAG_CLOCK if clock == "result" else 0)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        json.loads(gen.stdout.readline())   # its sockets are open
        spy = Sampler(bridge.pid, os.path.join(profile, label + "-register.txt")) \
            if profile else None
        reg_cpu = CpuWindow(bridge=bridge.pid, devices=gen.pid).start()
        server0 = cluster_cpu_seconds(pg.datadir) if pg is not None else None
        bridge_cpu0, t_go = cpu_seconds(bridge.pid), time.monotonic()
        gen.stdin.write("go\n")
        gen.stdin.flush()
        registered = json.loads(gen.stdout.readline())
        reg = registered["registered"]
        reg_cpu = reg_cpu.stop()
        if pg is not None:   # PostgreSQL's processes, from the first ANNOUNCE to the last RESULT
            reg_cpu["server_s"] = cluster_cpu_seconds(pg.datadir) - server0
        # the clock WRITEs that follow (none to devices taking the RESULT's, unless the
        # baseline is older than flag bit 1 and sends them anyway)
        sets = lambda: bridge.metric("spot_bridge_clock_sets_total", status="done")  # noqa: E731
        writes = n if clock == "write" or (code is not None and wait_until(sets, 1.0)) else 0
        wait_progress(sets, writes, stall=30, timeout=600, every=0.2)
        clocked = max(reg, time.monotonic() - t_go) if writes else reg
        clock_writes = bridge.metric("spot_bridge_clock_sets_total", status="done")
        if spy is not None:
            print(summarise(spy.stop()), file=sys.stderr, flush=True)
        settle(bridge.pid)
        settled_cpu = cpu_seconds(bridge.pid) - bridge_cpu0
        store_query(store_url, "INSERT INTO device_groups (device, grp) "
                               "SELECT id, 'all' FROM devices")
        spy = Sampler(bridge.pid, os.path.join(profile, label + "-fanout.txt")) \
            if profile else None
        cpu = CpuWindow(bridge=bridge.pid, devices=gen.pid).start()
        t_post = time.time()
        status, answer = bridge.post("/api/v1/groups/all/commands", COMMAND, timeout=600)
        t_queued = time.time() - t_post
        assert status == 202 and len(answer["commands"]) == n, (status, len(answer["commands"]))
        done, _, _ = wait_progress(
            lambda: bridge.metric("spot_bridge_commands_total", status="done"), n,
            stall=30, timeout=600, every=0.1)
        usage = cpu.stop()
        if spy is not None:
            print(summarise(spy.stop()), file=sys.stderr, flush=True)
        gen.stdin.write("report\n")
        gen.stdin.flush()
        dev = json.loads(gen.stdout.readline())
        gen.wait(30)
        bridge.stop()
        rows = store_query(store_url, "SELECT status, completed_at FROM commands")
        statuses = {}
        for s, _ in rows:
            statuses[s] = statuses.get(s, 0) + 1
        lat = [c - t_post for s, c in rows if s == "done"]
        return {"devices": n, "registered_s": reg, "reg_cpu": reg_cpu, "clock": clock,
                "clocked_s": clocked, "clock_writes": clock_writes,
                "reg_bridge_cpu_s": settled_cpu,
                "reg_retransmits": registered.get("retransmits"), "queued_s": t_queued,
                "p50": percentile(lat, 50), "p99": percentile(lat, 99),
                "last": max(lat) if lat else float("nan"), "statuses": statuses,
                "all_done": done and statuses.get("done") == n, "device_side": dev,
                "cpu": usage, "code": "before" if code else "after",
                "store": "SQLite" if store_url.startswith("sqlite") else "PostgreSQL"}
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
        bridge.kill()


def fmt(r):
    ok = "yes" if r["all_done"] and r["device_side"]["commanded"] == r["devices"] \
        else "NO %s, %d devices commanded" % (r["statuses"], r["device_side"]["commanded"])
    return ("| %s | %s | %s | %d | %.2f | %.0f / %.0f / %.0f | %.2f | %d | %.2f | %.2f | %.2f "
            "| %.2f | %.2f | %s | %.0f / %.0f / %.0f | %s |") % (
        r["store"], r["code"], r["clock"], r["devices"], r["registered_s"],
        r["reg_cpu"]["bridge"], r["reg_cpu"]["devices"], r["reg_cpu"]["machine"],
        r["clocked_s"], r["clock_writes"], r["reg_bridge_cpu_s"],
        r["queued_s"], r["p50"], r["p99"], r["last"], ok, r["cpu"]["bridge"],
        r["cpu"]["devices"], r["cpu"]["machine"],
        "%.2f" % r["reg_cpu"]["server_s"] if "server_s" in r["reg_cpu"] else "-")


HEADER = ("| store | code | devices' clock | devices | registration s "
          "| CPU % bridge / devices / machine | every clock set s | clock WRITEs "
          "| bridge CPU s, registration to idle "
          "| POST answered (all queued) s | done p50 s | done p99 s | last done s "
          "| all done, each device once | CPU % bridge / devices / machine "
          "| PostgreSQL CPU s, registration |\n"
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")


# ------------------------------------------------------------------ in one process

class AnsweringDevice:
    """Test double of a heat pump on the in-process transport: ANNOUNCEs, and answers
    every request with a RESULT."""

    def __init__(self, device_id):
        self.id = device_id

    def announce(self):
        from spot.core import frame as F
        return F.encode(F.ANNOUNCE, 0, 1, {0: self.id, 1: [[0x10, 1, 0]]})

    def receive(self, frame, now, peer):
        from spot.core import frame as F
        _, sid, mid, _ = F.decode(frame)
        return F.encode(F.RESULT, sid, mid, None)


async def in_process_cell(n, url, data):
    from spot.cloud_bridge import config as C
    from spot.cloud_bridge.local_transport import LocalTransport
    from spot.cloud_bridge.service import Bridge
    from spot.cloud_bridge.store import Q, open_store
    store = await open_store(url)
    bridge = Bridge(C.load(None, data=data), store)
    await bridge.start()
    try:
        local = LocalTransport(bridge)
        fleet = [AnsweringDevice("hp-%05d" % i) for i in range(n)]
        gate = asyncio.Semaphore(64)

        async def register(dev):
            async with gate:
                await local.connect(dev.id, dev)
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(register(dev) for dev in fleet))
        registered = time.perf_counter() - t0
        await bridge.deliveries_done()        # the clock sets that follow registration
        reg_cpu = time.process_time() - c0

        def group():
            yield Q("INSERT INTO device_groups (device, grp) SELECT id, 'all' FROM devices", ())
        await store._run(group)
        t0, c0 = time.perf_counter(), time.process_time()
        commands, refused = await bridge.submit_group("operator", "all", 0x10, 2, {8: 2})
        queued = time.perf_counter() - t0
        await bridge.deliveries_done()
        last = time.perf_counter() - t0
        fan_cpu = time.process_time() - c0
        done = sum(1 for c in await store.list_commands(limit=n) if c.status == "done")
        assert len(commands) == n and not refused and done == n, (len(commands), done)
        return {"registered_s": registered, "queued_s": queued, "last": last,
                "reg_cpu": reg_cpu, "fan_cpu": fan_cpu}
    finally:
        await bridge.stop()
        await store.close()


def in_process(argv):
    n = int(argv[0]) if argv else 10000
    tmp = tempfile.mkdtemp(prefix="spot-fanout-inproc-")
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    import postgres
    pg = postgres.PostgresServer(durable=True).start()
    try:
        rows = []
        for store in ("SQLite", "PostgreSQL"):
            url = ("sqlite:///" + os.path.join(tmp, "inproc.db") if store == "SQLite"
                   else pg.create_database("inproc"))
            r = asyncio.run(in_process_cell(n, url, tempfile.mkdtemp(dir=tmp)))
            rows.append("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
                store, n, r["registered_s"], r["reg_cpu"], r["queued_s"], r["last"],
                r["fan_cpu"]))
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| store | devices | registration s | its CPU s (with the clock sets after) "
          "| group command queued s | last done s | its CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


def main(argv):
    if argv[:1] == ["--devices"]:
        asyncio.run(devices(int(argv[1]), argv[2], int(argv[3]),
                            int(argv[4]) if len(argv) > 4 else 64,
                            int(argv[5]) if len(argv) > 5 else None))
        return
    if argv[:1] == ["--in-process"]:
        in_process(argv[1:])
        return
    if option(argv, "target"):
        import fanout_against   # against a bridge already running: bench/fanout_against.py
        fanout_against.main(argv)
        return
    quick = "--quick" in argv
    sizes = [int(x) for x in option(argv, "sizes", "").split(",") if x] \
        or list(SIZES[:2] if quick else SIZES)
    stores = option(argv, "stores", "sqlite" if quick else "sqlite,postgresql").split(",")
    window = int(option(argv, "window", "64"))
    repeat = int(option(argv, "repeat", "1"))
    profile = option(argv, "profile")
    clocks = option(argv, "clock", "result").split(",")
    if profile:
        os.makedirs(profile, exist_ok=True)
    raise_fd_limit()
    began = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="spot-fanout-bench-")
    base = option(argv, "baseline")
    codes = [None, baseline_path(base, tmp)] if base else [None]
    results = []
    pg = None
    load = [os.getloadavg()[0]]
    try:
        if "postgresql" in stores:
            sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
            import postgres
            pg = postgres.PostgresServer(durable=True).start()
        k = 0
        for rep in range(repeat):
            for store in stores:
                for n, clock in [(n, c) for n in sizes for c in clocks]:
                    # alternate which code goes first, so neither always meets the fresher machine
                    for code in (codes if rep % 2 == 0 else codes[::-1]):
                        k += 1
                        if store == "sqlite":
                            url = "sqlite:///" + os.path.join(tmp, "fanout-%d.db" % k)
                        else:
                            url = pg.create_database("fanout_%d" % k)
                        label = "%s-%d-%s-%s-%d" % (store, n, clock,
                                                    "before" if code else "after", rep)
                        r = run_cell(tmp, n, url, code, window, profile, label, clock,
                                     pg if store == "postgresql" else None)
                        results.append(r)
                        load.append(os.getloadavg()[0])
                        print(fmt(r), file=sys.stderr, flush=True)
                        if store == "postgresql":
                            pg.drop_database("fanout_%d" % k)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("One group command (POST /api/v1/groups/all/commands, a heat pump write) to N "
          "CoAP devices, one bridge process; seconds from the POST; registration with %d "
          "ANNOUNCEs in flight" % window)
    print()
    print(HEADER)
    for r in results:
        print(fmt(r))
    print()
    print("CPython %s, %d cores; whole run %.0f s; 1-minute load average %.1f-%.1f"
          % (platform.python_version(), os.cpu_count(), time.perf_counter() - began,
             min(load), max(load)))
    print(json.dumps(results), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
