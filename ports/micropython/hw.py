"""Hardware binding: tie profile objects to pins, ADCs and a Modbus meter.

    hw.bind(node, 'sg_ready', set=hw.SgReady(Pin(26, Pin.OUT), Pin(27, Pin.OUT)))
    hw.bind(node, 'outdoor_temp', get=hw.Ntc(ADC(Pin(34))))
    meter = hw.Modbus(UART(1, 9600), unit=1)
    hw.bind(node, 'p', get=meter.f32(0x0C, input=True))

A getter is a callable returning the SI value (or None when unknown), a setter
a callable taking it; the node calls them on reads, writes, plans and
notifications. Pins, ADCs and UARTs are anything with MicroPython's methods
(value(), read_u16(), write()/read()), so tests pass fakes.
"""
import struct


def bind(node, name, get=None, set=None, service=None):
    """Bind the object called `name` of `service` (default: the node's only
    device profile, service id >= 0x10) to get() and/or set(value)."""
    for sid in node.services:
        svc = node.services[sid]
        if (sid == service or (service is None and sid >= 0x10)) and name in svc.by_name:
            node.bind(sid, svc.by_name[name][0], get, set)
            return
    raise ValueError('no object %r to bind' % name)


# SG-Ready: state -> (relay 1, relay 2). 1 blocked, 2 normal, 3 recommended, 4 forced on
SG_RELAYS = ((1, 0), (0, 0), (0, 1), (1, 1))


class SgReady:
    """The two SG-Ready relay outputs of a heat pump as one setter (and getter)."""

    def __init__(self, relay1, relay2):
        self.pins = (relay1, relay2)

    def __call__(self, state=None):
        if state is None:     # used as a getter: the state the relays show
            bits = (self.pins[0].value(), self.pins[1].value())
            return SG_RELAYS.index(bits) + 1
        a, b = SG_RELAYS[int(state) - 1]
        self.pins[0].value(a)
        self.pins[1].value(b)


class Ntc:
    """Temperature (Cel) of an NTC thermistor from the low side of a divider on an ADC.

    r_fixed: the divider's fixed resistor; r25, beta: the thermistor's data."""

    def __init__(self, adc, r_fixed=10000, r25=10000, beta=3950):
        self.adc = adc
        self.r_fixed = r_fixed
        self.r25 = r25
        self.beta = beta

    def __call__(self):
        from math import log
        raw = self.adc.read_u16()
        if raw <= 0 or raw >= 65535:
            return None       # open or shorted sensor
        r = self.r_fixed * raw / (65535 - raw)
        return round(1 / (1 / 298.15 + log(r / self.r25) / self.beta) - 273.15, 1)


class Linear:
    """An ADC reading mapped linearly: value = read_u16() * scale + offset."""

    def __init__(self, adc, scale, offset=0):
        self.adc = adc
        self.scale = scale
        self.offset = offset

    def __call__(self):
        return self.adc.read_u16() * self.scale + self.offset


def crc16(data):
    """Modbus RTU CRC (poly 0xA001, init 0xFFFF), as an int."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class Modbus:
    """A Modbus RTU meter on a UART: getters for its registers, read at most
    every max_age_ms (one read serves every object of a notification).

    uart: write(bytes), read(n) -> bytes or None (MicroPython UART with a timeout).
    de: optional driver-enable pin of an RS-485 transceiver.
    clock: () -> ms (time.ticks_ms by default)."""

    def __init__(self, uart, unit=1, de=None, max_age_ms=1000, clock=None):
        self.uart = uart
        self.unit = unit
        self.de = de
        self.max_age_ms = max_age_ms
        if clock is None:
            import time
            clock = time.ticks_ms if hasattr(time, 'ticks_ms') else (
                lambda: int(time.monotonic() * 1000))
        self.clock = clock
        self.errors = 0
        self._cache = {}      # (input, register, count) -> (ms, bytes)

    def registers(self, reg, count, input=False):
        """Raw register bytes (2 * count), or None if the meter did not answer."""
        key = (input, reg, count)
        hit = self._cache.get(key)
        now = self.clock()
        if hit is not None and now - hit[0] < self.max_age_ms:
            return hit[1]
        fn = 4 if input else 3
        req = bytearray((self.unit, fn, reg >> 8, reg & 0xFF, 0, count))
        c = crc16(req)
        req.append(c & 0xFF)
        req.append(c >> 8)
        if self.de is not None:
            self.de.value(1)
        self.uart.read()          # drop stale bytes
        self.uart.write(req)
        if self.de is not None:
            self.de.value(0)
        resp = self.uart.read(5 + 2 * count)
        if (not resp or len(resp) != 5 + 2 * count or resp[0] != self.unit or resp[1] != fn
                or resp[2] != 2 * count or crc16(resp[:-2]) != resp[-2] | resp[-1] << 8):
            self.errors += 1
            return None
        data = bytes(resp[3:-2])
        self._cache[key] = (now, data)
        return data

    def _getter(self, reg, count, fmt, scale, input):
        def get():
            data = self.registers(reg, count, input)
            if data is None:
                return None
            return struct.unpack(fmt, data)[0] * scale
        return get

    def f32(self, reg, scale=1, input=True):
        """Getter of an IEEE float in two registers, high word first."""
        return self._getter(reg, 2, '>f', scale, input)

    def u32(self, reg, scale=1, input=False):
        return self._getter(reg, 2, '>I', scale, input)

    def i32(self, reg, scale=1, input=False):
        return self._getter(reg, 2, '>i', scale, input)

    def u16(self, reg, scale=1, input=False):
        return self._getter(reg, 1, '>H', scale, input)

    def i16(self, reg, scale=1, input=False):
        return self._getter(reg, 1, '>h', scale, input)
