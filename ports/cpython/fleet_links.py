"""Put a simulated Fleet on the network: CoAP servers, CoAP or MQTT clients of a bridge.

    servers, on_frames = await serve_fleet_coap(fleet, "127.0.0.1", 5683)          # --listen
    servers, on_frames = await serve_fleet_coap(fleet, bridge=("bridge", 5683))    # --connect coap://
    links, on_frames = await connect_fleet_coaps(fleet, "bridge", 5684, b"id", key) # --connect coaps://
    links, on_frames = await connect_fleet_mqtt(fleet, "broker", 1883)             # --connect mqtt://
    await fleet.run(tick=1.0, on_frames=on_frames)

Every device runs the code a board runs (core.coap_binding.CoapDevice,
core.mqtt_binding.MqttDevice) with its node on the fleet's simulated clock;
the fleet steps the models and hands the due notifications to on_frames,
which sends them. Everything is asyncio, no threads: one process holds
thousands of devices.
"""
import asyncio

from ...core.mqtt_binding import MqttDevice, make_client
from ...core.mqtt_client import EV_CONNECTED
from .coap_transport import serve_device
from .dtls_link import connect_device_dtls


HANDSHAKE_BATCH = 20      # coaps:// devices started together, then
HANDSHAKE_PAUSE = 0.1     # seconds before the next batch


def _node_clock(fleet):
    return lambda now_ms: int(fleet.now())


async def serve_fleet_coap(fleet, host="127.0.0.1", first_port=0, bridge=None, lifetime=60):
    """One CoAP endpoint per device on consecutive ports from first_port (0: any);
    with bridge=(host, port) each registers there and POSTs its telemetry."""
    servers = {}
    clock = _node_clock(fleet)
    for i, d in enumerate(fleet.devices):
        port = first_port + i if first_port else 0
        servers[d.device_id] = await serve_device(d.node, host, port, bridge=bridge,
                                                  lifetime=lifetime, node_clock=clock)

    def on_frames(device, frames):
        server = servers[device.device_id]
        server.device.send_notifications(frames)   # telemetry to the bridge, observations
        server.poke()
    return servers, on_frames


async def connect_fleet_coaps(fleet, host, port, identity, key, lifetime=60, link_options=None):
    """One DTLS-PSK session per device with the bridge's coaps://host:port
    (ports/cpython/dtls_link.py); each registers over it and POSTs its telemetry,
    and the bridge's commands come back down the same session. identity, key: the
    PSK (bytes) from the bridge's [dtls] psk table, shared by the fleet."""
    links = {}
    clock = _node_clock(fleet)
    for i, d in enumerate(fleet.devices):
        if i and i % HANDSHAKE_BATCH == 0:   # a few handshakes at a time, not a storm
            await asyncio.sleep(HANDSHAKE_PAUSE)
        links[d.device_id] = await connect_device_dtls(
            d.node, host, port, identity, key, lifetime=lifetime, node_clock=clock,
            name=d.device_id, link_options=link_options)

    def on_frames(device, frames):
        link = links[device.device_id]
        link.device.send_notifications(frames)
        link.poke()
    return links, on_frames


class MqttLinkDevice:
    """One simulated device's MQTT session on asyncio streams, reconnecting with back-off."""

    def __init__(self, node, device_id, host, port, ssl=None, node_clock=None, keepalive=30):
        self.host = host
        self.port = port
        self.ssl = ssl
        self.client = make_client(device_id, keepalive=keepalive)
        self.binding = MqttDevice(node, self.client, device_id, node_clock=node_clock)
        self.connected = asyncio.Event()
        self.connections = 0
        self.errors = 0
        self._writer = None
        self._wake = asyncio.Event()
        self._stop = False

    def now(self):
        return int(asyncio.get_running_loop().time() * 1000)

    def publish(self, frames):
        """Publish NOTIFY frames (telemetry) now, or from the client's outbox later."""
        for f in frames:
            self.binding.publish_notify(f, self.now())
        self._wake.set()

    async def run(self):
        delay = 0.5
        while not self._stop:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
                self._writer = writer
                self.connections += 1
                writer.write(self.client.connect(self.now()))
                await self._serve(reader, writer)
                delay = 0.5
            except (OSError, ConnectionError, asyncio.IncompleteReadError):
                self.errors += 1
            finally:
                self.connected.clear()
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
                for ev in self.client.connection_lost("socket closed", self.now()):
                    self.binding.on_event(ev, self.now())
            if not self._stop:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    async def _serve(self, reader, writer):
        read = asyncio.ensure_future(reader.read(4096))
        try:
            while not self._stop:
                now = self.now()
                self.binding.step(now)
                out = self.client.step(now)
                if out:
                    writer.write(out)
                await writer.drain()
                waits = [t for t in (self.client.next_timeout(now), self.binding.next_timeout(now))
                         if t is not None]
                wake = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait({read, wake}, timeout=min(waits) / 1000 if waits else None,
                                             return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                self._wake.clear()
                if read in done:
                    data = read.result()
                    if not data:
                        return
                    for ev in self.client.receive(data, self.now()):
                        self.binding.on_event(ev, self.now())
                        if ev.kind == EV_CONNECTED:
                            self.connected.set()
                    read = asyncio.ensure_future(reader.read(4096))
                out = self.client.data_to_send()
                if out:
                    writer.write(out)
        finally:
            read.cancel()

    async def close(self):
        self._stop = True
        self._wake.set()
        if self._writer is not None:
            try:
                self._writer.write(self.binding.close(self.now()))
                await self._writer.drain()
            except (OSError, ConnectionError):
                pass


async def connect_fleet_mqtt(fleet, host, port, ssl=None):
    """An MQTT session per device with the broker at host:port (TLS with an ssl context)."""
    clock = _node_clock(fleet)
    links = {}
    for d in fleet.devices:
        link = MqttLinkDevice(d.node, d.device_id, host, port, ssl=ssl, node_clock=clock)
        link.task = asyncio.ensure_future(link.run())
        links[d.device_id] = link

    def on_frames(device, frames):
        # telemetry (peer None) and the bridge's subscriptions alike go to .../up
        links[device.device_id].publish([f for peer, f in frames])
    return links, on_frames


async def close_links(links):
    for link in links.values():
        if hasattr(link, "task"):
            await link.close()
            link.task.cancel()
        else:
            link.close()
