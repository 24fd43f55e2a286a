"""The dashboard's fleet page with 100 000 registered devices, in headless Chromium.

    python3 bench/fleet_page.py              # 100 000 devices (docs/benchmarks.md)
    python3 bench/fleet_page.py --quick      # 10 000 devices
    python3 bench/fleet_page.py --devices N  # N devices

A SQLite store (WAL, synchronous=FULL, a temporary directory) is seeded with N
devices (40 % heat pumps, 20 % PV, 15 % batteries, 15 % EV chargers, 10 %
meters), the latest values the fleet figures read (active power of every
device; deferrable energy, battery capacity and stored energy, EV energy
requested and delivered), the operator as every device's owner, one device in 1 000 with an active alarm, 1 000
devices in group "north", 600 devices under three plans, and an hour of the
sampled power series (60 points per profile). The bridge runs as `spot bridge`
does (its sweep included) with its HTTP API on 127.0.0.1, and Debian's
Chromium (selenium) opens the fleet page: the time from navigation to the page
being usable (main[data-ready]: the filters and the first page of 50 devices
drawn), to the aggregates (counts, power, flexibility) and the plan timeline
drawn, and to every sparkline of the page drawn,
median of 5 loads each, for the unfiltered page, a page from the middle, and
the filters. Also the API alone (median of 5): /fleet/summary and a
filtered /devices page.
"""
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from spot.cloud_bridge import config as C  # noqa: E402
from spot.cloud_bridge import store as S  # noqa: E402
from spot.cloud_bridge import store_fleet as F  # noqa: E402
from spot.cloud_bridge.http_api import make_app  # noqa: E402
from spot.cloud_bridge.service import Bridge  # noqa: E402
from spot.cloud_bridge.store import Many, open_store  # noqa: E402
from test_dashboard_browser import browser  # noqa: E402

HP, PV, BAT, EV, METER, ALARMS = 0x10, 0x11, 0x12, 0x13, 0x14, 0x03
MIX = [(HP, 40), (PV, 20), (BAT, 15), (EV, 15), (METER, 10)]


def profile_of(i):
    k = i % 100
    for sid, share in MIX:
        if k < share:
            return sid
        k -= share


def latest_rows(i, now):
    sid = profile_of(i)
    dev = "d-%06d" % i
    rows = [(dev, sid, 1, now, (i * 37) % 3000 - (2000 if sid == PV else 0))]
    if sid == HP:
        rows.append((dev, HP, 20, now, (i * 13) % 8000))
    elif sid == BAT:
        rows += [(dev, BAT, 9, now, 10000), (dev, BAT, 23, now, (i * 7) % 10000)]
    elif sid == EV:
        rows += [(dev, EV, 13, now, 20000), (dev, EV, 10, now, (i * 11) % 20000)]
    if i % 1000 == 999:
        rows.append((dev, ALARMS, 2, now, 1))
    return rows


async def pair_operator(store, operator, ids, now):
    """The operator as each device's owner, as registration pairs it (one statement)."""
    def script():
        yield Many("INSERT INTO pairings (" + S.PAIRING_COLS + ") VALUES (?, ?, ?, ?, ?)",
                   [("d-%06d" % i, operator, "owner", S.dump_value(None), float(now))
                    for i in ids])
    await store._run(script)


async def seed(store, n, now, operator):
    for start in range(0, n, 10000):
        ids = range(start, min(n, start + 10000))
        await store.upsert_devices([("d-%06d" % i, [[2, 1, 0], [ALARMS, 1, 0],
                                                    [profile_of(i), 1, 0]], [], 0) for i in ids],
                                   now)
        await pair_operator(store, operator, ids, now)
        await store.add_telemetry([r for i in ids for r in latest_rows(i, now)])
    for i in range(0, min(n, 100000), max(1, n // 1000)):
        await store.set_groups("d-%06d" % i, ["north"])
    for k, (plan_id, start, hours) in enumerate(((101, now - 1800, 2), (102, now + 3600, 1),
                                                 (103, now + 7200, 4))):
        for i in range(k, n, max(1, n // 200)):
            if profile_of(i) == HP:
                await store.record_plan("d-%06d" % i, plan_id, start, start + hours * 3600,
                                        100, {HP: {6: 3}}, "openadr", now, status="accepted")
    for m in range(60, 0, -1):
        await F.sample_power(store, now - 60 * m)


async def page_times(driver, url, runs=5):
    """Median seconds to data-ready and to every sparkline drawn (selenium's blocking calls
    run in a thread: the bridge serves on this loop)."""
    def js(script):
        return driver.execute_script(script)

    async def until(script):
        while not await asyncio.to_thread(js, script):
            await asyncio.sleep(0.02)
    ready, figures, sparks = [], [], []
    for _ in range(runs):
        await asyncio.to_thread(driver.get, "about:blank")
        t = time.perf_counter()
        await asyncio.to_thread(driver.get, url)
        await until("return document.querySelector('main').dataset.ready")
        ready.append(time.perf_counter() - t)
        await until("return document.querySelector('.aggregates').dataset.ready && "
                    "document.querySelector('#timeline').dataset.ready")
        figures.append(time.perf_counter() - t)
        await until("var r = document.querySelectorAll('#fleet tbody tr');"
                    "return [...r].every(x => x.querySelector('.key-value').textContent !== '—')")
        sparks.append(time.perf_counter() - t)
    rows = await asyncio.to_thread(js, "return document.querySelectorAll('#fleet tbody tr').length")
    return (statistics.median(ready), statistics.median(figures), statistics.median(sparks),
            rows)


async def main(n):
    tmp = tempfile.mkdtemp(prefix="spot-bench-fleet-")
    driver = None
    try:
        config = C.load(None, data=tmp)
        store = await open_store(config.store_url)
        now = int(time.time())
        t = time.perf_counter()
        await seed(store, n, now, config.operator)
        seeding = time.perf_counter() - t
        print("seeded %d devices in %.0f s" % (n, seeding), file=sys.stderr)
        bridge = Bridge(config, store)
        await bridge.start()
        runner = web.AppRunner(make_app(bridge), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = "http://127.0.0.1:%d" % runner.addresses[0][1]
        api = []
        async with aiohttp.ClientSession() as s:
            for what, path in (("GET /api/v1/fleet/summary", "/api/v1/fleet/summary"),
                               ("GET /api/v1/fleet/plans", "/api/v1/fleet/plans"),
                               ("GET /api/v1/devices?limit=50&profile=battery",
                                "/api/v1/devices?limit=50&profile=battery"),
                               ("GET /api/v1/devices?limit=50&alarm=true (1 in 1 000)",
                                "/api/v1/devices?limit=50&alarm=true")):
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    async with s.get(base + path) as r:
                        assert r.status == 200, (path, r.status)
                        await r.read()
                    times.append(time.perf_counter() - t)
                api.append((what, statistics.median(times)))
        driver = await asyncio.to_thread(browser, os.path.join(tmp, "chromium"))
        driver.set_page_load_timeout(120)
        pages = []
        for what, query in (("first page", "/"),
                            ("page from the middle", "/?after=d-%06d" % (n // 2)),
                            ("profile=battery", "/?profile=battery"),
                            ("group=north", "/?group=north"),
                            ("alarm=true", "/?alarm=true"),
                            ("presence=offline (no device matches)",
                             "/?presence=offline")):
            pages.append((what,) + await page_times(driver, base + query))
            print("measured: %s" % what, file=sys.stderr)
        await runner.cleanup()
        await bridge.stop()
        await store.close()
    finally:
        if driver is not None:
            await asyncio.to_thread(driver.quit)
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d devices (seeded in %.0f s), SQLite, bridge + HTTP on 127.0.0.1, Chromium "
          "headless, median of 5 loads\n" % (n, seeding))
    print("| fleet page | rows | list usable (main data-ready) | aggregates and timeline "
          "drawn | every sparkline drawn |")
    print("|---|---:|---:|---:|---:|")
    for what, ready, figures, sparks, rows in pages:
        print("| %s | %d | %.0f ms | %.0f ms | %.0f ms |" % (what, rows, ready * 1000,
                                                           figures * 1000, sparks * 1000))
    print("\n| API request | time |")
    print("|---|---:|")
    for what, t in api:
        print("| %s | %.1f ms |" % (what, t * 1000))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[sys.argv.index("--devices") + 1]) if "--devices" in sys.argv
                     else 10000 if "--quick" in sys.argv else 100000))
