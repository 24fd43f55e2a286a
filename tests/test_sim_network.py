"""Simulated devices on the network: served over CoAP to any CoAP client
(libcoap), registered with the bridge over CoAP, and over MQTT through mosquitto."""
import asyncio
import contextlib
import subprocess
import sys
import time

import cbor2

from netutil import free_udp_port, free_udp_ports
from waiting import until
from spot.cloud_bridge import config as C
from spot.cloud_bridge.coap_link import CoapLink
from spot.cloud_bridge.mqtt_link import MqttLink
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store
from spot.core import frame as F
from spot.core.services import HEAT_PUMP
from spot.ports.cpython.fleet import Fleet
from spot.ports.cpython.fleet_links import serve_fleet_coap, connect_fleet_mqtt, close_links

COAP_CLIENT = "coap-client-notls"


def coap(*args):
    """(exit status, payload) of a coap-client run: its output without the one newline
    it adds (not strip(): a CBOR payload can end in a whitespace byte, 11 is 0x0b)."""
    r = subprocess.run([COAP_CLIENT, "-B", "5", *args], capture_output=True, timeout=20)
    out = r.stdout
    return r.returncode, out[:-1] if out.endswith(b"\n") else out


def test_spot_sim_listen_serves_each_device_on_its_own_port_to_libcoap():
    for attempt in range(3):  # a probed port can be taken before the simulator binds it
        port = free_udp_ports(2)
        proc = subprocess.Popen([sys.executable, "-m", "spot.cli", "sim", "heat_pump", "--count",
                                 "2", "--listen", "coap://127.0.0.1:%d" % port, "--duration",
                                 "20", "--speed", "60"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        if lines[0] or attempt == 2:
            break
        proc.wait(10)
    try:
        assert lines == ["hp-0001 coap://127.0.0.1:%d" % port,
                         "hp-0002 coap://127.0.0.1:%d" % (port + 1)], proc.stderr.read() if not lines[0] else ""
        time.sleep(1.5)  # a few simulated minutes of physics
        for p in (port, port + 1):
            rc, out = coap("-m", "get", "coap://127.0.0.1:%d/heat_pump/outdoor_temp" % p)
            assert rc == 0 and isinstance(cbor2.loads(out), int)
        rc, _ = coap("-m", "put", "-t", "60", "-e", cbor2.dumps(2).decode("latin-1"),
                     "coap://127.0.0.1:%d/heat_pump/sg_ready" % port)
        assert rc == 0
        rc, out = coap("-m", "get", "coap://127.0.0.1:%d/heat_pump/sg_ready" % port)
        assert cbor2.loads(out) == 2
    finally:
        proc.terminate()
        proc.wait(10)


async def _bridge(tmp_path):
    config = C.load(None, data=str(tmp_path), offline_after=3600)
    store = await open_store(config.store_url)
    bridge = Bridge(config, store)
    await bridge.start()
    return bridge


@contextlib.asynccontextmanager
async def fleet_on_bridge(tmp_path, fleet, connect):
    """A bridge with `fleet` running and linked to it: connect(bridge) starts the bridge's
    link and returns (link, (fleet links, send)); all stop when the block ends."""
    bridge = await _bridge(tmp_path)
    link, (links, send) = await connect(bridge)
    run = asyncio.ensure_future(fleet.run(tick=0.2, on_frames=send))
    try:
        yield bridge
    finally:
        run.cancel()
        await close_links(links)
        await link.stop()
        await bridge.stop()
        await bridge.store.close()


def over_coap(fleet):
    async def connect(bridge):
        port = free_udp_port()
        link = await CoapLink(bridge, "127.0.0.1", port).start()
        return link, await serve_fleet_coap(fleet, bridge=("127.0.0.1", port))
    return connect


def over_mqtt(fleet, broker):
    async def connect(bridge):
        link = await MqttLink(bridge, "mqtt://127.0.0.1:%d" % broker.port).start()
        return link, await connect_fleet_mqtt(fleet, "127.0.0.1", broker.port)
    return connect


def test_fleet_registers_with_the_bridge_over_coap_sends_telemetry_and_takes_commands(tmp_path):
    async def main():
        fleet = Fleet({"heat_pump": 2, "pv_inverter": 1}, seed=3, t0=int(time.time()),
                      telemetry=2)
        async with fleet_on_bridge(tmp_path, fleet, over_coap(fleet)) as bridge:
            async def registered():
                return len(await bridge.store.list_devices()) == 3
            assert await until(registered)

            async def telemetry():
                return (HEAT_PUMP, 11) in await bridge.store.latest("hp-0001")
            assert await until(telemetry)
            cmd = await bridge.submit("operator", "hp-0002", HEAT_PUMP, F.WRITE, {6: 1})

            async def done():
                return (await bridge.store.get_command(cmd.id)).status == "done"
            assert await until(done)
            assert fleet.by_id["hp-0002"].node.get(HEAT_PUMP, 6) == 1
    asyncio.run(main())


def test_fleet_over_mqtt_registers_by_birth_and_telemetry_is_stored_before_puback(tmp_path, broker):
    async def main():
        fleet = Fleet({"heat_pump": 2}, seed=4, t0=int(time.time()), telemetry=2)
        async with fleet_on_bridge(tmp_path, fleet, over_mqtt(fleet, broker)) as bridge:
            async def registered():
                return len(await bridge.store.list_devices()) == 2
            assert await until(registered)

            async def telemetry():
                return (HEAT_PUMP, 11) in await bridge.store.latest("hp-0002")
            assert await until(telemetry)
            cmd = await bridge.submit("operator", "hp-0001", HEAT_PUMP, F.WRITE, {6: 4})

            async def done():
                return (await bridge.store.get_command(cmd.id)).status == "done"
            assert await until(done)
            assert fleet.by_id["hp-0001"].node.get(HEAT_PUMP, 6) == 4
    asyncio.run(main())


def test_a_broadcast_over_coap_reaches_the_consumers_only_despite_a_garbled_announce(tmp_path):
    import aiocoap
    from spot.core.services import PRICE

    async def main():
        fleet = Fleet({"energy_manager": 1, "heat_pump": 1}, seed=5, t0=int(time.time()))
        em = next(d for d in fleet.devices if d.profile_name == "energy_manager")
        hp = next(d for d in fleet.devices if d.profile_name == "heat_pump")
        client = await aiocoap.Context.create_client_context()
        try:
            async with fleet_on_bridge(tmp_path, fleet, over_coap(fleet)) as bridge:
                async def registered():
                    return len(await bridge.store.list_devices()) == 2
                assert await until(registered)
                garbled = F.encode(F.ANNOUNCE, 0, 1, {0: "odd-1", 1: [[HEAT_PUMP, 1, 0]], 2: "x"})
                await client.request(aiocoap.Message(
                    code=aiocoap.POST, payload=garbled,
                    uri="coap://127.0.0.1:%d/s" % bridge.transports["coap"].port)).response
                t = int(time.time())
                await bridge.broadcast("operator", PRICE, {1: [t, 900, [800, 900, 1200, 700]]})
                assert em.node.signals.get(PRICE) is not None
                assert PRICE not in hp.node.signals
                assert bridge.metrics.value("broadcast_failures", transport="coap") == 0
        finally:
            await client.shutdown()
    asyncio.run(main())
