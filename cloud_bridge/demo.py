"""`spot demo`: the bridge with embedded defaults and a small simulated fleet
(one device of every profile) registered with it over real CoAP on loopback.

Each simulated device is its own CoAP endpoint (core.coap_binding.CoapDevice,
the code a board runs) on a free UDP port; it registers with the bridge by
ANNOUNCE and POSTs its telemetry; the bridge commands it over CoAP. The fleet
runs in real time (its node clocks are Unix time), so plans pushed from the
dashboard act on it when they say.
"""
import asyncio
import time

from ..ports.cpython.fleet import Fleet, parse_profiles
from ..ports.cpython.fleet_links import serve_fleet_coap, close_links
from .app import running_bridge
from .banner import banner_lines


async def start_fleet(profiles, bridge_addr, telemetry=5, seed=1, count=1):
    """A Fleet in real time, every device registering with the bridge over CoAP."""
    fleet = Fleet(parse_profiles(profiles, count), seed=seed, t0=int(time.time()), speed=1.0,
                  telemetry=telemetry)
    servers, on_frames = await serve_fleet_coap(fleet, "127.0.0.1", 0, bridge=bridge_addr)
    task = asyncio.ensure_future(fleet.run(tick=1.0, on_frames=on_frames))
    return fleet, servers, task


async def stop_fleet(servers, task):
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
    await close_links(servers)


async def demo(config, profiles=("all",), count=1, duration=None, out=print):
    if config.reg_plain == "off":   # its own fleet registers over plain CoAP on loopback
        config.reg_plain = "loopback"
    async with running_bridge(config) as parts:
        host, port = config.coap_addr
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        fleet, servers, task = await start_fleet(profiles, (host, port), count=count)
        out("SPOT demo: %d simulated devices registering over CoAP with the bridge"
            % len(fleet.devices))
        out("Dashboard: %s/   API: %s/api/v1/devices   Metrics: %s/metrics"
            % (parts.http_url, parts.http_url, parts.http_url))
        for line in banner_lines(config, parts.listening):
            out(line)
        out("Press Ctrl-C to stop.")
        try:
            if duration is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(duration)
        finally:
            await stop_fleet(servers, task)
