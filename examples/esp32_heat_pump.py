"""ESP32 heat pump controller: SG-Ready relays, flow set-point, NTC temperatures
and a pulse energy meter, served over the bridge named in spot.json.

Deploy: spot deploy --profile heat_pump --device /dev/ttyUSB0 --config spot.json \
            --main examples/esp32_heat_pump.py
"""
import asyncio
from machine import ADC, PWM, Pin

from spot.ports.micropython import device, hw
from spot.profiles import heat_pump

dev = device.Device('spot.json', heat_pump)
node = dev.node

# SG-Ready inputs of the heat pump, driven by two relays (the bridge or a plan sets the state)
hw.bind(node, 'sg_ready', set=hw.SgReady(Pin(26, Pin.OUT), Pin(27, Pin.OUT)))

# flow temperature set-point: the heat pump's 0-10 V input through a PWM + RC filter
dac = PWM(Pin(25), freq=5000)
hw.bind(node, 'flow_setpoint', set=lambda c: dac.duty_u16(int((c - 20) / 50 * 65535)))

# NTC sensors on ADC1 (ADC2 is taken by Wi-Fi on the ESP32), read as the objects' wire
# integers (0.1 Cel: scale -1 in the profile), so a reading makes no float
hw.bind(node, 'flow_temp', get=hw.Ntc(ADC(Pin(34), atten=ADC.ATTN_11DB), scale=-1), wire=True)
hw.bind(node, 'outdoor_temp', get=hw.Ntc(ADC(Pin(35), atten=ADC.ATTN_11DB), scale=-1), wire=True)

# a 1000 pulses/kWh energy meter on the compressor supply, 1 pulse = 1 Wh: the count is
# energy_in's wire value already (scale 0)
# (a def, not a lambda: MicroPython lists have no __setitem__ to call by name)
pulses = [0]


def count_pulse(pin):
    pulses[0] += 1


Pin(32, Pin.IN, Pin.PULL_UP).irq(count_pulse, Pin.IRQ_FALLING)
hw.bind(node, 'energy_in', get=lambda: pulses[0], wire=True)

# the heat pump's run and fault contacts give its state (0 off, 1 running, 6 fault)
run, fault = Pin(33, Pin.IN, Pin.PULL_UP), Pin(39, Pin.IN)
hw.bind(node, 'state', get=lambda: 6 if not fault.value() else (1 if not run.value() else 0))

asyncio.run(dev.run())
