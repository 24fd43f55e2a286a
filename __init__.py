"""SPOT: an open protocol runtime for smart-grid devices.

spot.core and spot.profiles are portable (MicroPython and CPython, no I/O);
spot.ports holds the runtimes that do I/O; spot.cloud_bridge is the service.
"""

__version__ = "0.1.0"
