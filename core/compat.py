"""Feature probes shared by the portable modules (MicroPython and CPython).

Import what differs between the two from here, never fork a module.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

import time

MICROPYTHON = hasattr(time, "ticks_ms")     # MicroPython's clock; CPython has none

