"""Memory of one bridge process per registered device: RSS at 0, 1 000 and 10 000 devices.

    python3 bench/bridge_memory.py
    python3 bench/bridge_memory.py --aiocoap   # also with coap:// on aiocoap, same run

`spot bridge` (the real service, SQLite store in its data directory) runs as
its own process; a second process holds 10 000 light CoAP devices
(bench/bridge_ingest.CoapFleet, one UDP socket each) and registers them in
stages (ANNOUNCE over CoAP until each has its RESULT): 1 000, then 9 000
more. After each stage the bench waits until the bridge is idle and reads
its resident set size (VmRSS) from /proc; then every device sends one NOTIFY
(what a device does next) and RSS is read again. The slope between 1 000 and
10 000 devices is the cost of one more device; everything the bridge keeps
per device is in it (registry caches, presence, CoAP routes and aiocoap's
state per remote, delivery tasks, SQLite's page cache in the process).
"""
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bridge_ingest import (BridgeProcess, CoapFleet, notify_template, raise_fd_limit,  # noqa: E402
                           rss_bytes, settle, T0)

STAGES = (0, 1000, 10000)


async def devices(n, host, port, stages):
    """`--devices N HOST PORT 1000,10000`: register devices up to each stage, printing
    after each; wait for a line on stdin before the next stage; then one NOTIFY each."""
    raise_fd_limit()
    fleet = await CoapFleet(n, (host, port)).open()
    loop = asyncio.get_running_loop()
    done = 0
    for upto in stages:
        t = await fleet.register(indices=range(done, upto))
        done = upto
        print(json.dumps({"registered": upto, "seconds": t}), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
    frame_of = notify_template()
    st = {"open": 0, "left": n, "acked": 0}
    fut = loop.create_future()

    def answered(code, data):
        st["open"] -= 1
        st["left"] -= 1
        st["acked"] += code is not None and code >> 5 == 2
        if not st["left"]:
            fut.set_result(None)
    for i in range(n):   # at most 128 in flight, like the ingest bench
        while st["open"] >= 128:
            await asyncio.sleep(0.005)
        st["open"] += 1
        fleet.post(i, frame_of(T0 + 1), answered)
    await asyncio.wait_for(fut, 300)
    print(json.dumps({"notified": st["acked"]}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    fleet.close()


def main(argv):
    if argv[:1] == ["--devices"]:
        asyncio.run(devices(int(argv[1]), argv[2], int(argv[3]),
                            [int(x) for x in argv[4].split(",")]))
        return
    raise_fd_limit()
    began = time.perf_counter()
    for fast in (True, False) if "--aiocoap" in argv else (True,):
        measure(fast)
    print("CPython %s, %d cores; whole run %.0f s" % (platform.python_version(), os.cpu_count(),
                                                    time.perf_counter() - began))


def measure(coap_fast):
    tmp = tempfile.mkdtemp(prefix="spot-memory-bench-")
    rows = []
    bridge = BridgeProcess(os.path.join(tmp, "data"), coap_fast=coap_fast)
    gen = None
    try:
        bridge.start()
        settle(bridge.pid)
        rows.append((0, rss_bytes(bridge.pid), None))
        stages = [s for s in STAGES if s]
        gen = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--devices",
                                str(stages[-1]), "127.0.0.1", str(bridge.coap_port),
                                ",".join(map(str, stages))],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for s in stages:
            got = json.loads(gen.stdout.readline())
            assert got["registered"] == s
            settle(bridge.pid)
            rows.append((s, rss_bytes(bridge.pid), got["seconds"]))
            gen.stdin.write("next\n")
            gen.stdin.flush()
        got = json.loads(gen.stdout.readline())
        settle(bridge.pid)
        after = rss_bytes(bridge.pid)
        notified = got["notified"]
        gen.stdin.write("end\n")
        gen.stdin.flush()
        gen.wait(60)
        health = bridge.get("/api/v1/health")
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
        bridge.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    mib = 1024.0 * 1024.0
    print("Bridge process RSS (`spot bridge`, SQLite store) by registered CoAP devices, "
          "coap:// on %s" % ("SPOT's endpoint (coap_fast)" if coap_fast else "aiocoap"))
    print()
    print("| registered devices | RSS MiB | registration s | RSS per device over the previous "
          "row, bytes |")
    print("|---:|---:|---:|---:|")
    prev = None
    for n, rss, secs in rows:
        per = "-" if prev is None or n == prev[0] else "%.0f" % ((rss - prev[1]) / (n - prev[0]))
        print("| %d | %.1f | %s | %s |" % (n, rss / mib, "-" if secs is None else "%.1f" % secs,
                                           per))
        prev = (n, rss)
    last = rows[-1]
    print("| %d, after one NOTIFY each (%d acknowledged) | %.1f | - | %.0f |" % (
        last[0], notified, after / mib, (after - last[1]) / last[0]))
    print()
    first = rows[1]
    print("Slope from %d to %d devices: %.1f KiB per device; %d devices on the bridge's "
          "health endpoint." % (first[0], last[0], (last[1] - first[1]) / (last[0] - first[0])
                                / 1024, health["devices"]))
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
