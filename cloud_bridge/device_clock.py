"""When the bridge sets a device's clock (spec section 3.1).

A device starts without the time (a board has no battery-backed clock), and a
node without it refuses every plan ("out-of-range: plan expiry") and sends
NOTIFY times as null. The bridge holds the time: it writes it (WRITE of the
time service, object unix_time) after every registration it accepts, and when
a device's NOTIFY carries a time that is null or more than MAX_DRIFT seconds
from the bridge's clock, correcting such drift at most once per RESET_EVERY
seconds per device. A device whose ANNOUNCE says it takes the time from the
registration's RESULT (flag bit 1, over a transport that answers it) gets it
there, {unix_time: t}, and no WRITE.
"""
from ..core import frame as F
from ..core.node import UNIX_TIME, FLAG_CLOCK
from ..core.services import TIME

MAX_DRIFT = 60         # seconds a device's NOTIFY time may differ from the bridge's
RESET_EVERY = 600      # seconds between two drift corrections of one device


class DeviceClocks:
    """Which devices need their clock set, decided from what they send."""

    def __init__(self):
        self.due = {}          # device -> why its clock is to be set before its next command
        self.timed = set()     # devices serving the time service
        self._set_at = {}      # device -> when the bridge last set its clock

    def registered(self, device, services, flags, now):
        """An accepted ANNOUNCE: set the clock if the device serves the time service, in
        the registration's RESULT when its flags have FLAG_CLOCK (0: the transport does
        not answer ANNOUNCEs), else with a WRITE. The body of that RESULT."""
        if any(type(s) is list and s and s[0] == TIME for s in services):
            self.timed.add(device)
            if flags & FLAG_CLOCK:
                self.due.pop(device, None)
                return {UNIX_TIME: unix_time(now)}
            self.due[device] = "registered"
        else:
            self.timed.discard(device)
        return {0: int(now)}

    def notified(self, device, t, now):
        """A NOTIFY carrying time t (None: the device has no time): True if newly due."""
        if device not in self.timed or device in self.due:
            return False
        if type(t) is int and abs(t - now) <= MAX_DRIFT:
            return False
        if now - self._set_at.get(device, -RESET_EVERY) < RESET_EVERY:
            return False
        self.due[device] = "drift"
        return True

    def frame(self, mid, now):
        """The WRITE that sets a clock to now (unix_time())."""
        return F.encode(F.WRITE, TIME, mid, {UNIX_TIME: unix_time(now)})

    def done(self, device, now):
        if self.due.pop(device, None) == "drift":
            self._set_at[device] = now


def unix_time(now):
    """The time a clock is set to: now rounded up to the next second, so a device whose
    clock is in step is never set back into a second it has already used to stamp
    telemetry (a second NOTIFY with the same time and other values would be refused by
    the store, and its readings lost)."""
    whole = int(now)
    return whole + (whole < now)
