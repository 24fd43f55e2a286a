"""IEC 61850 MMS server of the bridge: reads/s, controls/s, report latency,
start-up time and memory per device, with the same read over the HTTP API.

    python3 bench/iec61850_rw.py [--sizes 10,100] [--reads 500] [--controls 100] [--reports 20]

For each fleet size a fresh bridge (SQLite store) with N simulated
batteries on the in-process transport registers them, then starts the
iec61850 plugin (measured: the time until it listens, until every LD's
values are loaded, and the process's resident memory per device before and
after; then again after the plugin has read every device's name plate
through the command queue). The devices register through the bridge's own
path (ANNOUNCE and a telemetry NOTIFY handed to Bridge.device_frame), 250
concurrently. One libiec61850
client (pyiec61850-ng, its own process, tests/iec61850_peers) then

- reads one measurement (ZBAT1.SocPct, FC MX) --reads times in a row;
- operates the battery set-point (DRCC1.OutWSet, direct-with-normal-
  security) --controls times in a row: each goes through the durable
  command queue to the device and back before the MMS answer;
- with a URCB enabled, gets a report for each of --reports NOTIFYs the
  bench hands the bridge for one device: latency from NOTIFY to the
  report's arrival at the client (both clocks are this host's).

An HTTP client (urllib, its own process) GETs the device from the HTTP API
(/api/v1/devices/{id}, its latest values) --reads times for comparison.
"""
import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "..", "tests", "iec61850_peers", "libiec61850_client.py")

from aiohttp import web  # noqa: E402

from spot.cloud_bridge import config as C  # noqa: E402
from spot.cloud_bridge.http_api import make_app, API  # noqa: E402
from spot.cloud_bridge.local_transport import LocalTransport  # noqa: E402
from spot.cloud_bridge.plugin_api import PluginHost  # noqa: E402
from spot.cloud_bridge.service import Bridge  # noqa: E402
from spot.cloud_bridge.store import open_store  # noqa: E402
from spot.core import frame as F  # noqa: E402
from spot.core.services import BATTERY  # noqa: E402
from spot.ports.cpython.simulator import SimDevice  # noqa: E402

HTTP_CLIENT = r"""
import sys, time, json, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
lat = []
begin = time.perf_counter()
for _ in range(n):
    t = time.perf_counter()
    with urllib.request.urlopen(url) as r:
        json.loads(r.read())
    lat.append((time.perf_counter() - t) * 1000)
print(json.dumps({"n": n, "seconds": time.perf_counter() - begin, "latencies_ms": sorted(lat)}))
"""


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def pct(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))]


def line(name, r):
    lat = r["latencies_ms"]
    return "%-28s %8.0f/s   p50 %6.2f ms   p99 %6.2f ms" % (
        name, r["n"] / r["seconds"], pct(lat, 0.5), pct(lat, 0.99))


async def peer(port, steps, timeout=600):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, PEER, str(port), json.dumps(steps), stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    results = json.loads(out.decode().strip().splitlines()[-1])
    for r in results:
        if "ok" not in r:
            raise RuntimeError("%s: %s" % (steps, r))
    return [r["ok"] for r in results]


async def report_latency(bridge, port, domain, device, count):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, PEER, str(port), json.dumps([["report_stream", domain + "/LLN0.RP.urcbAll01",
                                                      count * 1.1 + 10]]),
        stdout=asyncio.subprocess.PIPE)
    try:
        while (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() != b"READY":
            pass
        await asyncio.sleep(0.5)
        lat = []
        for i in range(count):
            frame = F.encode(F.NOTIFY, BATTERY, 0, [int(time.time()), {1: 1000 + i}])
            t0 = time.time()
            await bridge.device_frame("local", device, frame)
            while True:
                got = (await asyncio.wait_for(proc.stdout.readline(), 10)).split()
                if got and got[0] == b"R" and float(got[1]) >= t0:
                    lat.append((float(got[1]) - t0) * 1000)
                    break
            await asyncio.sleep(1.05)   # the store keeps a newer second's value only
        return sorted(lat)
    finally:
        proc.kill()
        await proc.wait()


async def register(local, n, at_once=250):
    """N SimDevices registered through the bridge's own path (ANNOUNCE, then a
    telemetry NOTIFY, each handed to Bridge.device_frame by the in-process
    transport), at_once of them concurrently."""
    t0 = int(time.time())
    for first in range(0, n, at_once):
        devs = [SimDevice("battery", "bat%05d" % i, seed=i, t0=t0)
                for i in range(first, min(n, first + at_once))]
        await asyncio.gather(*(local.connect(d.device_id, d) for d in devs))
        await asyncio.gather(*(local.uplink(d.device_id, d.advance(t0 + 1)) for d in devs))


async def one_size(n, args):
    with tempfile.TemporaryDirectory() as data:
        cfg = C.load(None, data=data, offline_after=3600,
                     plugins={"iec61850": {"role": "aggregator", "port": 0}})
        store = await open_store(cfg.store_url)
        bridge = Bridge(cfg, store)
        await bridge.start()
        host = PluginHost(bridge, cfg.plugins).load()
        local = LocalTransport(bridge)
        began = time.perf_counter()
        await register(local, n)
        await bridge.ingest.close()
        registered = time.perf_counter() - began
        runner = web.AppRunner(make_app(bridge), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        http_port = runner.addresses[0][1]
        before = rss_kb()
        plugin = host.plugins["iec61850"][0]
        start = time.perf_counter()
        timed = {}
        plugin_start = plugin.start

        async def timed_start():   # the plugin's own start, without the host's pairings
            timed["began"] = time.perf_counter()
            await plugin_start()
            timed["ended"] = time.perf_counter()
        plugin.start = timed_start
        await host.start()
        hosted = time.perf_counter() - start
        startup = timed["ended"] - timed["began"]
        start = timed["began"]
        while not all(plugin.serving(d) for d in plugin.acsi.model.by_device):
            await asyncio.sleep(0.1)
        loaded = time.perf_counter() - start
        served = rss_kb()
        deadline = time.monotonic() + args.name_plates   # let the name plate READs finish first
        while len(plugin.acsi.fetched) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        plates = time.perf_counter() - start
        while not plugin.settled:   # the name plates' values written before measuring
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        after = rss_kb()
        try:
            port = plugin.bound_port
            domain = plugin.acsi.model.by_device["bat00000"].domain
            print("\n== %d devices (registered in %.1f s): host start (pairing the plugin with "
                  "every device, then the plugin) %.2f s; plugin start (model, served model, "
                  "listening) %.2f s, every LD's values loaded %.2f s after it began; resident "
                  "memory per device: +%.1f KB then, +%.1f KB once %d name plates were read "
                  "(%.0f s after it began)"
                  % (n, registered, hosted, startup, loaded, (served - before) / n,
                     (after - before) / n, len(plugin.acsi.fetched), plates))
            reads = (await peer(port, [["time_read", domain + "/ZBAT1.SocPct", "MX", args.reads]]))[0]
            print(line("MMS read (libiec61850)", reads))
            proc = await asyncio.create_subprocess_exec(   # the loop serves it meanwhile
                sys.executable, "-c", HTTP_CLIENT,
                "http://127.0.0.1:%d%s/devices/bat00000" % (http_port, API), str(args.reads),
                stdout=asyncio.subprocess.PIPE)
            http = json.loads((await asyncio.wait_for(proc.communicate(), 600))[0])
            print(line("HTTP GET device (latest)", http))
            ops = (await peer(port, [["time_operate", domain + "/DRCC1.OutWSet", "apc",
                                      args.controls]]))[0]
            print(line("MMS control (direct, APC)", ops))
            lat = await report_latency(bridge, port, domain, "bat00000", args.reports)
            print("%-28s %10s   p50 %6.2f ms   p99 %6.2f ms   (%d reports, BufTm 100 ms)" % (
                "NOTIFY -> MMS report", "", pct(lat, 0.5), pct(lat, 0.99), len(lat)))
        finally:
            await host.stop()
            await runner.cleanup()
            await bridge.stop()
            await store.close()


async def main(args):
    for n in [int(x) for x in args.sizes.split(",")]:
        await one_size(n, args)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100")
    ap.add_argument("--reads", type=int, default=500)
    ap.add_argument("--controls", type=int, default=100)
    ap.add_argument("--reports", type=int, default=20)
    ap.add_argument("--name-plates", type=float, default=300,
                    help="seconds to wait for the plugin's name plate READs before measuring")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(ap.parse_args()))
