"""Sliding anti-replay window over sequence numbers (RFC 8613 section 7.4).

The window remembers the highest accepted number and which of the `size - 1`
numbers below it were accepted. `check(seq)` only inspects; `mark(seq)`
records a number after the message carrying it was authenticated, so a
forged or failed message never moves the window. `state()` / `restore()`
let a device persist it; `reject_up_to(n)` starts a window that refuses
every number <= n (e.g. after a reboot without a saved window). Portable
(MicroPython 1.27 and CPython 3.11); no I/O.
"""

FRESH = None          # check() result for a number that may be accepted
REPLAYED = "replayed"
TOO_OLD = "too old"


class ReplayWindow:
    """Anti-replay window of `size` sequence numbers (default 32)."""

    def __init__(self, size=32):
        if size < 1:
            raise ValueError("replay window size must be >= 1")
        self.size = size
        self.highest = -1   # highest accepted number, -1 before the first
        self.bits = 0       # bit i set: number (highest - i) was accepted

    def check(self, seq):
        """Return FRESH (None), REPLAYED or TOO_OLD for `seq`; no state change."""
        if seq < 0:
            return TOO_OLD
        highest = self.highest
        if seq > highest:
            return FRESH
        d = highest - seq
        if d >= self.size:
            return TOO_OLD
        if (self.bits >> d) & 1:
            return REPLAYED
        return FRESH

    def mark(self, seq):
        """Record `seq` as accepted. Call only after check() said FRESH and
        the message was authenticated."""
        highest = self.highest
        if seq > highest:
            shift = seq - highest
            if shift >= self.size or highest < 0:
                self.bits = 1
            else:
                self.bits = ((self.bits << shift) | 1) & ((1 << self.size) - 1)
            self.highest = seq
        else:
            d = highest - seq
            if d < self.size:
                self.bits |= 1 << d

    def state(self):
        """(highest, bits): what to persist to restore this exact window."""
        return (self.highest, self.bits)

    def restore(self, state):
        """Load a (highest, bits) pair saved by state()."""
        highest, bits = state
        if highest < -1 or bits < 0 or bits >> self.size:
            raise ValueError("bad replay window state")
        self.highest = highest
        self.bits = bits if highest >= 0 else 0

    def reject_up_to(self, seq):
        """Refuse every number <= seq from now on; later numbers are fresh."""
        self.highest = seq
        self.bits = (1 << self.size) - 1
