"""The bridge's MQTT side (ports/cpython/mqtt_transport.BridgeMqtt on paho).

Births and deaths drive presence; telemetry is stored before its PUBACK is
sent (paho manual acknowledgement), so a bridge that dies mid-way is sent the
message again by the broker; commands go out on the device's /down topic.
"""
import asyncio
from urllib.parse import urlsplit

from ..ports.cpython.mqtt_transport import BridgeMqtt


class MqttLink:
    name = "mqtt"

    def __init__(self, bridge, url, ca=None, share_group=None, client_id=None):
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "mqtts"):
            raise ValueError("MQTT url must be mqtt://host:port or mqtts://host:port")
        tls = {"ca_certs": ca} if u.scheme == "mqtts" else None
        self.bridge = bridge
        self.loop = asyncio.get_running_loop()
        self.client = BridgeMqtt(u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883),
                                 client_id=client_id, share_group=share_group or None, tls=tls,
                                 username=u.username, password=u.password, loop=self.loop,
                                 on_telemetry=self._telemetry, on_announce=self._announce,
                                 on_presence=self._presence, ack_telemetry=True)
        bridge.add_transport(self.name, self)

    async def start(self, timeout=10):
        self.client.start()
        await self.loop.run_in_executor(None, self.client.wait_ready, timeout)
        return self

    async def stop(self):
        await self.loop.run_in_executor(None, self.client.stop)

    def _telemetry(self, device, frame, ack=None):
        async def store():
            await self.bridge.device_frame(self.name, device, frame)
            if ack is not None:
                ack()
        asyncio.ensure_future(store())

    def _announce(self, device, body):
        asyncio.ensure_future(self.bridge.announce(self.name, body, self.bridge.clock()))

    def _presence(self, device, online):
        asyncio.ensure_future(self.bridge.presence_changed(device, "online" if online else "offline"))

    async def request(self, device, frame, timeout):
        return await asyncio.wrap_future(self.client.send(device, frame, timeout=timeout))

    async def broadcast(self, service, frame):
        self.client.broadcast(service, frame)

