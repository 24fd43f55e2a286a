"""RP2040 (Pico W) meter: an Eastron SDM630-class Modbus RTU meter on UART0 via
an RS-485 transceiver, reported over MQTT as the meter profile.

Deploy: spot deploy --profile meter --transport mqtt --device /dev/ttyACM0 \
            --config spot.json --main examples/rp2040_meter.py
"""
import asyncio
from machine import UART, Pin

from spot.ports.micropython import device, hw, modbus
from spot.profiles import meter

dev = device.Device('spot.json', meter)
node = dev.node

sdm = modbus.Modbus(UART(0, 9600, tx=Pin(0), rx=Pin(1), timeout=100), unit=1, de=Pin(2, Pin.OUT))

# SDM630 input registers: IEEE floats, high word first
for name, reg in (('v_l1', 0x00), ('v_l2', 0x02), ('v_l3', 0x04),
                  ('i_l1', 0x06), ('i_l2', 0x08), ('i_l3', 0x0A),
                  ('p_l1', 0x0C), ('p_l2', 0x0E), ('p_l3', 0x10),
                  ('p', 0x34), ('power_factor', 0x3E), ('f', 0x46)):
    hw.bind(node, name, get=sdm.f32(reg))
hw.bind(node, 'v', get=sdm.f32(0x2A))                       # mean line-neutral voltage
hw.bind(node, 'energy_import', get=sdm.f32(0x48, scale=1000))  # kWh -> Wh
hw.bind(node, 'energy_export', get=sdm.f32(0x4A, scale=1000))

asyncio.run(dev.run())
