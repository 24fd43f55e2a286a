"""Feature probes shared by the portable modules (MicroPython and CPython).

Import what differs between the two from here, never fork a module.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    from time import ticks_ms as _ticks  # noqa: F401  MicroPython only
    MICROPYTHON = True
except ImportError:
    MICROPYTHON = False


def hexlify(data):
    """Lower-case hex of bytes-like data, without separators."""
    return bytes(data).hex()
