"""Service ids: the one table that allocates them.

0x00-0x0F are the protocol's common services, 0x10-0xBF device profiles,
0xC0-0xFE vendor and experimental services, 0xFF is reserved.
"""
from .compat import const

NODE = const(0x00)        # ANNOUNCE and node management
DEVICE_INFO = const(0x01)
TIME = const(0x02)
ALARMS = const(0x03)
PLANS = const(0x04)
PRICE = const(0x05)       # informational: price forecast
WEATHER = const(0x06)     # informational: weather / temperature forecast
GRID = const(0x07)        # informational: grid state / emergency
SECURITY = const(0x08)    # pairing: the device's roster of peers (core.pairing)
DIAGNOSTICS = const(0x09)  # the board runtime's own health: resets, memory errors

HEAT_PUMP = const(0x10)
PV_INVERTER = const(0x11)
BATTERY = const(0x12)
EV_CHARGER = const(0x13)
METER = const(0x14)
GENERATOR = const(0x15)
ENERGY_MANAGER = const(0x16)

VENDOR_FIRST = const(0xC0)
RESERVED = const(0xFF)
