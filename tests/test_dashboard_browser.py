"""The live dashboard in a real headless Chromium (Debian's chromium + chromium-driver,
driven by selenium): a bridge and a simulated fleet stepping in the test's event
loop, simulated time running 60 times faster than the wall clock.

A device connecting after the fleet page loaded appears on it without a
reload; on a device page, a set-point written with the form reaches the
simulated device, its command turns "done" in the log and the value and its
plot follow. Screenshots go to the test's tmp dir; with SPOT_SCREENSHOTS=1 the run
updates docs/dashboard-device.png instead (test_dashboard_fleet.py draws
docs/dashboard-fleet.png).
Selenium calls block, so they run in worker threads (asyncio.to_thread) while
the loop keeps serving the page.
"""
import asyncio
import os
import shutil

import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from spot.cloud_bridge import config as C
from spot.cloud_bridge.http_api import make_app
from spot.cloud_bridge.local_transport import LocalTransport
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store
from spot.core.services import HEAT_PUMP
from spot.ports.cpython.fleet import Fleet

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def shot_dir(tmp_path):
    """Where screenshots go: docs/ when asked to update them, else the tmp dir."""
    return DOCS if os.environ.get("SPOT_SCREENSHOTS") == "1" else str(tmp_path)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
T0 = 1713171600          # 2024-04-15 09:00 UTC: some sun, some heating
SPEED = 60               # simulated seconds per wall second
TICK = 0.2               # wall seconds between fleet steps
LATE = "pv-0001"         # connects once the fleet page is open


def browser(user_data_dir, extra_args=()):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("needs Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver)")
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--user-data-dir=%s" % user_data_dir,
                "--window-size=1280,900", "--force-device-scale-factor=1", "--lang=en-GB",
                *extra_args):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    return driver


class Page:
    """Blocking selenium calls, run off the event loop."""

    def __init__(self, driver):
        self.driver = driver

    async def do(self, fn, *args):
        return await asyncio.to_thread(fn, *args)

    async def js(self, script, *args):
        return await self.do(self.driver.execute_script, script, *args)

    async def wait(self, script, what, timeout=20.0, *args):
        """Poll a JS expression (returning truthy when done) until it holds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            value = await self.js("return (function(){" + script + "})()", *args)
            if value:
                return value
            if loop.time() > end:
                raise AssertionError("timed out waiting for %s" % what)
            await asyncio.sleep(0.1)

    async def text(self, css):
        return await self.js("var e = document.querySelector(arguments[0]);"
                             "return e ? e.textContent : null;", css)

    async def screenshot(self, path):
        """The whole page down to its footer (the window sized to it, at most 3000 px)."""
        height = await self.js("return Math.ceil(document.querySelector('footer')"
                               ".getBoundingClientRect().bottom + window.scrollY"
                               " + window.outerHeight - window.innerHeight)")
        await self.do(self.driver.set_window_size, 1280, min(int(height), 3000))
        await self.js("window.scrollTo(0, 0)")
        await asyncio.sleep(0.3)
        assert await self.do(self.driver.save_screenshot, path)

    async def errors(self):
        logs = await self.do(self.driver.get_log, "browser")
        return [e["message"] for e in logs if e["level"] == "SEVERE"]


async def start(tmp_path, tokens=None, middlewares=()):
    fleet = Fleet({"heat_pump": 2, "battery": 1, "ev_charger": 1, "meter": 1, "pv_inverter": 1},
                  seed=3, t0=T0, speed=SPEED, telemetry=60, comm_timeout=86400)
    config = C.load(None, data=str(tmp_path), tokens=tokens)
    store = await open_store(config.store_url)
    bridge = Bridge(config, store, clock=fleet.now)
    await bridge.start()
    local = LocalTransport(bridge)
    for d in fleet.devices:
        if d.device_id != LATE:
            await local.connect(d.device_id, d)
    for device_id, groups in (("hp-0001", ["north"]), ("hp-0002", ["north"]),
                              ("bat-0001", ["north", "storage"])):
        await store.set_groups(device_id, groups)
    for _ in range(60):  # an hour of history before anyone looks (one store batch a step)
        await asyncio.gather(*(local.uplink(d.device_id, frames)
                               for d, frames in fleet.advance(fleet.t + 60)
                               if d.device_id in local.devices))
    app = make_app(bridge)
    app.middlewares[0:0] = list(middlewares)   # test-side wrappers, outermost first
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()

    async def send(device, frames):
        if device.device_id in local.devices:
            await local.uplink(device.device_id, frames)
    stepping = asyncio.ensure_future(fleet.run(tick=TICK, on_frames=send))
    return fleet, bridge, local, runner, stepping


class Session:
    """What a dashboard test drives: the page in Chromium and the served fleet."""

    def __init__(self, page, base, fleet, bridge, local, runner):
        self.page, self.driver, self.base = page, page.driver, base
        self.fleet, self.bridge, self.local, self.runner = fleet, bridge, local, runner


def dashboard(tmp_path, body, timeout, tokens=None, middlewares=()):
    """Run `await body(session)` against a served fleet and a fresh Chromium, then tear
    both down; on a failure the browser's last picture is kept as failure.png."""
    async def main():
        fleet, bridge, local, runner, stepping = await start(tmp_path, tokens, middlewares)
        driver = await asyncio.to_thread(browser, str(tmp_path / "chromium"))
        base = "http://127.0.0.1:%d" % runner.addresses[0][1]
        try:
            await body(Session(Page(driver), base, fleet, bridge, local, runner))
        except BaseException:
            await asyncio.to_thread(driver.save_screenshot, str(tmp_path / "failure.png"))
            raise
        finally:
            await asyncio.to_thread(driver.quit)
            stepping.cancel()
            await asyncio.gather(stepping, return_exceptions=True)
            await runner.cleanup()
            await bridge.stop()
            await bridge.store.close()
    asyncio.run(asyncio.wait_for(main(), timeout))


def test_dashboard_shows_the_fleet_live_and_writes_a_set_point(tmp_path):
    async def body(s):
        page, driver, base, fleet, local = s.page, s.driver, s.base, s.fleet, s.local
        # ---- fleet overview
        await page.do(driver.get, base + "/")
        await page.wait("return document.querySelector('main').dataset.ready", "fleet page")
        csp = await page.js("return fetch('/').then(r => r.headers.get("
                            "'Content-Security-Policy'))")
        assert "script-src 'self'" in csp   # the page works under it: no console errors
        rows = await page.js("return [...document.querySelectorAll('#fleet tbody tr')]"
                             ".map(r => r.dataset.id)")
        assert rows == ["bat-0001", "ev-0001", "hp-0001", "hp-0002", "meter-0001"]
        await page.js("window.notReloaded = true")
        await local.connect(LATE, fleet.by_id[LATE])
        await page.wait("return document.querySelector('#fleet tr[data-id=\"%s\"]')" % LATE,
                        "the late device on the fleet page")
        assert await page.js("return window.notReloaded === true")
        assert await page.text("#fleet tr[data-id='%s'] .presence" % LATE) == "online"
        assert await page.text("#fleet tr[data-id='hp-0001'] .profile") == "heat_pump"
        await page.wait("return document.querySelector(\"#fleet tr[data-id='%s'] .key-value\")"
                        ".textContent.includes('W')" % LATE, "live power of the late device")
        await page.wait("return document.querySelector('#summary').textContent === "
                        "'6 devices6 online0 sleeping0 offline'", "the counts")
        await asyncio.sleep(2)  # a few live points on every sparkline for the picture
        # (docs/dashboard-fleet.png is test_dashboard_fleet.py's, with aggregates and plans)
        await page.screenshot(os.path.join(str(tmp_path), "dashboard-fleet.png"))

        # ---- device page
        await page.do(driver.set_window_size, 1280, 900)
        link = await page.do(driver.find_element, By.LINK_TEXT, "hp-0001")
        await page.do(link.click)
        await page.wait("return location.pathname === '/device/hp-0001' && "
                        "document.querySelector('main').dataset.ready", "device page")
        await page.wait("return +document.querySelector('#chart-flow_setpoint svg')"
                        ".dataset.points >= 30", "flow_setpoint history plotted")
        before = await page.text("#value-heat_pump-flow_setpoint")
        assert before == "35.0 °C"
        select = await page.do(driver.find_element, By.ID, "setpoint-object")
        await page.do(Select(select).select_by_value, "flow_setpoint")
        hint = await page.text("#setpoint-hint")
        assert "Range 20 – 70 °C" in hint and "Now: 35.0 °C" in hint
        field = await page.do(driver.find_element, By.ID, "setpoint-value")
        await page.do(field.clear)
        await page.do(field.send_keys, "52.5")
        await page.do((await page.do(driver.find_element, By.ID, "setpoint-submit")).click)
        cid = await page.wait(
            "var r = [...document.querySelectorAll('#commands tbody tr')].find(r => "
            "r.textContent.includes('flow_setpoint=52.5')); return r && r.dataset.id",
            "the write in the command log")
        await page.wait("return document.querySelector('#commands tr[data-id=\"%s\"] .status')"
                        ".textContent === 'done'" % cid, "the command done")
        assert fleet.by_id["hp-0001"].node.get(HEAT_PUMP, 7) == 52.5
        assert "Queued command #%s" % cid in await page.text("#setpoint-result")
        await page.wait("return document.querySelector('#value-heat_pump-flow_setpoint')"
                        ".textContent === '52.5 °C'", "the new value in the table")
        await page.wait("return document.querySelector('#chart-value-flow_setpoint')"
                        ".textContent === '52.5 °C'", "the plot following the set-point")
        # a plan through the plan form: SG-Ready "increased operation" for an hour
        await page.do(Select(await page.do(driver.find_element, By.ID, "plan-object"))
                      .select_by_value, "sg_ready")
        await page.do(Select(await page.do(driver.find_element, By.ID, "plan-value"))
                      .select_by_value, "3")
        await page.do((await page.do(driver.find_element, By.ID, "plan-submit")).click)
        await page.wait("var r = document.querySelector('#plans tr[data-id=\"1\"] .status');"
                        "return r && r.textContent === 'accepted'", "the plan accepted")
        assert fleet.by_id["hp-0001"].node.plans.find(1) is not None
        await page.wait("return document.querySelector('#value-heat_pump-sg_ready')"
                        ".textContent.startsWith('3 · ')", "the plan in force on the device")
        await asyncio.sleep(3)  # a few more points on the plots for the picture
        await page.screenshot(os.path.join(shot_dir(tmp_path), "dashboard-device.png"))
        assert await page.errors() == []
    dashboard(tmp_path, body, 80)


def test_dashboard_asks_for_a_token_when_the_bridge_has_tokens(tmp_path):
    async def body(s):
        page, driver = s.page, s.driver
        await page.do(driver.get, s.base + "/")
        await page.wait("return document.querySelector('#token')", "the sign-in form")
        assert "missing or unknown bearer token" in await page.text("main")
        field = await page.do(driver.find_element, By.ID, "token")
        await page.do(field.send_keys, "s3cret\n")
        await page.wait("return document.querySelector('main').dataset.ready", "fleet page")
        await page.wait("return document.querySelector('#conn').textContent === 'live'",
                        "the event stream, authorised by the token")
        rows = await page.js("return document.querySelectorAll('#fleet tbody tr').length")
        assert rows == 5
    dashboard(tmp_path, body, 60, tokens={"s3cret": "operator"})
