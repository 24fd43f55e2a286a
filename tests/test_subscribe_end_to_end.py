"""A subscription made through the HTTP API delivers data end to end: a real
`spot bridge` process, devices run by a real `spot sim` process registered over
CoAP or through a real mosquitto over MQTT, and (in-process bridge, real DTLS)
over coaps://. The simulators send no periodic telemetry (--telemetry 0), so
every value stored came from the subscription's notifications."""
import asyncio
import contextlib
import io
import subprocess
import sys
import time

import cbor2
import pytest

from bridge_process import BridgeProcess
from netutil import free_udp_port
from waiting import until
from spot.core import frame as F
from spot.core.services import HEAT_PUMP
from spot.ports.cpython.dtls_link import dtls_available

FLOW_TEMP = 8   # heat_pump object 8 (flow_temp)
SUBSCRIBE = {"op": "subscribe", "service": "heat_pump", "objects": ["flow_temp"],
             "attributes": {"pmin": 1, "pmax": 1}}


@contextlib.contextmanager
def spot_sim(connect, *extra):
    """`spot sim heat_pump --connect URI` without periodic telemetry, stopped after."""
    proc = subprocess.Popen([sys.executable, "-m", "spot.cli", "sim", "heat_pump", "--connect",
                             connect, "--telemetry", "0", "--tick", "0.2", "--duration", "120",
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)
        proc.stderr.close()


@contextlib.contextmanager
def bridge_process(tmp_path, **kw):
    bridge = BridgeProcess(tmp_path / "bridge", **kw).start()
    try:
        yield bridge
    finally:
        bridge.stop()


def _registered(bridge, device="hp-0001"):
    return bridge.call("GET", "/api/v1/devices/%s" % device)[0] == 200


def _subscribe_and_collect(bridge):
    """POST the subscription; wait for it to be done and for notifications in history."""
    assert until_sync(lambda: _registered(bridge)), "the simulated device never registered"
    status, cmd = bridge.call("POST", "/api/v1/devices/hp-0001/commands", SUBSCRIBE)
    assert status == 202, cmd

    def done():
        return bridge.call("GET", "/api/v1/commands/%d" % cmd["id"])[1]["status"] not in ("queued", "claimed", "sent")
    assert until_sync(done)
    cmd = bridge.call("GET", "/api/v1/commands/%d" % cmd["id"])[1]
    assert cmd["status"] == "done", cmd

    def points():
        _, h = bridge.call("GET", "/api/v1/devices/hp-0001/history?service=heat_pump"
                                  "&object=flow_temp")
        return h["points"] if len(h["points"]) >= 3 else None
    got = until_sync(points)
    assert got, "no notifications stored"
    return cmd, got


def until_sync(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.2)
    return None


def test_subscribe_from_the_api_stores_the_notifications_of_a_device_on_coap(tmp_path):
    with bridge_process(tmp_path) as bridge:
        with spot_sim("coap://127.0.0.1:%d" % bridge.coap_port):
            cmd, points = _subscribe_and_collect(bridge)
            assert cmd["subscription"] > 0
            assert all(20 < p["value"] < 80 for p in points)   # Cel, not wire units


def test_subscribe_from_the_api_stores_the_notifications_of_a_device_on_mqtt(tmp_path, broker):
    url = "mqtt://127.0.0.1:%d" % broker.port
    with bridge_process(tmp_path, mqtt=url) as bridge:
        with spot_sim(url):
            _subscribe_and_collect(bridge)


@pytest.mark.skipif(dtls_available() is not None, reason=str(dtls_available()))
def test_subscribe_stores_the_notifications_of_a_device_on_coaps(tmp_path):
    from test_sim_dtls import dtls_bridge, IDENTITY, KEY
    from spot.ports.cpython.fleet import Fleet
    from spot.ports.cpython.fleet_links import connect_fleet_coaps, close_links

    async def main():
        async with dtls_bridge(tmp_path) as (parts, port):
            fleet = Fleet({"heat_pump": 1}, seed=5, t0=int(time.time()), telemetry=None)
            links, send = await connect_fleet_coaps(fleet, "127.0.0.1", port,
                                                    IDENTITY.encode(), KEY)
            run = asyncio.ensure_future(fleet.run(tick=0.2, on_frames=send))
            try:
                bridge = parts.bridge

                async def registered():
                    return await bridge.store.get_device("hp-0001") is not None
                assert await until(registered)
                cmd = await bridge.submit("operator", "hp-0001", HEAT_PUMP, F.SUBSCRIBE,
                                          {FLOW_TEMP: {0: 1, 1: 1}})

                async def points():
                    rows = await bridge.store.history("hp-0001", HEAT_PUMP, FLOW_TEMP, None,
                                                      None, 10)
                    return len(rows) >= 3
                assert await until(points)
                assert (await bridge.store.get_command(cmd.id)).status == "done"
            finally:
                run.cancel()
                await close_links(links)
    asyncio.run(main())


def test_libcoap_observing_a_spot_sim_listen_object_gets_every_notification():
    port = free_udp_port()
    proc = subprocess.Popen([sys.executable, "-m", "spot.cli", "sim", "heat_pump", "--listen",
                             "coap://127.0.0.1:%d" % port, "--telemetry", "0", "--tick", "0.2",
                             "--duration", "30"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith("hp-0001 coap://")
        r = subprocess.run(["coap-client-notls", "-B", "10", "-s", "8", "-m", "get",
                            "coap://127.0.0.1:%d/heat_pump/flow_temp?pmin=1&pmax=1" % port],
                           capture_output=True, timeout=30)
        # the payloads back to back, then one newline (not strip(): a CBOR item can
        # end in a whitespace byte, e.g. 267 is 19 01 0b)
        out = r.stdout[:-1] if r.stdout.endswith(b"\n") else r.stdout
        stream, values = io.BytesIO(out), []
        while stream.tell() < len(out):
            values.append(cbor2.load(stream))
        assert len(values) >= 7, values   # the value, then one a second for 8 s
    finally:
        proc.terminate()
        proc.wait(15)
        proc.stdout.close()
