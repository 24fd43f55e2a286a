"""The heat pump from a ROMFS image on a real MicroPython, under a heap cap.

The image is what a board user makes: `spot bundle --romfs` with
examples/unix_heat_pump.py as main script writes SPOT's modules as .mpy into a ROMFS
image (for `mpremote romfs deploy`) and main.py beside it. The 32-bit unix
MicroPython holds the image outside its GC heap, as a board holds it in flash, mounted
at /rom, so the bytecode runs in place (mp_real.romfs_interpreter); main.py runs from
the device's directory, as from a board's file system. Under
a fixed heap of mp_real.HEAP_CAPS["romfs"] (a little above the measured smallest heap;
issue 14's goal, 48k, is not met: the names of the modules are interned on the heap
at import) the device must register with the real
`spot bridge` over CoAP, have its telemetry stored and do a WRITE, with no
MemoryError caught; a regression of the footprint fails this test.
"""
import asyncio
import os
import shutil
import subprocess
import sys

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
    out = tmp_path_factory.mktemp("bundle")
    image = str(out / "spot.romfs")
    r = subprocess.run([sys.executable, "-m", "spot.cli", "bundle", "--profile", "heat_pump",
                        "--transport", "coap", "--main",
                        str(mp_real.REPO) + "/examples/unix_heat_pump.py",
                        "--out", str(out / "fs"), "--romfs", image],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["main.py"]     # only the script is left for the file system
    return binary, image, str(out / "fs" / "main.py")


def wait(cond, timeout=30):
    return asyncio.run(until(cond, timeout, every=0.2))


def test_the_heat_pump_from_a_romfs_image_serves_under_its_heap_cap(romfs, bridges, tmp_path):
    binary, image, main = romfs
    bridge = bridges()
    cfg = {"id": "hp-rom", "profile": "heat_pump", "telemetry": 1, "wdt_ms": 0,
           "bridge": "coap://127.0.0.1:%d" % bridge.coap_port}
    dev = mp_real.DeviceProcess(binary, tmp_path / "dev", cfg, HEAP, main="main.py",
                                env={"MICROPYPATH": "/rom/lib:.frozen", "SPOT_ROMFS": image})
    shutil.copy(main, dev.dir)
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


LIST_ROM = """
import os
def walk(d):
    for e in os.ilistdir(d):
        p = d + '/' + e[0]
        walk(p) if e[1] == 0x4000 else print('ROM', p)
walk('/rom')
"""


def test_the_image_holds_the_bundles_modules_as_mpy_under_rom_lib(romfs):
    from spot.ports.cpython import deploy as D
    binary, image, main = romfs
    r = subprocess.run([binary, "-c", LIST_ROM], capture_output=True, text=True, timeout=30,
                       env={"SPOT_ROMFS": image, "MICROPYPATH": ".frozen"})
    held = sorted(ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("ROM "))
    want = sorted(["/rom/lib/spot/%s.mpy" % os.path.splitext(
        mp_real._in_package(n, D.module_file(n)))[0].replace(os.sep, "/")
        for n in D.modules_for("heat_pump", "coap", main=main) if D.compiled_for_board(n)]
        + ["/rom/lib/spot_preload.mpy"])
    assert held == want, r.stdout + r.stderr
