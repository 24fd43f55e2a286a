"""The heat pump from a ROMFS image on a real MicroPython, under a heap cap.

SPOT and examples/unix_heat_pump.py as .mpy in a ROMFS image (tests/mp_real.py
romfs_image) that the 32-bit unix MicroPython holds outside its GC heap, as a board
holds it in flash, so their bytecode runs in place (mp_real.romfs_interpreter). Under
a fixed heap of mp_real.HEAP_CAPS["romfs"] (a little above the measured smallest heap;
issue 14's goal, 48k, is not met: the names of the modules are interned on the heap
at import) the device must register with the real
`spot bridge` over CoAP, have its telemetry stored and do a WRITE, with no
MemoryError caught; a regression of the footprint fails this test.
"""
import asyncio

import pytest

import mp_real
from bridge_process import bridges  # noqa: F401  (a fixture)
from waiting import until

HEAP = mp_real.HEAP_CAPS["romfs"]


@pytest.fixture(scope="module")
def romfs(tmp_path_factory):
    """(interpreter, image) or a skip naming MPY_DIR where there is no source."""
    try:
        binary = mp_real.romfs_interpreter()
    except mp_real.NoSource as e:
        pytest.skip(str(e))
    src = tmp_path_factory.mktemp("romfs")
    mp_real.mpy_lib(str(src / "lib"))
    return binary, mp_real.romfs_image(str(src), str(src / "spot.romfs"))


def wait(cond, timeout=30):
    return asyncio.run(until(cond, timeout, every=0.2))


def test_the_heat_pump_from_a_romfs_image_serves_under_its_heap_cap(romfs, bridges, tmp_path):
    binary, image = romfs
    bridge = bridges()
    cfg = {"id": "hp-rom", "profile": "heat_pump", "telemetry": 1, "wdt_ms": 0,
           "bridge": "coap://127.0.0.1:%d" % bridge.coap_port}
    dev = mp_real.DeviceProcess(binary, tmp_path / "dev", cfg, HEAP,
                                env={"MICROPYPATH": "/rom/lib:.frozen", "SPOT_ROMFS": image})
    dev.start()
    try:
        def get(path):
            status, body = bridge.call("GET", "/api/v1/" + path)
            return body if status == 200 else None
        assert wait(lambda: (get("devices/hp-rom") or {}).get("presence") == "online"), \
            dev.output()
        assert wait(lambda: (get("devices/hp-rom/history?service=heat_pump&object=flow_temp")
                             or {}).get("points")), dev.output()
        status, cmd = bridge.call("POST", "/api/v1/devices/hp-rom/commands", {
            "service": "heat_pump", "op": "write", "values": {"flow_setpoint": 55}})
        assert status == 202, cmd
        assert wait(lambda: get("commands/%d" % cmd["id"])["status"] == "done"), dev.output()
        status, diag = bridge.call("POST", "/api/v1/devices/hp-rom/commands", {
            "service": "diagnostics", "op": "read", "objects": ["mem_errors"]})
        assert status == 202, diag
        assert wait(lambda: get("commands/%d" % diag["id"])["status"] == "done")
        assert get("commands/%d" % diag["id"])["values"]["mem_errors"]["value"] == 0, \
            dev.output()
        assert dev.running(), dev.output()
    finally:
        dev.stop()
