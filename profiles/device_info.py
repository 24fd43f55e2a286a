"""Device information profile: who made the device, what it is, how big it is.

Read once after ANNOUNCE (which already lists the services and versions);
only `label` is writable (an installer-given name or place)."""
from ..core.model import ANALOG, ENUM, TEXT, R, RW, M, O
from ..core.services import DEVICE_INFO

SERVICE = DEVICE_INFO
NAME = "device_info"
VERSION = (1, 0)

OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "vendor", TEXT, "", R, M, None, 32, 0),
    (2, "model", TEXT, "", R, M, None, 32, 0),
    (3, "serial", TEXT, "", R, M, None, 32, 0),
    (4, "firmware", TEXT, "", R, M, None, 16, 0),
    (5, "device_class", ENUM, "", R, M, 0, 0xFF, 0),  # service id of the main profile
    (6, "nominal_power", ANALOG, "W", R, M, 0, 1e7, 0),
    (7, "hardware", TEXT, "", R, O, None, 16, 0),
    (8, "phases", ENUM, "", R, O, 1, 3, 0),
    (9, "nominal_voltage", ANALOG, "V", R, O, 0, 1000, 0),
    (10, "label", TEXT, "", RW, O, None, 32, 0),
)
