"""Memory on a real MicroPython: what a notification turn leaves as garbage, that the
retained heap does not grow while the device serves, and out of memory: repeated
MemoryErrors reset the device, the reset is counted in its state file, and after the
reboot the bridge reads it.

Garbage and growth are measured by bench/mp_footprint_driver.py (the driver of
bench/footprint.py) on the frozen heat pump against the real `spot bridge` (garbage
over CoAP and over MQTT through a real mosquitto, growth over CoAP); the bounds are
issue 14's goals, so that a regression fails CI.

The device runs frozen in the 32-bit unix MicroPython (tests/mp_real.py) under a
fixed heap. Its link is made to ask for more memory than the heap has on every turn
(a real allocation failure of the interpreter, not a raised exception): the runtime
must count them, give up after the config's mem_reset within a minute and exit with
the unix port's reset status; started again (examples/unix_heat_pump.py) it must
tell the real `spot bridge` that it reset for want of memory.
"""
import asyncio
import json
import os
import subprocess

import pytest

import mp_real
from bridge_process import bridges  # noqa: F401  (a fixture)
from waiting import until

HEAP = mp_real.HEAP_CAPS["coap"]
BENCH = os.path.join(mp_real.REPO, "bench")
GARBAGE_PER_NOTIFICATION = 256   # bytes, issue 14's goal (measured: docs/benchmarks.md)
RETAINED_GROWTH = 256            # bytes from registration to the end of a run
STARVED = """
import asyncio
from spot.ports.micropython import device
from spot.profiles import heat_pump
dev = device.Device('spot.json', heat_pump)
def poll(now):
    return bytearray(1 << 20)    # more than the heap: MemoryError
dev.start()
dev.link.poll = poll
asyncio.run(dev.run())
"""


# an OSCORE device's turns with nothing to do, on the board runtime of a bundle (.mpy)
IDLE_OSCORE = """
import gc
from spot.ports.micropython import device
from spot.profiles import heat_pump


class Board:
    # a test double: a board with nothing but a clock
    def clock(self):
        return 0

    def link_ok(self):
        return True

    def woke_from_sleep(self):
        return False


class IdleLink:
    # a test double: a link with nothing to do on any turn
    def poll(self, now):
        return None


cfg = {'id': 'hp-1', 'profile': 'heat_pump', 'bridge': 'coap://127.0.0.1', 'wdt_ms': 0,
       'oscore': {'secret': '0102030405060708090a0b0c0d0e0f10', 'sender': '01',
                  'recipient': ''}}
dev = device.Device(cfg, heat_pump, clock=Board().clock, board=Board(), files='idle-')
dev.link = IdleLink()
dev.poll()


def allocated(turns):
    # bytes allocated by that many turns (a while loop: a for loop's iterator would be an
    # allocation of its own)
    gc.collect()
    before = gc.mem_alloc()
    while turns:
        dev.poll()
        turns -= 1
    return gc.mem_alloc() - before


gc.disable()
print('SPOT-IDLE', allocated(20) - allocated(0))
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


def driver(micropython, bridge, workdir, args, timeout, uri=None):
    """Run bench/mp_footprint_driver.py on the frozen heat pump (its plant model) over
    CoAP to bridge (or to the bridge URI uri); {key: [values...]} of its
    "SPOT-FP key value" lines."""
    os.makedirs(workdir, exist_ok=True)
    cfg = {"id": "hp-mem", "profile": "heat_pump", "telemetry": 1, "wdt_ms": 0,
           "comm_timeout": 600, "bridge": uri or "coap://127.0.0.1:%d" % bridge.coap_port}
    with open(os.path.join(workdir, "spot.json"), "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ, MICROPYPATH=BENCH + ":.frozen")
    try:
        r = subprocess.run([micropython, "-X", "heapsize=256k", "-m", "mp_footprint_driver",
                            "spot.json"] + args, cwd=str(workdir), env=env,
                           capture_output=True, text=True, timeout=timeout)
        out = r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:      # "run" serves until stopped
        out = (e.stdout or b"").decode() + (e.stderr or b"").decode()
    got = {}
    for line in out.splitlines():
        if line.startswith("SPOT-FP "):
            key, value = line.split(None, 2)[1:]
            got.setdefault(key, []).append(value)
    assert got, out
    return got


def test_a_notification_turn_leaves_at_most_256_bytes_of_garbage(micropython, bridges,
                                                                 tmp_path):
    got = driver(micropython, bridges(), tmp_path / "dev", ["garbage"], 120)
    assert got["mem_errors"] == ["0"]
    assert int(got["garbage_idle_turn"][0]) == 0
    assert int(got["garbage_notification"][0]) <= GARBAGE_PER_NOTIFICATION, got


def test_a_notification_turn_over_mqtt_leaves_at_most_256_bytes_of_garbage(
        micropython, bridges, broker, tmp_path):
    # QoS 1 (the config's default): the telemetry is kept in the flash outbox until
    # its PUBACK, which the turns measured take
    uri = "mqtt://127.0.0.1:%d" % broker.port
    got = driver(micropython, bridges(mqtt=uri), tmp_path / "dev", ["garbage"], 120, uri)
    assert got["mem_errors"] == ["0"]
    assert int(got["garbage_idle_turn"][0]) == 0
    assert int(got["garbage_notification"][0]) <= GARBAGE_PER_NOTIFICATION, got


def test_the_retained_heap_does_not_grow_while_the_device_sends_telemetry(
        micropython, bridges, tmp_path):
    # telemetry every second for 40 s: the tables (exchanges, message ids, outbox) fill
    # and empty again, nothing is kept
    got = driver(micropython, bridges(), tmp_path / "dev", ["run", "8", "2"], 46)
    boot = int(got["boot"][0])
    seconds, end, mem_errors = [int(x) for x in got["at"][-1].split()[:3]]
    assert seconds >= 32 and mem_errors == 0, got
    assert end - boot <= RETAINED_GROWTH, got


def test_the_footprint_driver_tells_when_a_receiver_gave_its_spare_block_back():
    # the driver's spare_given_back() (run on the board; its module runs main() when
    # imported, so its one function is compiled from its source here) on a board's
    # datagram Receiver: a socket with recvfrom() only, as MicroPython's
    import ast
    from types import SimpleNamespace
    from spot.ports.micropython import datagram
    path = os.path.join(BENCH, "mp_footprint_driver.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    [fn] = [n for n in tree.body
            if isinstance(n, ast.FunctionDef) and n.name == "spare_given_back"]
    scope = {}
    exec(compile(ast.Module([fn], []), path, "exec"), scope)

    class BoardSocket:
        """A test double: a UDP socket of MicroPython's (no recvfrom_into)."""
        def recvfrom(self, size):
            raise OSError(11)

    rx = datagram.Receiver(BoardSocket(), 8)
    dev = SimpleNamespace(link=SimpleNamespace(_rx=rx))
    assert scope["spare_given_back"](dev) is False
    rx.buf = None             # given back: no room at a receive
    assert scope["spare_given_back"](dev) is True


def test_an_idle_turn_of_a_device_with_oscore_allocates_nothing(micropython, tmp_path):
    # its sender sequence numbers are looked at every turn: a block is reserved (the
    # device_oscore module asked) only when the current one runs low
    from spot.ports.cpython import deploy as D
    out = tmp_path / "bundle"
    D.bundle("heat_pump", str(out), oscore=True)
    (out / "idle.py").write_text(IDLE_OSCORE)
    r = subprocess.run([mp_real.interpreter(), "-X", "heapsize=256k", "idle.py"],
                       cwd=str(out), env=dict(os.environ, MICROPYPATH="lib:.frozen"),
                       capture_output=True, text=True, timeout=60)
    got = [ln.split() for ln in r.stdout.splitlines() if ln.startswith("SPOT-IDLE ")]
    assert got == [["SPOT-IDLE", "0"]], r.stdout + r.stderr
