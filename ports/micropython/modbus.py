"""A Modbus RTU meter on a UART as getters for hw.bind() (e.g. an Eastron SDM630).

    meter = modbus.Modbus(UART(1, 9600, timeout=100), unit=1, de=Pin(2, Pin.OUT))
    hw.bind(node, 'p', get=meter.f32(0x34))
"""
import struct


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
            from .board import clock
            clock = clock()
        self.clock = clock
        self.errors = 0
        self._cache = {}      # (function, register, count) -> (ms, bytes)

    def registers(self, reg, count, input=False):
        """Raw register bytes (2 * count), or None if the meter did not answer."""
        fn = 4 if input else 3
        key = (fn, reg, count)
        hit = self._cache.get(key)
        now = self.clock()
        if hit is not None and now - hit[0] < self.max_age_ms:
            return hit[1]
        req = bytearray((self.unit, fn, reg >> 8, reg & 0xFF, 0, count))
        c = crc16(req)
        req.append(c & 0xFF)
        req.append(c >> 8)
        de = self.de
        if de is not None:
            de.value(1)
        self.uart.read()          # drop stale bytes
        self.uart.write(req)
        if de is not None:
            de.value(0)
        n = 5 + 2 * count
        resp = self.uart.read(n)
        if (not resp or len(resp) != n or resp[0] != self.unit or resp[1] != fn
                or resp[2] != 2 * count or crc16(resp[:-2]) != resp[-2] | resp[-1] << 8):
            self.errors += 1
            return None
        data = bytes(resp[3:-2])
        self._cache[key] = (now, data)
        return data

    def getter(self, fmt, reg, scale=1, input=False):
        """Getter of the struct format fmt ('>f', '>I', '>h', ...) at register reg, times scale."""
        count = struct.calcsize(fmt) // 2

        def get():
            data = self.registers(reg, count, input)
            return None if data is None else struct.unpack(fmt, data)[0] * scale
        return get

    def f32(self, reg, scale=1, input=True):
        """Getter of an IEEE float in two input registers, high word first."""
        return self.getter('>f', reg, scale, input)
