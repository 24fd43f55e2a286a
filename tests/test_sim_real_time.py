"""`spot sim` runs its simulated clock on real time unless asked otherwise, so what
it sends to a bridge is history of now, not of 2024 (which a bridge's retention
would delete)."""
import re
import subprocess
import sys
import time

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
