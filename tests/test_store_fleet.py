"""Fleet aggregates and the filtered device listing (cloud_bridge/store_fleet.py,
Store.list_devices_page), on SQLite and on PostgreSQL, as SQL aggregates over a
small fleet whose sums are known.
"""
import pytest

from spot.cloud_bridge import store_fleet as F
from test_store import store_test, store_url, pg_server  # noqa: F401 (fixtures)

T0 = 1700000000
HP, PV, BAT, EV, METER, ALARMS = 0x10, 0x11, 0x12, 0x13, 0x14, 0x03


async def fleet(s):
    """hp-1, hp-2 (heat pumps), bat-1 (battery), ev-1 (EV charger), m-1 (meter, alarm on),
    pv-1 (offline, PV); latest values known."""
    for dev, sid in (("hp-1", HP), ("hp-2", HP), ("bat-1", BAT), ("ev-1", EV), ("m-1", METER),
                     ("pv-1", PV)):
        await s.upsert_device(dev, [[2, 1, 0], [ALARMS, 1, 0], [sid, 1, 0]], [], 0, T0)
    await s.set_presence("pv-1", "offline", T0)
    await s.add_telemetry([
        ("hp-1", HP, 1, T0, 2000), ("hp-1", HP, 20, T0, 5000),
        ("hp-2", HP, 1, T0, 1500), ("hp-2", HP, 20, T0, 3000),
        ("bat-1", BAT, 1, T0, -800),                      # discharging: not controllable load
        ("bat-1", BAT, 9, T0, 10000), ("bat-1", BAT, 23, T0, 4000),
        ("ev-1", EV, 1, T0, 7000), ("ev-1", EV, 13, T0, 20000), ("ev-1", EV, 10, T0, 6000),
        ("m-1", METER, 1, T0, 300), ("m-1", METER, 22, T0, [T0, 7, 2, True]),
        ("pv-1", PV, 1, T0 - 3600, -4000),                # stale: not "now"
        ("hp-2", ALARMS, 2, T0, 0),
    ])
    await s.set_groups("hp-1", ["north"])
    await s.set_groups("bat-1", ["north"])


@store_test
async def test_totals_count_presence_and_sum_fresh_power_by_profile(s, url):
    await fleet(s)
    t = await F.fleet_totals(s, T0 + 10)
    assert t["devices"] == 6
    assert t["presence"] == {"online": 5, "offline": 1}
    assert t["power"] == {HP: {"w": 3500.0, "devices": 2}, BAT: {"w": -800.0, "devices": 1},
                          EV: {"w": 7000.0, "devices": 1}, METER: {"w": 300.0, "devices": 1}}


@store_test
async def test_flexibility_adds_the_flex_terms_of_the_latest_values(s, url):
    await fleet(s)
    flex = (await F.fleet_totals(s, T0 + 10))["flexibility"]
    assert flex == {"deferrable_energy_wh": 5000 + 3000 + 20000 - 6000.0,
                    "battery_charge_headroom_wh": 6000.0,
                    "battery_discharge_headroom_wh": 4000.0,
                    "controllable_load_w": 2000 + 1500 + 7000.0}


@store_test
async def test_totals_for_a_controller_cover_only_its_paired_devices(s, url):
    await fleet(s)
    await s.add_pairing("hp-2", "watcher", "monitor", None, T0)
    t = await F.fleet_totals(s, T0 + 10, controller="watcher")
    assert t["devices"] == 1 and t["presence"] == {"online": 1}
    assert t["power"] == {HP: {"w": 1500.0, "devices": 1}}


@store_test
async def test_power_series_is_sampled_from_the_latest_values(s, url):
    await fleet(s)
    assert await F.sample_power(s, T0 + 60) == 4
    await s.add_telemetry([("hp-1", HP, 1, T0 + 90, 2500)])
    await F.sample_power(s, T0 + 120)
    await F.sample_power(s, T0 + 120)          # the same time again: nothing new
    series = await F.power_series(s, T0)
    assert [(t, w) for t, sid, w, n in series if sid == HP] == [(T0 + 60, 3500.0),
                                                                (T0 + 120, 4000.0)]
    assert await F.prune_power(s, T0 + 100) == 4
    assert [t for t, *_ in await F.power_series(s, T0)] == [T0 + 120] * 4


@store_test
async def test_plans_in_force_are_grouped_by_source_and_plan(s, url):
    await fleet(s)
    for dev in ("hp-1", "hp-2"):
        await s.record_plan(dev, 9001, T0 + 100, T0 + 3700, 50, {HP: {6: 3}}, "openadr", T0,
                            status="accepted" if dev == "hp-1" else "queued")
    await s.record_plan("bat-1", 1, T0 - 7200, T0 - 3600, 100, {BAT: {7: 0}}, "alice", T0)
    await s.record_plan("ev-1", 2, T0, T0 + 600, 100, {EV: {20: 0}}, "alice", T0,
                        status="cancelled")
    plans = await F.plans_in_force(s, T0, T0 + 86400)
    assert plans == [{"actor": "openadr", "plan_id": 9001, "start": T0 + 100,
                      "expiry": T0 + 3700, "devices": 2, "accepted": 1, "primacy": 50,
                      "entries": {HP: {6: 3}}}]
    await s.add_pairing("hp-2", "watcher", "monitor", None, T0)
    assert [p["devices"] for p in await F.plans_in_force(s, T0, T0 + 86400, "watcher")] == [1]


@pytest.mark.parametrize("filters, ids", [
    ({"profile": HP}, ["hp-1", "hp-2"]),
    ({"profile": BAT, "group": "north"}, ["bat-1"]),
    ({"alarm": True}, ["m-1"]),
    ({"alarm": False, "presence": "online"}, ["bat-1", "ev-1", "hp-1", "hp-2"]),
    ({"presence": "offline"}, ["pv-1"]),
])
def test_device_page_filters_by_profile_group_presence_and_alarm(store_url, filters, ids):
    import asyncio
    from spot.cloud_bridge.store import open_store

    async def main():
        s = await open_store(store_url)
        try:
            await fleet(s)
            got = await s.list_devices_page(limit=10, **filters)
            assert [d.id for d in got] == ids
            # paging through the filtered list one by one gives the same ids
            seen, after = [], None
            while True:
                page = await s.list_devices_page(after=after, limit=1, **filters)
                if not page:
                    break
                seen.append(page[0].id)
                after = page[0].id
            assert seen == ids
        finally:
            await s.close()
    asyncio.run(asyncio.wait_for(main(), 30))


@store_test
async def test_an_alarm_counted_by_the_alarms_service_is_an_active_alarm(s, url):
    await fleet(s)
    await s.add_telemetry([("hp-2", ALARMS, 2, T0 + 5, 1)])
    assert [d.id for d in await s.list_devices_page(alarm=True)] == ["hp-2", "m-1"]
    await s.add_telemetry([("m-1", METER, 22, T0 + 5, [T0, 7, 2, False])])
    assert [d.id for d in await s.list_devices_page(alarm=True)] == ["hp-2"]


@store_test
async def test_silent_devices_are_the_online_ones_not_heard_since(s, url):
    await s.upsert_device("a", [[HP, 1, 0]], [], 0, T0)
    await s.upsert_device("b", [[HP, 1, 0]], [], 1, T0)       # sleepy
    await s.upsert_device("c", [[HP, 1, 0]], [], 0, T0 + 100)
    await s.upsert_device("d", [[HP, 1, 0]], [], 0, T0)
    await s.set_presence("d", "offline", T0 + 50)
    assert await s.silent_devices(T0 + 10) == [("a", False), ("b", True)]
    assert await s.silent_devices(T0) == []
