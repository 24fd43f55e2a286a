"""Counted, rate-limited reporting of what peers send that the bridge refuses.

Peer input must never make the log grow with the attacker's traffic: every
refusal is counted in a metric (`frames_rejected{reason=...}` by default), but a
log line is written only the first time a (reason, key) pair is seen (key: a
device id or a source address), and after that at most once per `every`
seconds per reason, saying how many were not logged. The set of keys already
logged is bounded (`max_keys` per reason); beyond it only the per-reason lines
are written. Nothing here ever logs a traceback.
"""
import logging
import time

log = logging.getLogger("spot.bridge.peers")


class PeerLog:
    def __init__(self, metrics, metric="frames_rejected", every=60.0, max_keys=512,
                 clock=time.monotonic, logger=log):
        self.metrics = metrics
        self.metric = metric
        self.every = every
        self.max_keys = max_keys
        self.clock = clock
        self.logger = logger
        self._keys = {}        # reason -> set of keys already logged
        self._last = {}        # reason -> when a line for it was last written
        self._quiet = {}       # reason -> refusals not logged since then

    def report(self, reason, key, detail="", level=logging.WARNING):
        """Count one refusal (or failure); log it if this (reason, key) is new or the reason's
        line is due. Returns True when a line was written."""
        self.metrics.inc(self.metric, reason=reason)
        key = str(key)[:200]   # peer-chosen text: what is kept of it is bounded
        keys = self._keys.setdefault(reason, set())
        now = self.clock()
        fresh = key not in keys and len(keys) < self.max_keys
        due = now - self._last.get(reason, -self.every) >= self.every
        if not fresh and not due:
            self._quiet[reason] = self._quiet.get(reason, 0) + 1
            return False
        if fresh:
            keys.add(key)
        self._last[reason] = now
        quiet = self._quiet.pop(reason, 0)
        self.logger.log(level, "%s (%s)%s%s", reason, _printable(key),
                        ": " + _printable(detail) if detail else "",
                        " (%d more not logged)" % quiet if quiet else "")
        return True

    def forget(self, key):
        """Log the next report for key again (e.g. after the device was deleted)."""
        for keys in self._keys.values():
            keys.discard(key)


def _printable(text, limit=120):
    """Peer-supplied text made safe for one log line: no control characters, bounded."""
    s = str(text)
    s = "".join(c if c.isprintable() else "\\x%02x" % (ord(c) & 0xFF) for c in s[:limit])
    return s + ("..." if len(str(text)) > limit else "")


class RateLimitFilter(logging.Filter):
    """A logging filter for libraries that log once per datagram (aiocoap: "Ignoring
    unparsable message from ..."): a message template passes the first time, then at
    most once per `every` seconds, saying how many like it were dropped meanwhile.
    Tracebacks of records it passes are dropped too (peer input is not a bug)."""

    def __init__(self, every=60.0, clock=time.monotonic, max_templates=1024):
        super().__init__()
        self.every = every
        self.clock = clock
        self.max_templates = max_templates
        self._last = {}       # (logger, template) -> when one last passed
        self._dropped = {}    # (logger, template) -> dropped since

    def filter(self, record):
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        if last is None and len(self._last) >= self.max_templates:
            return False
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = str(record.msg) + " (%d more like this not logged)" % dropped
        record.exc_info = record.exc_text = None
        return True
