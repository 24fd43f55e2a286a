"""The fleet page at fleet scale, in a real headless Chromium (selenium, as in
test_dashboard_browser.py): server-side filters and paging over the paged device
listing, fleet aggregates and the plan timeline as the API computes them, the
live stream reconnecting with back-off after a drop, and the snapshot URL that a
headless `chromium --screenshot --virtual-time-budget` finishes on.

Every page is served under a strict Content-Security-Policy (no inline script or
style) and a test fails on any console error, a CSP violation included; every
state-changing request the dashboard makes is recorded and must say
Content-Type: application/json. Behaviour only: speed is bench/fleet_page.py's.
"""
import asyncio
import json
import os
import re

from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from spot.cloud_bridge.http_api import STREAMS, _close_streams
from test_dashboard_browser import CHROMIUM, LATE, dashboard, shot_dir

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
HP, ALARMS = 0x10, 0x03


class Served:
    """Test-side control of the served app: a CSP on every answer, the content types of
    state-changing requests, and (refuse_events) a 503 for the event stream."""

    def __init__(self):
        self.refuse_events = False
        self.writes = []

    @web.middleware
    async def middleware(self, request, handler):
        if request.method not in ("GET", "HEAD"):
            self.writes.append((request.method, request.path, request.headers.get("Content-Type")))
        if self.refuse_events and request.path == "/api/v1/events":
            return web.json_response({"error": "refused by the test"}, status=503)
        response = await handler(request)
        response.headers["Content-Security-Policy"] = CSP
        return response


def run(tmp_path, body, timeout=90, expected_errors=None):
    """Run body(page, base, served, fleet, bridge, local, runner) against a served fleet;
    expected_errors: a regex of console errors the test causes on purpose."""
    served = Served()

    async def checked(s):
        await body(s.page, s.base, served, s.fleet, s.bridge, s.local, s.runner)
        assert [e for e in await s.page.errors()
                if not (expected_errors and re.search(expected_errors, e))] == []
        for method, path, ctype in served.writes:
            assert ctype == "application/json", (method, path, ctype)
    dashboard(tmp_path, checked, timeout, middlewares=[served.middleware])


async def row_ids(page):
    return await page.js("return [...document.querySelectorAll('#fleet tbody tr')]"
                         ".map(r => r.dataset.id)")


async def ready(page):
    await page.wait("return document.querySelector('main').dataset.ready", "the fleet page")


def test_fleet_pages_are_read_from_the_paged_listing_and_follow_its_link(tmp_path):
    async def body(page, base, served, fleet, bridge, local, runner):
        await page.do(page.driver.get, base + "/?limit=2")
        await ready(page)
        assert await row_ids(page) == ["bat-0001", "ev-0001"]
        assert await page.js("return document.querySelector('#prev').disabled") is True
        await page.do((await page.do(page.driver.find_element, By.ID, "next")).click)
        await page.wait("return document.querySelector('#fleet tr[data-id=\"hp-0001\"]')",
                        "the second page")
        assert await row_ids(page) == ["hp-0001", "hp-0002"]
        assert "after=ev-0001" in await page.js("return location.search")
        await page.do((await page.do(page.driver.find_element, By.ID, "next")).click)
        await page.wait("return document.querySelector('#fleet tr[data-id=\"meter-0001\"]')",
                        "the last page")
        assert await row_ids(page) == ["meter-0001"]
        assert await page.js("return document.querySelector('#next').disabled") is True
        await page.do((await page.do(page.driver.find_element, By.ID, "prev")).click)
        await page.wait("return document.querySelector('#fleet tr[data-id=\"hp-0001\"]')",
                        "back to the second page")
        assert await row_ids(page) == ["hp-0001", "hp-0002"]
    run(tmp_path, body)


def test_fleet_filters_are_applied_by_the_bridge(tmp_path):
    async def body(page, base, served, fleet, bridge, local, runner):
        # one active alarm, as the alarms service counts it (the simulators raise none now)
        await bridge.store.add_telemetry([("hp-0002", ALARMS, 2, int(fleet.now()), 1)])
        await page.do(page.driver.get, base + "/")
        await ready(page)
        assert await row_ids(page) == ["bat-0001", "ev-0001", "hp-0001", "hp-0002", "meter-0001"]
        await page.do(Select(await page.do(page.driver.find_element, By.ID, "profile-filter"))
                      .select_by_value, "heat_pump")
        await page.wait("return location.search.includes('profile=heat_pump') && "
                        "document.querySelectorAll('#fleet tbody tr').length === 2",
                        "only the heat pumps")
        assert await row_ids(page) == ["hp-0001", "hp-0002"]
        await page.do(Select(await page.do(page.driver.find_element, By.ID, "profile-filter"))
                      .select_by_value, "")
        field = await page.do(page.driver.find_element, By.ID, "group-filter")
        await page.do(field.send_keys, "storage\n")
        await page.wait("return location.search.includes('group=storage')", "the group filter")
        await page.wait("return document.querySelectorAll('#fleet tbody tr').length === 1",
                        "the storage group")
        assert await row_ids(page) == ["bat-0001"]
        await page.do(field.clear)
        await page.do(Select(await page.do(page.driver.find_element, By.ID, "alarm-filter"))
                      .select_by_value, "true")
        await page.wait("return location.search.includes('alarm=true') && "
                        "!location.search.includes('group')", "the alarm filter")
        await page.wait("return document.querySelectorAll('#fleet tbody tr').length === 1",
                        "the device with an active alarm")
        assert await row_ids(page) == ["hp-0002"]
        await page.do(Select(await page.do(page.driver.find_element, By.ID, "presence-filter"))
                      .select_by_value, "offline")
        await page.wait("return document.querySelector('#empty') && "
                        "!document.querySelector('#empty').hidden", "no match")
        assert await page.text("#empty") == "No device matches these filters."
        # a filtered page is a URL: opened afresh it shows the same
        await page.do(page.driver.get, base + "/?profile=battery")
        await ready(page)
        assert await row_ids(page) == ["bat-0001"]
        assert await page.js("return document.querySelector('#profile-filter').value") == "battery"
    run(tmp_path, body)


def test_fleet_aggregates_and_plan_timeline_show_what_the_store_adds_up(tmp_path):
    async def body(page, base, served, fleet, bridge, local, runner):
        now = int(fleet.now())
        for device in ("hp-0001", "hp-0002"):   # one plan over two devices (a group's event)
            await bridge.push_plan("operator", device, 77, now + 600, now + 4200, 120,
                                   {HP: {6: 3}})
        await page.do(page.driver.get, base + "/")
        await ready(page)
        await page.wait("return document.querySelector('#count-online')", "the counts")
        api = json.loads(await page.js(
            "var r = new XMLHttpRequest(); r.open('GET', '/api/v1/fleet/summary', false);"
            "r.send(); return r.responseText"))
        assert api["devices"] == 5 and api["presence"]["online"] == 5
        assert await page.text("#count-online") == "5 online"
        assert await page.text("#summary") == "5 devices5 online0 sleeping0 offline"
        legend = await page.js("return [...document.querySelectorAll('#power-now .legend-item')]"
                               ".map(e => e.dataset.profile)")
        assert legend == [p["profile"] for p in api["power"]]
        assert set(legend) == {"battery", "ev_charger", "heat_pump", "meter"}
        load = api["flexibility"]["controllable_load_w"]
        shown = await page.text("#flex-load")
        assert re.fullmatch(r"-?[\d.]+ k?W", shown)
        value = float(shown.split()[0]) * (1000 if " kW" in shown else 1)
        assert abs(value - load) <= max(50, load * 0.001)
        # the power series grows while the page is open (a point a simulated minute)
        await page.wait("return +document.querySelector('#power-chart').dataset.points >= 8",
                        "the power series", timeout=30)
        assert await page.js("return document.querySelectorAll('#power-chart path').length") == 4
        # the timeline: one bar for plan 77 over two devices
        await page.wait("return document.querySelector('#timeline rect[data-plan=\"77\"]')",
                        "plan 77 on the timeline")
        assert await page.js("return document.querySelectorAll('#timeline rect').length") == 1
        row = await page.text("#fleet-plans tr[data-plan='77']")
        assert row.startswith("operator77sg_ready = 3") and "2" in row
        await page.wait("return document.querySelector('#fleet-plans tr[data-plan=\"77\"]')"
                        ".textContent.endsWith('2')", "both devices accepted plan 77",
                        timeout=30)
        await local.connect(LATE, fleet.by_id[LATE])
        await page.wait("return document.querySelector('#count-online').textContent === "
                        "'6 online'", "the counts following a new device")
        await page.wait("return document.querySelector('#fleet tr[data-id=\"%s\"]')" % LATE,
                        "the new device on the page")
        await asyncio.sleep(1)
        await page.screenshot(os.path.join(shot_dir(tmp_path), "dashboard-fleet.png"))
    run(tmp_path, body)


def test_the_live_stream_reconnects_with_back_off_and_reads_what_it_missed(tmp_path):
    async def body(page, base, served, fleet, bridge, local, runner):
        await page.do(page.driver.get, base + "/")
        await ready(page)
        await page.wait("return document.querySelector('#conn').textContent === 'live'",
                        "the stream")
        await page.js("window.notReloaded = true; window.states = [];"
                      "new MutationObserver(() => states.push(document.querySelector('#conn')"
                      ".textContent)).observe(document.querySelector('#conn'),"
                      " {childList: true, characterData: true, subtree: true})")
        served.refuse_events = True
        await _close_streams(runner.app)       # the connection drops; reconnects get 503
        await page.wait("return +document.querySelector('#conn').dataset.attempts >= 3",
                        "three attempts", timeout=30)
        waits = [int(m.group(1)) for m in
                 (re.match(r"reconnecting in (\d+) s", x) for x in await page.js("return states"))
                 if m]
        assert waits[:3] == sorted(waits[:3]) and waits[0] < waits[2], waits
        await local.connect(LATE, fleet.by_id[LATE])   # while the page is not listening
        served.refuse_events = False
        await page.wait("return document.querySelector('#conn').textContent === 'live'",
                        "the stream back", timeout=30)
        await page.wait("return document.querySelector('#fleet tr[data-id=\"%s\"]')" % LATE,
                        "the device that came while away")
        assert await page.js("return window.notReloaded === true")
        assert len(runner.app[STREAMS]) == 1    # one stream, not one per attempt
    run(tmp_path, body, expected_errors=r"/api/v1/events - Failed to load resource: .* 503")


def test_snapshot_url_lets_headless_chromium_finish_a_virtual_time_screenshot(tmp_path):
    async def body(page, base, served, fleet, bridge, local, runner):
        shot = tmp_path / "snapshot.png"
        streams_before = len(runner.app[STREAMS])
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--user-data-dir=%s" % (tmp_path / "cli"),
            "--window-size=1280,1400", "--virtual-time-budget=8000",
            "--screenshot=%s" % shot, base + "/?snapshot=1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0
        assert shot.stat().st_size > 20000
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--user-data-dir=%s" % (tmp_path / "cli2"),
            "--virtual-time-budget=8000", "--dump-dom", base + "/?snapshot=1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        dom = out.decode()
        assert 'data-ready="true"' in dom
        assert dom.count('<tr data-id="') == 5
        assert re.search(r'<span id="conn" class="conn conn-snapshot"[^>]*>snapshot ', dom)
        assert len(runner.app[STREAMS]) == streams_before == 0
        # in a browser the snapshot page holds no stream either, and its links stay snapshots
        await page.do(page.driver.get, base + "/?snapshot=1")
        await ready(page)
        await asyncio.sleep(1)
        assert len(runner.app[STREAMS]) == 0
        assert await page.js("return document.querySelector('#fleet tr[data-id=\"hp-0001\"] a')"
                             ".getAttribute('href')") == "/device/hp-0001?snapshot=1"
    run(tmp_path, body)
