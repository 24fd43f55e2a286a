"""Who may ask the XMPP plugin what, and how much: operator roles, stanza size, rate.

Roles come from the plugin's configuration, a bare JID -> role table:
`monitor` reads and receives reports, `operator` also writes and controls.
A JID not in the table (or with another role) is refused before anything is
decoded. Each JID has a token bucket of `rate` requests per second (burst
`burst`); a stanza longer than `max_stanza_bytes` is refused unread.
"""
import time

MONITOR = "monitor"
OPERATOR = "operator"
ROLES = (MONITOR, OPERATOR)


def check_roles(table):
    """{bare JID: role} from the configuration; ValueError for anything else."""
    if not isinstance(table, dict):
        raise ValueError("xmpp: operators must be a table of JID = role")
    out = {}
    for jid, role in table.items():
        if not isinstance(jid, str) or "@" not in jid or "/" in jid:
            raise ValueError("xmpp: operators: %r is not a bare JID (user@domain)" % (jid,))
        if role not in ROLES:
            raise ValueError("xmpp: operators: role of %s must be one of %s" % (jid, ", ".join(ROLES)))
        out[jid.lower()] = role
    return out


class Guard:
    def __init__(self, roles, rate=20.0, burst=40, max_stanza_bytes=16384, clock=time.monotonic):
        self.roles = roles
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_stanza_bytes = int(max_stanza_bytes)
        self.clock = clock
        self._buckets = {}   # jid -> (tokens, at)

    def role(self, bare_jid):
        """The JID's role, or None."""
        return self.roles.get(str(bare_jid).lower())

    def can_control(self, bare_jid):
        return self.role(bare_jid) == OPERATOR

    def admit(self, bare_jid):
        """True when the JID may send one more request now (takes a token)."""
        now = self.clock()
        tokens, at = self._buckets.get(bare_jid, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[bare_jid] = (tokens, now)
            return False
        self._buckets[bare_jid] = (tokens - 1.0, now)
        return True

    def too_big(self, size):
        return size > self.max_stanza_bytes
