"""The dashboard writes ranges as a person does and keeps plot axes within what a
quantity can be (real headless Chromium, bridge and simulated fleet in the test's
loop; see test_dashboard_browser)."""
import asyncio
import re

from test_dashboard_browser import Page, browser, start


def test_device_page_ranges_read_naturally_and_counter_axes_stay_at_or_above_zero(tmp_path):
    async def main():
        fleet, bridge, local, runner, stepping = await start(tmp_path)
        base = "http://127.0.0.1:%d" % runner.addresses[0][1]
        driver = await asyncio.to_thread(browser, str(tmp_path / "chromium"))
        page = Page(driver)
        try:
            await page.do(driver.get, base + "/device/hp-0001")
            await page.wait("return document.querySelector('main').dataset.ready", "device page")
            await page.wait("return +document.querySelector('#chart-energy_in svg')"
                            ".dataset.points >= 30", "energy_in history plotted")

            def range_of(name):
                return page.text("#row-heat_pump-%s td:nth-of-type(2)" % name)
            assert await range_of("energy_in") == "≥ 0 Wh"
            assert await range_of("flow_setpoint") == "20 – 70 °C"
            assert await range_of("thermal_power") == "0 – 100 kW"
            assert await range_of("p") == "−10 – 10 MW"
            ticks = await page.js("return [...document.querySelectorAll('#chart-energy_in "
                                  "text.tick')].map(t => t.textContent)")
            values = [t for t in ticks if not re.match(r"^\d\d:\d\d$", t)]
            assert values and not any(t.lstrip().startswith(("-", "−")) for t in values), ticks
            assert await page.errors() == []
        finally:
            await asyncio.to_thread(driver.quit)
            stepping.cancel()
            await asyncio.gather(stepping, return_exceptions=True)
            await runner.cleanup()
            await bridge.stop()
            await bridge.store.close()

    asyncio.run(asyncio.wait_for(main(), 80))
