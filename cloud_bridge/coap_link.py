"""The bridge's CoAP side: devices register and send telemetry to /s, and the
bridge sends them commands there (ports/cpython/coap_transport, aiocoap).

A device is known by the address its ANNOUNCE came from (or, over DTLS, by
its PSK identity through aiocoap); telemetry from an address that has not
announced is refused (ERROR not-authorised, CoAP 4.01), so the device
registers again and resends: nothing is acknowledged that was not stored.
"""
from ..core import frame as F
from ..core.errors import NOT_AUTHORISED
from ..core.node import A_ID
from ..ports.cpython.coap_transport import BridgeCoapServer


class CoapLink:
    name = "coap"

    def __init__(self, bridge, host, port, credentials=None):
        self.bridge = bridge
        self.server = BridgeCoapServer(host, port, on_frame=self._frame, credentials=credentials)
        self.by_address = {}   # remote uri_base -> device id
        bridge.add_transport(self.name, self)

    async def start(self):
        await self.server.start()
        return self

    async def stop(self):
        await self.server.stop()

    async def _frame(self, frame, remote):
        where = remote.uri_base
        head = F.peek(frame)
        if head is not None and head[1] == F.ANNOUNCE:
            reply = await self.bridge.device_frame(self.name, None, frame)
            if reply is not None:
                body = F.decode(frame)[3]
                self.by_address[where] = body[A_ID]
            return reply
        device = self.by_address.get(where)
        if device is None:
            mid = F.message_id(frame)
            self.bridge.metrics.inc("frames_rejected", reason="unknown_device")
            return None if mid is None else F.error(frame[1], mid, NOT_AUTHORISED, "announce first")
        return await self.bridge.device_frame(self.name, device, frame)

    async def request(self, device, frame, timeout):
        return await self.server.send_frame(device, frame, timeout)

    async def broadcast(self, service, frame):
        for device in list(self.server.devices):
            body = self.server.announces.get(device) or {}
            if service in (body.get(2) or ()):
                try:
                    await self.server.send_frame(device, frame, timeout=5)
                except Exception:
                    self.bridge.metrics.inc("broadcast_failures", transport=self.name)
