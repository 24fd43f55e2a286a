"""`spot bridge` says at start every way devices reach it (CoAP, coaps:// with DTLS,
the MQTT broker) and where its data goes; a clone ignores the default data directory.
Real `spot bridge` processes, a real mosquitto."""
import os
import subprocess

import pytest

from bridge_process import BridgeProcess
from netutil import free_udp_ports
from spot.ports.cpython.dtls_link import dtls_available

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def banner(bridge, lines):
    """The lines the started bridge printed after its first one."""
    return [bridge.proc.stdout.readline().decode().rstrip("\n") for _ in range(lines)]


def test_the_banner_lists_coap_the_mqtt_broker_and_the_data_directory(tmp_path, broker):
    url = "mqtt://127.0.0.1:%d" % broker.port
    bridge = BridgeProcess(tmp_path / "bridge", mqtt=url).start()
    try:
        lines = banner(bridge, 4)
    finally:
        bridge.stop()
    assert lines[0].startswith("listening: http http://127.0.0.1:")
    assert lines[1].startswith("listening: coap udp 127.0.0.1:%d " % bridge.coap_port)
    assert lines[2] == "listening: mqtt client of %s (devices through the broker)" % url
    assert lines[3] == "data: %s (store %s)" % (bridge.data, "sqlite://" + bridge.data
                                                + "/bridge.db")


@pytest.mark.skipif(dtls_available() is not None, reason=str(dtls_available()))
def test_the_banner_lists_the_dtls_port(tmp_path):
    bridge = BridgeProcess(tmp_path / "bridge",
                           toml='[dtls]\npsk = { fleet = "00112233445566778899aabbccddeeff" }\n')
    bridge.coap_port = free_udp_ports(2)
    bridge.start()
    try:
        lines = banner(bridge, 3)
    finally:
        bridge.stop()
    assert lines[2] == "listening: coaps udp 127.0.0.1:%d (DTLS, 1 PSK identities)" % (
        bridge.coap_port + 1)


def test_a_clone_ignores_the_default_data_directory():
    if not os.path.exists(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "-C", ROOT, "check-ignore", "-q", "spot-data/bridge.db"])
    assert r.returncode == 0
