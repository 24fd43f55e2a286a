"""GET /api/v1/devices with 100 000 registered devices: one page, for the operator and
for an actor paired with a few of them, against the whole unpaged list it replaced.

    python3 bench/device_listing.py              # 100 000 devices (docs/benchmarks.md)
    python3 bench/device_listing.py --quick      # 10 000 devices

A SQLite store (WAL, synchronous=FULL, a temporary directory) holds N devices
(upsert_devices, ids d-000000 ...); an actor "watcher" is paired as monitor with
every 100th. The bridge's HTTP API runs on 127.0.0.1 (aiohttp) and a client on
the same loop times whole requests (median of 5): the first page, a page from
the middle (?after=), the watcher's first page. For comparison, in the same run,
what the unpaged listing did before: every Device read from the store (the
operator's answer) and, for a non-operator, one role lookup per device; that
last one is timed on 10 000 devices and scaled (it is linear).
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

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from spot.cloud_bridge import config as C  # noqa: E402
from spot.cloud_bridge.http_api import make_app  # noqa: E402
from spot.cloud_bridge.service import Bridge  # noqa: E402
from spot.cloud_bridge.store import open_store  # noqa: E402

TOKENS = {"op": "operator", "w": "watcher"}


async def timed(fn, runs=5):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def main(n):
    tmp = tempfile.mkdtemp(prefix="spot-bench-list-")
    try:
        config = C.load(None, data=tmp, tokens=TOKENS)
        store = await open_store(config.store_url)
        for start in range(0, n, 10000):
            await store.upsert_devices([("d-%06d" % i, [[16, 1, 0]], [], 0)
                                        for i in range(start, min(n, start + 10000))], 1.0)
        for i in range(0, n, 100):
            await store.add_pairing("d-%06d" % i, "watcher", "monitor", None, 1.0)
        bridge = Bridge(config, store)
        await bridge.start()
        runner = web.AppRunner(make_app(bridge), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = "http://127.0.0.1:%d/api/v1/devices" % runner.addresses[0][1]
        async with aiohttp.ClientSession() as s:
            async def get(query, token):
                async with s.get(base + query, headers={"Authorization": "Bearer " + token}) as r:
                    assert r.status == 200, r.status
                    return len(await r.json())

            rows = []
            for what, query, token in (
                    ("operator, first page (1 000)", "", "op"),
                    ("operator, page from the middle", "?after=d-%06d" % (n // 2), "op"),
                    ("operator, page of 100", "?limit=100", "op"),
                    ("watcher (%d paired), first page" % (n // 100), "", "w")):
                count = await get(query, token)
                rows.append((what, count, await timed(lambda: get(query, token))))
        whole = await timed(lambda: store.list_devices(), runs=3)
        sample = min(n, 10000)
        ids = ["d-%06d" % i for i in range(sample)]

        async def roles():
            for d in ids:
                await store.role_of(d, "watcher")
        per_device = await timed(roles, runs=1) / sample
        await runner.cleanup()
        await bridge.stop()
        await store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d devices, SQLite, HTTP on 127.0.0.1, median of 5 requests\n" % n)
    print("| request | devices returned | time |")
    print("|---|---:|---:|")
    for what, count, t in rows:
        print("| %s | %d | %.1f ms |" % (what, count, t * 1000))
    print("| before: every device from the store (operator, unpaged) | %d | %.0f ms |"
          % (n, whole * 1000))
    print("| before: plus one role lookup per device (non-operator) | %d | %.1f s (%.0f us "
          "per device x %d) |" % (n // 100, per_device * n, per_device * 1e6, n))


if __name__ == "__main__":
    asyncio.run(main(10000 if "--quick" in sys.argv else 100000))
