"""A `spot bridge` process with DTLS sessions open (devices of a `spot sim
--connect coaps://` process) stops cleanly: it closes each session (the devices
hear it), and aiocoap logs no "Internal shutdown sequence mismatch"."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bridge_process import BridgeProcess
from netutil import free_udp_ports
from spot.ports.cpython.dtls_link import dtls_available

PSK = "sim-fleet:00112233445566778899aabbccddeeff"

pytestmark = pytest.mark.skipif(dtls_available() is not None, reason=str(dtls_available()))


def test_a_bridge_with_dtls_sessions_open_stops_cleanly(tmp_path):
    identity, key = PSK.split(":")
    bridge = BridgeProcess(tmp_path / "bridge", toml='[dtls]\npsk = { %s = "%s" }\n'
                           % (identity, key))
    bridge.coap_port = free_udp_ports(2)
    bridge.start()
    sim = subprocess.Popen([sys.executable, "-m", "spot.cli", "sim", "heat_pump", "--count", "5",
                            "--connect", "coaps://127.0.0.1:%d" % (bridge.coap_port + 1),
                            "--duration", "60"], env=dict(os.environ, SPOT_PSK=PSK),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, devices = bridge.call("GET", "/api/v1/devices")
            if len(devices) == 5 and all(d["presence"] == "online" for d in devices):
                break
            time.sleep(0.3)
        assert len(devices) == 5
        bridge.proc.send_signal(signal.SIGTERM)
        assert bridge.proc.wait(15) == 0
        bridge.stop()
        with open(os.path.join(bridge.data, "bridge.log")) as f:
            log = [json.loads(line) for line in f if line.startswith("{")]
        assert not [e for e in log if "shutdown sequence mismatch" in e["msg"]]
        assert not [e for e in log if e["level"] in ("error", "critical")]
    finally:
        bridge.stop()
        sim.terminate()
        sim.wait(15)
        stderr = sim.stderr.read()
        sim.stderr.close()
    assert "closed by the bridge" in stderr
