"""An OpenADR event from a real VTN (openleadr, the test_openadr.py rig) on the fleet's
plan timeline: GET /api/v1/fleet/plans lists the event's plan once, under the
OpenADR plugin's actor, with every device it reached and its window.
"""
import asyncio

import aiohttp
from aiohttp import web

from spot.cloud_bridge.http_api import make_app
from spot.core.services import HEAT_PUMP
from test_openadr import SG_READY, openadr_rig, run
from waiting import until


def test_an_openadr_event_is_one_entry_on_the_fleet_timeline(tmp_path):
    async def main():
        async with openadr_rig(tmp_path, ("heat_pump", "hp-1"), ("heat_pump", "hp-2"),
                               ("battery", "bat-1")) as (vtn, rig):
            eid, _ = vtn.add_event("SIMPLE", "level", (1.0,), start_in=0, step=600)
            for dev in ("hp-1", "hp-2"):
                assert await until(lambda: rig.devs[dev].node.get(HEAT_PUMP, SG_READY) == 1, 10)
            runner = web.AppRunner(make_app(rig.bridge))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            try:
                url = "http://127.0.0.1:%d/api/v1/fleet/plans" % runner.addresses[0][1]
                async with aiohttp.ClientSession() as s:
                    async with s.get(url) as r:
                        assert r.status == 200
                        plans = (await r.json())["plans"]
            finally:
                await runner.cleanup()
            mine = [p for p in plans if p["actor"] == "plugin:openadr"]
            assert len(mine) == 1, plans
            p = mine[0]
            assert (p["devices"], p["accepted"]) == (3, 3)      # both heat pumps and the battery
            assert p["expiry"] - p["start"] == 600              # the event's one interval
            assert p["entries"] == {"heat_pump": {"sg_ready": 1}}   # one device's, as a sample
    run(main())
