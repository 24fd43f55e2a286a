"""`spot demo`, the README's main command: the bridge comes up with a fleet of
every device profile registered over CoAP, visible through the HTTP API."""
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request

from netutil import free_port


def test_spot_demo_serves_every_profile_over_coap_and_the_api(tmp_path):
    http, coap = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen([sys.executable, "-m", "spot.cli", "demo", "--duration", "30",
                             "--http", "127.0.0.1:%d" % http, "--coap", "127.0.0.1:%d" % coap,
                             "--data", str(tmp_path / "data"), "--plain-logs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline() + proc.stdout.readline()
        assert "7 simulated devices" in banner
        assert "Dashboard: http://127.0.0.1:%d/" % http in banner
        deadline = time.monotonic() + 20
        devices = []
        while time.monotonic() < deadline:
            with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/devices" % http, timeout=5) as r:
                devices = json.load(r)
            if len(devices) == 7 and all(d["presence"] == "online" for d in devices):
                break
            time.sleep(0.5)
        assert sorted(d["profile"] for d in devices) == sorted(
            ["battery", "energy_manager", "ev_charger", "generator", "heat_pump", "meter",
             "pv_inverter"])
        online = None
        while time.monotonic() < deadline:  # registration finishes just after the store row
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http, timeout=5) as r:
                online = int(re.search(r"spot_bridge_devices_online (\d+)", r.read().decode()).group(1))
            if online == 7:
                break
            time.sleep(0.2)
        assert online == 7
    finally:
        proc.terminate()
        proc.wait(15)
