"""Device information profile: who made the device, what it is, how big it is.

Read once after ANNOUNCE (which already lists the services and versions);
only `label` is writable (an installer-given name or place)."""
from ..core.compat import const

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_ENUM = const(3)
_TEXT = const(8)
_R = const(1)
_RW = const(3)
_M = const(1)
_O = const(0)

SERVICE = const(0x01)  # core.services.DEVICE_INFO, copied: a board imports no services
NAME = "device_info"
VERSION = (1, 0)

OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "vendor", _TEXT, "", _R, _M, None, 32, 0),
    (2, "model", _TEXT, "", _R, _M, None, 32, 0),
    (3, "serial", _TEXT, "", _R, _M, None, 32, 0),
    (4, "firmware", _TEXT, "", _R, _M, None, 16, 0),
    (5, "device_class", _ENUM, "", _R, _M, 0, 0xFF, 0),  # service id of the main profile
    (6, "nominal_power", _ANALOG, "W", _R, _M, 0, 1e7, 0),
    (7, "hardware", _TEXT, "", _R, _O, None, 16, 0),
    (8, "phases", _ENUM, "", _R, _O, 1, 3, 0),
    (9, "nominal_voltage", _ANALOG, "V", _R, _O, 0, 1000, 0),
    (10, "label", _TEXT, "", _RW, _O, None, 32, 0),
)
