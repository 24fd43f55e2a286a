"""The bridge sets a device's clock (spec section 3.1): a real `spot bridge`
process and a device running the code a board runs (core.coap_binding.CoapDevice,
a node on the loop's monotonic clock, as a board that just booted), over CoAP."""
import asyncio
import time

from bridge_process import BridgeProcess
from test_bridge_faults import serve
from waiting import until
from spot.core.node import Node
from spot.core.services import HEAT_PUMP
from spot.profiles import heat_pump

FLOW_TEMP = 8


def board_clock(now_ms):
    return now_ms // 1000   # seconds since the loop started: no idea of the date


def wall_error(node, server):
    """How far the node's idea of Unix time is from the test's, in seconds."""
    return abs(node.unix(board_clock(server.now())) - time.time())


async def fresh_device(bridge, device_id="hp-fresh"):
    node = Node([heat_pump], device_id)
    server = await serve(node, bridge.coap, board_clock)
    return node, server


def test_a_plan_pushed_to_a_freshly_started_device_is_accepted(tmp_path):
    bridge = BridgeProcess(tmp_path / "bridge").start()

    async def main():
        node, server = await fresh_device(bridge)
        try:
            async def registered():
                return (await asyncio.to_thread(bridge.call, "GET",
                                                "/api/v1/devices/hp-fresh"))[0] == 200
            assert await until(registered)
            status, pushed = await asyncio.to_thread(
                bridge.call, "POST", "/api/v1/devices/hp-fresh/plans",
                {"duration": 3600, "entries": {"heat_pump": {"sg_ready": 3}}})
            assert status == 202, pushed

            async def plan_status():
                _, plans = await asyncio.to_thread(bridge.call, "GET",
                                                   "/api/v1/devices/hp-fresh/plans?all=true")
                return plans[0]["status"]

            async def settled():
                return await plan_status() != "queued"
            assert await until(settled)
            assert await plan_status() == "accepted"
            assert node.time_known and wall_error(node, server) < 5
        finally:
            server.close()
    try:
        asyncio.run(main())
    finally:
        bridge.stop()


def test_the_bridge_corrects_a_device_clock_that_drifted(tmp_path):
    bridge = BridgeProcess(tmp_path / "bridge").start()

    async def main():
        node, server = await fresh_device(bridge)
        try:
            async def clock_set():
                return node.time_known
            assert await until(clock_set)
            node.clock_offset -= 7200   # two hours slow, as a drifting RTC
            node.report(HEAT_PUMP, {FLOW_TEMP: {0: 1, 1: 1}}, board_clock(server.now()))
            node.set(HEAT_PUMP, FLOW_TEMP, 35.0)
            server.poke()

            async def corrected():
                return wall_error(node, server) < 5
            assert await until(corrected)
        finally:
            server.close()
    try:
        asyncio.run(main())
    finally:
        bridge.stop()
