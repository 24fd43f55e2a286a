"""Out of memory on a real MicroPython: repeated MemoryErrors reset the device, the
reset is counted in its state file, and after the reboot the bridge reads it.

The device runs frozen in the 32-bit unix MicroPython (tests/mp_real.py) under a
fixed heap. Its link is made to ask for more memory than the heap has on every turn
(a real allocation failure of the interpreter, not a raised exception): the runtime
must count them, give up after the config's mem_reset within a minute and exit with
the unix port's reset status; started again (examples/unix_heat_pump.py) it must
tell the real `spot bridge` that it reset for want of memory.
"""
import asyncio
import os
import subprocess

import pytest

import mp_real
from bridge_process import bridges  # noqa: F401  (a fixture)
from waiting import until

HEAP = mp_real.HEAP_CAPS["coap"]
STARVED = """
import asyncio
from spot.ports.micropython import config, device
from spot.profiles import heat_pump
dev = device.Device(config.load('spot.json'), heat_pump)
def poll(now):
    return bytearray(1 << 20)    # more than the heap: MemoryError
dev.start()
dev.link.poll = poll
asyncio.run(dev.run())
"""


@pytest.fixture(scope="module")
def micropython():
    return mp_real.frozen_or_skip()


def config(bridge):
    return {"id": "hp-oom", "profile": "heat_pump", "telemetry": 1, "wdt_ms": 0,
            "bridge": "coap://127.0.0.1:%d" % bridge.coap_port, "mem_reset": 5}


def test_repeated_memory_errors_reset_the_device_and_the_bridge_reads_the_count(
        micropython, bridges, tmp_path):
    bridge = bridges()
    dev = mp_real.DeviceProcess(micropython, tmp_path / "dev", config(bridge), HEAP)
    starved = subprocess.run([micropython, "-X", "heapsize=" + HEAP, "-c", STARVED],
                             cwd=dev.dir, capture_output=True, text=True, timeout=60)
    assert starved.returncode == mp_real.RESET_EXIT, starved.stdout + starved.stderr
    with open(os.path.join(dev.dir, "spot.diag")) as f:
        assert f.read().split() == ["1", "1"]     # one reset, and it was for memory

    dev.start()
    try:
        async def stored(obj):
            status, body = await asyncio.to_thread(
                bridge.call, "GET",
                "/api/v1/devices/hp-oom/history?service=diagnostics&object=" + obj)
            return [p["value"] for p in body["points"]] if status == 200 else []
        assert asyncio.run(until(lambda: stored("mem_resets"), 30)), dev.output()
        assert asyncio.run(stored("mem_resets")) == [1]
        assert asyncio.run(stored("reset_cause")) == [1]
    finally:
        dev.stop()
    with open(os.path.join(dev.dir, "spot.diag")) as f:
        assert f.read().split() == ["1", "0"]     # the cause is told once
