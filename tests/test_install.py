"""The README's main command works from a plain `pip install .` in a fresh
virtual environment: the base dependencies suffice and the dashboard ships."""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

from netutil import free_tcp_port, free_udp_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pip_install_then_spot_demo_serves_the_dashboard_and_the_fleet(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "node_modules", "__pycache__", "*.egg-info", "build", "spot-data"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check", str(src)]
    r = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    http, coap = free_tcp_port(), free_udp_port()
    proc = subprocess.Popen([str(venv / "bin" / "spot"), "demo", "--duration", "30",
                             "--http", "127.0.0.1:%d" % http, "--coap", "127.0.0.1:%d" % coap,
                             "--data", str(tmp_path / "data"), "--plain-logs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(tmp_path))
    try:
        assert "simulated devices" in proc.stdout.readline(), proc.stderr.read()
        base = "http://127.0.0.1:%d" % http
        with urllib.request.urlopen(base + "/", timeout=10) as page:
            assert b"SPOT bridge" in page.read()
        deadline, devices = time.monotonic() + 20, []
        while time.monotonic() < deadline and len(devices) < 7:
            with urllib.request.urlopen(base + "/api/v1/devices", timeout=10) as r:
                devices = json.load(r)
            time.sleep(0.3)
        assert len(devices) == 7
    finally:
        proc.terminate()
        proc.wait(15)
