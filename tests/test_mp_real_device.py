"""The board runtime on a real MicroPython against the real `spot bridge`.

The device is examples/unix_heat_pump.py (ports/micropython/device.py with a plant
model), frozen with SPOT into a 32-bit unix MicroPython (tests/mp_real.py) and run
under a fixed heap (mp_real.HEAP_CAPS), over real UDP (CoAP) or a real mosquitto
(MQTT). One scenario per transport, in the order a device lives it: it registers, its
telemetry is stored, a WRITE and a plan are done, the bridge goes away and the device
falls back to its default plan, the bridge returns and the device is known again,
takes commands again and has delivered what it measured meanwhile.
"""
import asyncio
import json
import os
import shutil
import subprocess
import time

import pytest

import mp_real
from bridge_process import bridges  # noqa: F401  (a fixture)
from waiting import until

HEAP = mp_real.HEAP_CAPS
MPY_HEAP = HEAP["mpy"]   # .mpy on the file system, the bundle's preload first
DEFAULT_SG = 3          # the config's default plan: SG-Ready 3 (recommended)
PLAN_SG = 1             # the pushed plan: SG-Ready 1 (blocked)


@pytest.fixture(scope="module")
def micropython():
    return mp_real.frozen_or_skip()


def wait(cond, timeout=30):
    return asyncio.run(until(cond, timeout, every=0.2))


def device_config(bridge_uri):
    return {"id": "hp-mp", "profile": "heat_pump", "bridge": bridge_uri, "telemetry": 1,
            "comm_timeout": 4, "lifetime": 5, "backoff_ms": [500, 2000], "wdt_ms": 0,
            "plan": {"heat_pump": {"sg_ready": DEFAULT_SG}}}


def device_json(bridge):
    status, body = bridge.call("GET", "/api/v1/devices/hp-mp")
    return body if status == 200 else None


def history(bridge, obj):
    status, body = bridge.call("GET", "/api/v1/devices/hp-mp/history?service=heat_pump"
                                      "&object=%s" % obj)
    return [(p["t"], p["value"]) for p in body["points"]] if status == 200 else []


def command(bridge, body):
    status, cmd = bridge.call("POST", "/api/v1/devices/hp-mp/commands", body)
    assert status == 202, cmd
    return cmd["id"]


def done(bridge, cid):
    return bridge.call("GET", "/api/v1/commands/%d" % cid)[1]["status"] == "done"


def live_a_device_life(bridge, dev):
    """The scenario of the module docstring; dev is started here."""
    dev.start()
    try:
        assert wait(lambda: (device_json(bridge) or {}).get("presence") == "online"), \
            dev.output()
        assert wait(lambda: history(bridge, "flow_temp")), "no telemetry stored"

        cid = command(bridge, {"service": "heat_pump", "op": "write",
                               "values": {"flow_setpoint": 55}})
        assert wait(lambda: done(bridge, cid)), "the WRITE was not done"
        assert wait(lambda: (history(bridge, "flow_setpoint") or [(0, 0)])[-1][1] == 55)

        status, plan = bridge.call("POST", "/api/v1/devices/hp-mp/plans", {
            "duration": 3600, "entries": {"heat_pump": {"sg_ready": PLAN_SG}}})
        assert status == 202, plan
        assert wait(lambda: done(bridge, plan["command"]["id"])), "the plan was not done"
        assert wait(lambda: (history(bridge, "state") or [(0, 0)])[-1][1] == 5), \
            "the plan did not block the compressor"

        gone = time.time()
        bridge.kill()
        time.sleep(8)    # past comm_timeout: the default plan governs
        assert dev.running(), dev.output()
        bridge.start()
        assert wait(lambda: (device_json(bridge) or {}).get("last_seen", 0) > gone,
                    timeout=40), "the device did not come back to the bridge"
        assert wait(lambda: [v for t, v in history(bridge, "sg_ready")
                             if gone < t and v == DEFAULT_SG], timeout=40), \
            "no fallback to the default plan was reported"
        cid = command(bridge, {"service": "heat_pump", "op": "write",
                               "values": {"flow_setpoint": 40}})
        assert wait(lambda: done(bridge, cid)), \
            "no WRITE done after the bridge returned: %s" % (bridge.call("GET", "/api/v1/commands/%d" % cid),)
        assert dev.running(), dev.output()
    finally:
        dev.stop()
    assert "MemoryError" not in dev.output()


def test_the_board_runtime_over_coap_lives_through_a_bridge_restart_in_its_heap_cap(
        micropython, bridges, tmp_path):
    bridge = bridges(offline_after=3)
    dev = mp_real.DeviceProcess(micropython, tmp_path / "dev",
                                device_config("coap://127.0.0.1:%d" % bridge.coap_port),
                                HEAP["coap"])
    live_a_device_life(bridge, dev)


def test_the_board_runtime_over_mqtt_lives_through_a_bridge_restart_in_its_heap_cap(
        micropython, bridges, broker, tmp_path):
    uri = "mqtt://127.0.0.1:%d" % broker.port
    bridge = bridges(offline_after=3, mqtt=uri)
    dev = mp_real.DeviceProcess(micropython, tmp_path / "dev", device_config(uri),
                                HEAP["mqtt"])
    live_a_device_life(bridge, dev)


@pytest.fixture(scope="module")
def mpy_bundle(micropython, tmp_path_factory):
    """A heat pump bundle of .mpy files over CoAP, the unix example as its main.py."""
    from spot.ports.cpython import deploy as D
    out = tmp_path_factory.mktemp("bundle")
    files = D.bundle("heat_pump", str(out),
                     main=os.path.join(mp_real.REPO, "examples", "unix_heat_pump.py"))
    return out, files


# the preload's imports, each with the modules it loaded; then what booting a device loads
PRELOAD_PROBE = """
import builtins, sys
real = builtins.__import__
depth = [0]
def traced(name, *a):
    depth[0] += 1
    before = set(sys.modules)
    try:
        return real(name, *a)
    finally:
        depth[0] -= 1
        if depth[0] == 1 and name.startswith('spot'):
            print('PRELOAD', name, *sorted(k for k in sys.modules if k not in before))
builtins.__import__ = traced
import spot_preload
builtins.__import__ = real
before = set(sys.modules)
from spot.ports.micropython import device
from spot.profiles import heat_pump
dev = device.Device('spot.json', heat_pump)
print('BOOT', *sorted(k for k in sys.modules if k not in before and k.startswith('spot')))
print('CONFIG', 'spot.ports.micropython.config' in sys.modules,
      hasattr(sys.modules['spot.ports.micropython'], 'config'))
"""


def test_the_bundles_preload_loads_each_module_after_its_imports_and_all_a_boot_loads(
        mpy_bundle):
    out, files = mpy_bundle
    assert "lib/spot_preload.mpy" in files
    assert (out / "main.py").read_text().startswith("__import__('spot_preload')")
    (out / "probe.py").write_text(PRELOAD_PROBE)
    (out / "spot.json").write_text(json.dumps({"id": "hp-mp", "profile": "heat_pump",
                                               "wdt_ms": 0, "bridge": "coap://127.0.0.1:9"}))
    r = subprocess.run([mp_real.interpreter(), "-X", "heapsize=256k", "probe.py"], cwd=str(out),
                       env=dict(os.environ, MICROPYPATH="lib:.frozen"), capture_output=True,
                       text=True, timeout=30)
    preloaded = [ln.split()[1:] for ln in r.stdout.splitlines() if ln.startswith("PRELOAD ")]
    # on the real interpreter, each import of the preload loads that module alone: the
    # modules it imports are loaded already (leaves first)
    assert preloaded and all(loaded == [name] for name, *loaded in preloaded), r.stdout + r.stderr
    assert "spot.ports.micropython.device_coap" in [p[0] for p in preloaded]
    # and booting the device keeps nothing of SPOT's the preload did not load: the config
    # module it loads to check the config is forgotten (sys.modules, its package) after boot
    assert "BOOT" in r.stdout.split(), r.stdout + r.stderr
    assert r.stdout.split("BOOT", 1)[1].split("\n", 1)[0].split() == [], r.stdout
    assert "CONFIG False False" in r.stdout, r.stdout


def test_a_bundle_of_mpy_files_with_the_unix_example_as_main_registers_with_the_bridge(
        mpy_bundle, bridges, tmp_path):
    bridge = bridges()
    out = tmp_path / "bundle"
    shutil.copytree(str(mpy_bundle[0]), str(out))
    (out / "spot.json").write_text(json.dumps({
        "id": "hp-mp", "profile": "heat_pump", "wdt_ms": 0,
        "bridge": "coap://127.0.0.1:%d" % bridge.coap_port}))
    assert "main.py" in mpy_bundle[1] and not any(f.endswith(".py") and f.startswith("lib/")
                                                  for f in mpy_bundle[1])
    # the interpreter with nothing of SPOT's frozen: everything comes from lib/*.mpy
    proc = subprocess.Popen([mp_real.interpreter(), "-X", "heapsize=" + MPY_HEAP, "main.py"],
                            cwd=str(out), env=dict(os.environ, MICROPYPATH="lib:.frozen"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait(lambda: (device_json(bridge) or {}).get("presence") == "online"), \
            proc.poll()
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    assert "Error" not in output, output


def test_a_subscription_through_the_api_is_observed_on_the_board_in_its_heap_cap(
        micropython, bridges, tmp_path):
    # Observe is imported on the device with the first observation (core/coap_observe):
    # under the CI heap cap, after the bridge has made the device's heap what it is
    # (registration, a WRITE), it must load and serve. No periodic telemetry: every value
    # stored came from the observation's notifications; then the subscription ends.
    bridge = bridges(offline_after=30)
    cfg = dict(device_config("coap://127.0.0.1:%d" % bridge.coap_port), telemetry=0,
               comm_timeout=600, lifetime=300)
    dev = mp_real.DeviceProcess(micropython, tmp_path / "dev", cfg, HEAP["coap"])
    dev.start()
    try:
        assert wait(lambda: (device_json(bridge) or {}).get("presence") == "online"), \
            dev.output()
        cid = command(bridge, {"service": "heat_pump", "op": "write",
                               "values": {"flow_setpoint": 70}})   # the compressor runs
        assert wait(lambda: done(bridge, cid)), "the WRITE was not done"
        assert not history(bridge, "flow_temp")
        cid = command(bridge, {"service": "heat_pump", "op": "subscribe",
                               "objects": ["flow_temp"], "attributes": {"pmin": 1, "pmax": 1}})
        assert wait(lambda: done(bridge, cid)), "the subscription was not done"
        sub = bridge.call("GET", "/api/v1/commands/%d" % cid)[1]["subscription"]
        assert wait(lambda: len(history(bridge, "flow_temp")) >= 3), \
            "no notifications stored: %s" % dev.output()
        cid = command(bridge, {"service": "heat_pump", "op": "unsubscribe",
                               "subscription": sub})
        assert wait(lambda: done(bridge, cid)), "the unsubscribe was not done"
        assert dev.running(), dev.output()
    finally:
        dev.stop()
    assert "MemoryError" not in dev.output() and "Traceback" not in dev.output()


def test_a_request_in_block1_blocks_is_reassembled_on_the_board_in_its_heap_cap(
        micropython, bridges, tmp_path):
    # Block-wise transfers are imported on the device with the first block
    # (core/coap_blocks): a client sending a WRITE in 16-byte Block1 blocks (the core's
    # endpoint on CPython, over real UDP) to the registered device under the CI heap cap
    # gets the WRITE's RESULT, and the bridge then reads the value written
    import socket
    from netutil import free_udp_port
    from spot.core import frame as F
    from spot.core.coap_endpoint import Endpoint
    from spot.core.coap_client import EV_RESPONSE
    from spot.core.coap_binding import CF_SPOT
    bridge = bridges(offline_after=30)
    port = free_udp_port()
    cfg = dict(device_config("coap://127.0.0.1:%d" % bridge.coap_port), telemetry=0,
               comm_timeout=600, lifetime=300, port=port)
    dev = mp_real.DeviceProcess(micropython, tmp_path / "dev", cfg, HEAP["coap"])
    dev.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    try:
        assert wait(lambda: (device_json(bridge) or {}).get("presence") == "online"), \
            dev.output()
        client = Endpoint(block_szx=0)      # 16-byte blocks
        frame = F.encode(F.WRITE, 0x10, 77, {7: 625, 13: 215, 9: 480})   # > 16 bytes
        token = client.request(("127.0.0.1", port), 2, "s", frame, content_format=CF_SPOT)
        got = []
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            for addr, data in client.step(int(time.monotonic() * 1000)):
                sock.sendto(data, addr)
            try:
                data, addr = sock.recvfrom(2048)
            except socket.timeout:
                continue
            for addr, data in client.receive(data, addr, int(time.monotonic() * 1000)):
                sock.sendto(data, addr)
            got = [ev for ev in client.events() if ev.token == token]
        assert got and got[0].kind == EV_RESPONSE and got[0].code == 68, (got, dev.output())
        assert F.decode(got[0].payload)[0] == F.RESULT
        cid = command(bridge, {"service": "heat_pump", "op": "read",
                               "objects": ["flow_setpoint", "room_setpoint"]})
        assert wait(lambda: done(bridge, cid)), "the READ was not done"
        values = bridge.call("GET", "/api/v1/commands/%d" % cid)[1]["values"]
        assert values["flow_setpoint"]["value"] == 62.5, values
        assert dev.running(), dev.output()
    finally:
        sock.close()
        dev.stop()
    assert "MemoryError" not in dev.output() and "Traceback" not in dev.output()
