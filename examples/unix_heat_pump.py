"""A heat pump without hardware, for MicroPython's unix port: the board runtime
(ports/micropython/device.py) bound to a small plant model, served over real UDP
(CoAP) or TCP (MQTT) to the bridge named in the config.

    spot bundle --profile heat_pump --config spot.json --main examples/unix_heat_pump.py \\
        --out hp && cd hp && MICROPYPATH=lib:.frozen micropython -X heapsize=128k main.py

(.mpy files need about 78k of heap, main.py importing the bundle's preload first;
frozen into the interpreter with SPOT, as tests/mp_real.py does, 28k over CoAP and
over MQTT: `micropython -X heapsize=28k -m unix_heat_pump spot.json`).

The model, in the profile's wire units (0.1 Cel, W, Wh; integers only, as a board's
drivers would give): the compressor runs at 2 kW while the flow is below its
set-point and SG-Ready does not block it, the flow warms 0.5 Cel a second while it
runs and cools 0.1 Cel a second toward the outdoor temperature while it does not;
energy_in counts what the compressor drew.
"""
import asyncio
import sys

from spot.ports.micropython import device, hw
from spot.profiles import heat_pump


class Plant:
    """The heat pump's hydraulics and compressor, stepped once a second; its attributes
    are the values of the profile's objects of the same names."""

    def __init__(self):
        self.sg_ready = heat_pump.SG_NORMAL
        self.flow_setpoint = 450   # 0.1 Cel
        self.flow_temp = 300       # 0.1 Cel
        self.outdoor_temp = 50     # 0.1 Cel
        self.p = 0                 # compressor, W
        self.energy_in = 0         # Wh drawn so far
        self._ws = 0               # W s not yet a whole Wh

    def step(self):
        sg = self.sg_ready
        run = sg != heat_pump.SG_BLOCKED and (sg == heat_pump.SG_FORCED
                                              or self.flow_temp < self.flow_setpoint)
        self.p = 2000 if run else 0
        if run:
            self.flow_temp += 5
        elif self.flow_temp > self.outdoor_temp:
            self.flow_temp -= 1
        self._ws += self.p
        self.energy_in += self._ws // 3600
        self._ws %= 3600

    def state(self):
        # the profile's state: 5 blocked, 2 space heating, 1 standby
        if self.sg_ready == heat_pump.SG_BLOCKED:
            return 5
        return 2 if self.p else 1

    def set_sg(self, v):
        self.sg_ready = v

    def set_setpoint(self, v):
        self.flow_setpoint = v

    async def run(self):
        while True:
            self.step()
            await asyncio.sleep(1)


def main(path):
    """The device of the config at path, bound to a Plant stepped by a task (call it
    inside a running asyncio loop); (device, plant)."""
    dev = device.Device(path, heat_pump)
    node = dev.node
    plant = Plant()
    hw.bind(node, 'sg_ready', get=lambda: plant.sg_ready, set=plant.set_sg, wire=True)
    hw.bind(node, 'flow_setpoint', get=lambda: plant.flow_setpoint, set=plant.set_setpoint,
            wire=True)
    hw.bind(node, 'flow_temp', get=lambda: plant.flow_temp, wire=True)
    hw.bind(node, 'outdoor_temp', get=lambda: plant.outdoor_temp, wire=True)
    hw.bind(node, 'p', get=lambda: plant.p, wire=True)
    hw.bind(node, 'energy_in', get=lambda: plant.energy_in, wire=True)
    hw.bind(node, 'state', get=plant.state, wire=True)
    asyncio.create_task(plant.run())
    return dev, plant


async def serve(path):
    dev, _ = main(path)
    await dev.run()


if __name__ == '__main__':
    asyncio.run(serve(sys.argv[1] if len(sys.argv) > 1 else 'spot.json'))
