"""Telemetry sent at once, outside the subscriptions' periods, by the board runtime
(ports.micropython.device): what a sleepy device sends when it wakes, and the
diagnostics after a reset of ours or the watchdog's. Loaded only on those paths (or by
firmware calling it on an event of its own), so a device serving its profile does not
hold it."""
from ...core import frame as F
from ...core.compat import const

# core.model's, core.services' and core/frame_numbers' numbers, copied: no global slot
_ACCESS = const(4)
_R = const(1)
_NOTIFY = const(6)


def telemetry_now(dev, sid=None):
    """Queue a NOTIFY of every readable value of service sid (default: the profile's)
    of the device dev now."""
    node = dev.node
    sid = sid or dev.sid
    values = {}
    for r in node.services[sid].rows:
        if r[_ACCESS] & _R:
            v = node.wire(sid, r[0])
            if v is not None:
                values[r[0]] = v
    if values:
        now = dev.clock()
        dev.link.telemetry(F.encode(_NOTIFY, sid, 0, [node.stamp(now // 1000), values]), now)
