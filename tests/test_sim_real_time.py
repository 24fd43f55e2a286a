"""`spot sim` runs its simulated clock on real time unless asked otherwise, so what
it sends to a bridge is history of now, not of 2024 (which a bridge's retention
would delete); asked for its own simulated time, it keeps it (the bridge may not
set it)."""
import re
import subprocess
import sys
import time

from spot.core import frame as F
from spot.core.errors import NOT_AUTHORISED
from spot.core.services import TIME
from spot.ports.cpython.simulator import SimDevice

T_2024 = 1704067200


def notify_times(*args):
    out = subprocess.run([sys.executable, "-m", "spot.cli", "sim", "heat_pump", "--duration",
                          "1", "--telemetry", "1", "--print", *args],
                         capture_output=True, text=True, timeout=60).stdout
    return [int(t) for t in re.findall(r"^\s+\[(\d+), \{", out, re.M)]


def test_spot_sim_timestamps_its_telemetry_with_the_current_time_by_default():
    times = notify_times()
    assert times and all(abs(t - time.time()) < 120 for t in times)


def test_spot_sim_start_sets_another_simulated_start():
    times = notify_times("--start", str(T_2024))
    assert times and all(T_2024 <= t < T_2024 + 120 for t in times)


def clock_set(device, unix_time):
    return F.decode(device.receive(F.encode(F.WRITE, TIME, 9, {1: unix_time}), device.t,
                                   "bridge"))


def test_a_simulator_on_its_own_simulated_time_refuses_a_clock_set():
    dev = SimDevice("heat_pump", "hp-1", t0=T_2024, keep_clock=True)
    op, _, _, body = clock_set(dev, T_2024 + 10 ** 8)
    assert op == F.ERROR and body[0] == NOT_AUTHORISED
    assert dev.node.unix(dev.t) == T_2024


def test_a_simulator_on_real_time_takes_the_bridges_clock():
    dev = SimDevice("heat_pump", "hp-1", t0=int(time.time()))
    assert clock_set(dev, dev.t + 5)[0] == F.RESULT
    assert dev.node.unix(dev.t) == dev.t + 5
