"""The `spot` command line: decode and profiles."""
import subprocess
import sys

from spot import cli


def run(*args):
    return subprocess.run([sys.executable, "-m", "spot.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_decode_names_operation_service_and_objects():
    r = run("decode", "12 10 00 2a a1 07 18 d7")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "SPOT v1 WRITE service heat_pump (0x10) mid 42",
        "{7 /flow_setpoint = 21.5 Cel/: 215}",
    ]


def test_decode_reads_a_binary_file(tmp_path):
    f = tmp_path / "frame.bin"
    f.write_bytes(bytes.fromhex("1910002b820407"))
    r = run("decode", str(f))
    assert r.returncode == 0
    assert "ERROR service heat_pump (0x10) mid 43  [out-of-range]" in r.stdout
    assert "[4, 7]" in r.stdout


def test_decode_names_objects_inside_notify():
    text = cli.describe(bytes.fromhex("16100007821a6553f100a108190164"))
    assert "8 /flow_temp = 35.6 Cel/: 356" in text


def test_decode_reports_invalid_frame_clearly():
    r = run("decode", "12 10 00 2a a1 07")
    assert r.returncode == 0
    assert r.stdout.strip() == "invalid frame: malformed (truncated)"


def test_decode_rejects_non_hex_argument():
    r = run("decode", "not-hex-zz")
    assert r.returncode != 0
    assert "hex" in (r.stderr + r.stdout).lower()


def test_profiles_lists_every_profile_with_objects():
    r = run("profiles")
    assert r.returncode == 0
    for name in ("heat_pump", "pv_inverter", "battery", "ev_charger", "meter",
                 "generator", "energy_manager", "plans"):
        assert " %s v" % name in r.stdout
    assert "flow_setpoint" in r.stdout


def test_profiles_shows_one_profile():
    r = run("profiles", "heat_pump")
    lines = r.stdout.splitlines()
    assert lines[0] == "0x10 heat_pump v1.0"
    assert all(line.startswith("  ") for line in lines[1:])
