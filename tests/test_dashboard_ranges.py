"""The dashboard writes ranges as a person does and keeps plot axes within what a
quantity can be (real headless Chromium, bridge and simulated fleet in the test's
loop; see test_dashboard_browser)."""
import re

from test_dashboard_browser import dashboard


def test_device_page_ranges_read_naturally_and_counter_axes_stay_at_or_above_zero(tmp_path):
    async def body(s):
        page = s.page
        await page.do(s.driver.get, s.base + "/device/hp-0001")
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
    dashboard(tmp_path, body, 80)
