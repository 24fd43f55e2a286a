"""The fleet routes (/api/v1/fleet/summary, /fleet/plans) and the filters of the paged
device listing, over a real server on 127.0.0.1 with simulated devices (the
test_http_api.py harness): what each actor sees, and bad queries refused.
"""
import asyncio

from spot.cloud_bridge import store_fleet as F
from spot.core.services import HEAT_PUMP
from test_http_api import OPERATOR, STRANGER, TOKENS, WATCHER, scenario

FLEET = (("heat_pump", "hp-0001"), ("heat_pump", "hp-0002"), ("battery", "bat-0001"),
         ("pv_inverter", "pv-0001"))


def test_summary_adds_up_the_fleet_for_the_operator(tmp_path):
    async def body(api):
        for d in ("hp-0001", "hp-0002", "bat-0001", "pv-0001"):
            await api.report(d, 60)
        await F.sample_power(api.bridge.store, api.clock.t)
        status, sm = await api.get("/api/v1/fleet/summary")
        assert status == 200, sm
        assert sm["devices"] == 4
        assert sm["presence"] == {"online": 4, "sleeping": 0, "offline": 0}
        latest_p = {}
        for d in ("hp-0001", "hp-0002", "bat-0001", "pv-0001"):
            _, dev = await api.get("/api/v1/devices/" + d)
            latest_p[d] = next(v["value"] for v in dev["values"]
                               if v["object"] == "p" and v["service"] == dev["profile"])
        by = {x["profile"]: x for x in sm["power"]}
        assert by["heat_pump"]["devices"] == 2
        assert by["heat_pump"]["w"] == latest_p["hp-0001"] + latest_p["hp-0002"]
        assert by["battery"]["w"] == latest_p["bat-0001"]
        points = sm["series"]["points"]
        assert {(p["profile"], p["w"]) for p in points if p["t"] == api.clock.t} == {
            (name, x["w"]) for name, x in by.items()}
        assert set(sm["flexibility"]) == set(F.FLEX)
    scenario(tmp_path, body, tokens=TOKENS, devices=FLEET)


def test_summary_of_a_paired_actor_covers_its_devices_only_and_has_no_fleet_series(tmp_path):
    async def body(api):
        status, _ = await api.post("/api/v1/devices/hp-0002/pairings",
                                   {"controller": "watcher", "role": "owner"})
        assert status == 201
        status, sm = await api.get("/api/v1/fleet/summary", token=WATCHER)
        assert status == 200
        assert sm["devices"] == 1 and [x["profile"] for x in sm["power"]] == ["heat_pump"]
        assert sm["series"] is None
        status, sm = await api.get("/api/v1/fleet/summary", token=STRANGER)
        assert status == 200 and sm["devices"] == 0 and sm["power"] == []
        status, pl = await api.get("/api/v1/fleet/plans", token=STRANGER)
        assert status == 200 and pl["plans"] == []
    scenario(tmp_path, body, tokens=TOKENS, devices=FLEET)


def test_plans_across_the_fleet_group_one_plan_pushed_to_many_devices(tmp_path):
    async def body(api):
        t = api.clock.t
        for d in ("hp-0001", "hp-0002"):
            status, out = await api.post("/api/v1/devices/%s/plans" % d, {
                "id": 5, "start": t + 60, "duration": 3600, "primacy": 10,
                "entries": {"heat_pump": {"sg_ready": 3}}})
            assert status == 202, out
        status, pl = await api.get("/api/v1/fleet/plans")
        assert status == 200
        assert [(p["actor"], p["plan_id"], p["start"], p["expiry"], p["devices"])
                for p in pl["plans"]] == [("operator", 5, t + 60, t + 3660, 2)]
        assert pl["plans"][0]["entries"] == {"heat_pump": {"sg_ready": 3}}
        status, pl = await api.get("/api/v1/fleet/plans?from=%d&to=%d" % (t + 4000, t + 5000))
        assert status == 200 and pl["plans"] == []
    scenario(tmp_path, body, tokens=TOKENS, devices=FLEET)


def test_device_listing_filters_by_profile_and_alarm(tmp_path):
    async def body(api):
        await api.bridge.store.add_telemetry([("bat-0001", 0x03, 2, api.clock.t + 1, 2)])
        status, page = await api.get("/api/v1/devices?profile=heat_pump&limit=1")
        assert status == 200 and [d["id"] for d in page] == ["hp-0001"]
        status, page = await api.get("/api/v1/devices?profile=%d&after=hp-0001" % HEAT_PUMP)
        assert [d["id"] for d in page] == ["hp-0002"]
        status, page = await api.get("/api/v1/devices?alarm=true")
        assert [d["id"] for d in page] == ["bat-0001"]
        status, page = await api.get("/api/v1/devices?alarm=false&profile=battery")
        assert page == []
    scenario(tmp_path, body, tokens=TOKENS, devices=FLEET)


def test_a_next_link_keeps_the_filters(tmp_path):
    async def body(api):
        h = {"Authorization": "Bearer " + OPERATOR}
        async with api.session.get(api.base + "/api/v1/devices?profile=heat_pump&limit=1",
                                   headers=h) as r:
            link = r.headers["Link"]
        assert "profile=heat_pump" in link and "after=hp-0001" in link
    scenario(tmp_path, body, tokens=TOKENS, devices=FLEET)


def test_bad_fleet_queries_are_refused_with_400(tmp_path):
    async def body(api):
        for path in ("/api/v1/devices?profile=toaster", "/api/v1/devices?profile=",
                     "/api/v1/devices?alarm=yes", "/api/v1/fleet/summary?since=soon",
                     "/api/v1/fleet/plans?from=100&to=50", "/api/v1/fleet/plans?limit=0"):
            status, out = await api.get(path)
            assert status == 400 and out["error"], (path, status, out)
    scenario(tmp_path, body, tokens=TOKENS, devices=FLEET)


def test_the_bridge_samples_the_power_series_on_its_clock(tmp_path):
    async def body(api):
        times = []
        for _ in range(2):                   # a minute later by the bridge's clock: a point
            api.clock.t += F.SAMPLE_EVERY
            times.append(api.clock.t)
            await api.report("hp-0001", 0)
            await asyncio.sleep(1.5)         # the sampler looks once a wall second
        await asyncio.sleep(1.5)             # the clock stands still: no new point
        points = await F.power_series(api.bridge.store, 0)
        assert sorted({t for t, *_ in points}) == times
    scenario(tmp_path, body, tokens=TOKENS, devices=FLEET)
