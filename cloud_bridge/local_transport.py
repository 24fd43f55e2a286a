"""In-process transport: the bridge and simulated devices in one event loop.

For tests of the bridge's logic and for fleets simulated next to a bridge
without a network. A device is anything with receive(frame, now, peer),
announce() and consumes (a SimDevice). A device marked asleep does not
answer, as a sleepy device between wake-ups.
"""
import asyncio


class LocalTransport:
    def __init__(self, bridge, name="local", clock=None):
        self.bridge = bridge
        self.name = name
        self.clock = clock or bridge.clock
        self.devices = {}
        self.asleep = set()
        self.requests = 0
        bridge.add_transport(name, self)

    async def connect(self, device_id, device):
        """Attach a device and send its ANNOUNCE; returns the bridge's reply frame."""
        self.devices[device_id] = device
        self.asleep.discard(device_id)
        return await self.bridge.device_frame(self.name, None, device.announce())

    async def uplink(self, device_id, frames):
        """Hand the device's outgoing [(peer, frame)] to the bridge."""
        for _peer, frame in frames:
            await self.bridge.device_frame(self.name, device_id, frame)

    async def request(self, device_id, frame, timeout):
        self.requests += 1
        device = self.devices.get(device_id)
        if device is None or device_id in self.asleep:
            await asyncio.sleep(0)
            raise TimeoutError("%s does not answer" % device_id)
        return device.receive(frame, self.clock(), "bridge")

    async def broadcast(self, service, frame):
        for device_id, device in self.devices.items():
            if device_id not in self.asleep and service in device.node.consumes:
                device.receive(frame, self.clock(), None)
