"""Run-time service filter: accept or drop a frame from its header alone.

A 256-bit set of service ids. A node keeps the services it serves and the
informational services it consumes (price, weather, grid state) here and
drops everything else after reading byte 1, without decoding the body.
"""


class ServiceFilter:
    __slots__ = ("bits",)

    def __init__(self, services=()):
        self.bits = bytearray(32)
        for s in services:
            self.add(s)

    def add(self, sid):
        self.bits[sid >> 3] |= 1 << (sid & 7)

    def remove(self, sid):
        self.bits[sid >> 3] &= ~(1 << (sid & 7)) & 0xFF

    def __contains__(self, sid):
        return bool(self.bits[sid >> 3] & (1 << (sid & 7)))

    def accepts(self, frame):
        """True if frame (bytes-like, >= 2 bytes) is for a service in the set."""
        return frame[1] in self
