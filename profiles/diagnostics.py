"""Diagnostics profile: the board runtime's own health, kept across reboots.

A device running out of memory over and over resets itself (ports/micropython/
device.py); how often it did, and whether the last boot was such a reset, are
kept in a small state file and reported to the bridge after the reboot."""
from ..core.compat import const

# core.model's numbers as constants of this module: OBJECTS is then one constant,
# which frozen code keeps in flash instead of building it on the heap
_ANALOG = const(1)
_ENUM = const(3)
_COUNTER = const(4)
_R = const(1)
_M = const(1)

SERVICE = const(0x09)  # core.services.DIAGNOSTICS, copied: a board imports no services
NAME = "diagnostics"
VERSION = (1, 0)

# why the device last booted (reset_cause); 0: power-on, a firmware update, anything
# not below
BOOT_OUT_OF_MEMORY = 1  # the runtime reset itself after repeated MemoryErrors
BOOT_WATCHDOG = 2      # the hardware watchdog reset it (a stuck loop)

OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (1, "mem_resets", _COUNTER, "1", _R, _M, 0, None, 0),
    (2, "reset_cause", _ENUM, "", _R, _M, 0, 2, 0),
    (3, "mem_errors", _ANALOG, "1", _R, _M, 0, 0xFFFFFFFF, 0),
)
