"""Hardware binding: tie profile objects to pins and ADCs (a Modbus meter: modbus.py).

    hw.bind(node, 'sg_ready', set=hw.SgReady(Pin(26, Pin.OUT), Pin(27, Pin.OUT)))
    hw.bind(node, 'outdoor_temp', get=hw.Ntc(ADC(Pin(34))))

A getter is a callable returning the SI value (or None when unknown), a setter
a callable taking it; the node calls them on reads, writes, plans and
notifications. Pins and ADCs are anything with MicroPython's methods (value(),
read_u16()), so tests pass fakes.
"""


def bind(node, name, get=None, set=None, service=None):
    """Bind the object called `name` of `service` (default: the node's only
    device profile, service id >= 0x10) to get() and/or set(value)."""
    services = node.services
    for sid in services:
        row = services[sid].by_name.get(name)
        if row is not None and (sid == service or (service is None and sid >= 0x10)):
            node.bind(sid, row[0], get, set)
            return
    raise ValueError('no object %r to bind' % name)


# SG-Ready state 1 blocked, 2 normal, 3 recommended, 4 forced on: relay 1 + 2 * relay 2
SG_RELAYS = (1, 0, 2, 3)


class SgReady:
    """The two SG-Ready relay outputs of a heat pump as one setter (and getter)."""

    def __init__(self, relay1, relay2):
        self.a = relay1
        self.b = relay2

    def __call__(self, state=None):
        if state is None:     # used as a getter: the state the relays show
            return SG_RELAYS.index(self.a.value() + 2 * self.b.value()) + 1
        bits = SG_RELAYS[int(state) - 1]
        self.a.value(bits & 1)
        self.b.value(bits >> 1)


class Ntc:
    """Temperature (Cel) of an NTC thermistor from the low side of a divider on an ADC.

    r_fixed: the divider's fixed resistor; r25, beta: the thermistor's data."""

    def __init__(self, adc, r_fixed=10000, r25=10000, beta=3950):
        self.adc = adc
        self.k = r_fixed / r25
        self.beta = beta

    def __call__(self):
        from math import log
        raw = self.adc.read_u16()
        if raw <= 0 or raw >= 65535:
            return None       # open or shorted sensor
        return round(1 / (1 / 298.15 + log(self.k * raw / (65535 - raw)) / self.beta) - 273.15, 1)
