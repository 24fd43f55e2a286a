"""Device-side access control: which peer may do what, by role.

The bridge keeps the pairing roster (device, controllers, roles) and gives a
device the entries it needs; a peer is known by its credential (an OSCORE
kid or a DTLS PSK identity), never by a network address. A node calls
`roster.authorise(peer, op, service)`; anything not allowed is answered
ERROR not-authorised and changes nothing.
"""
from .compat import const
from .services import DEVICE_INFO, TIME, SECURITY

# core/frame_numbers' numbers, copied: no global slot holds them on a board
_READ = const(1)
_WRITE = const(2)
_INVOKE = const(3)
_SUBSCRIBE = const(4)
_UNSUBSCRIBE = const(5)

OWNER = const(1)       # the device's owner (and the bridge acting for users)
INSTALLER = const(2)   # commissioning: everything, including device settings
AGGREGATOR = const(3)  # demand response: set-points, actions and plans
MONITOR = const(4)     # read and subscribe only

ROLE_NAMES = {OWNER: "owner", INSTALLER: "installer", AGGREGATOR: "aggregator",
              MONITOR: "monitor"}

_READS = (_READ, _SUBSCRIBE, _UNSUBSCRIBE)
_ALL = _READS + (_WRITE, _INVOKE)

# role -> (operations allowed, services closed to its writes, services closed to it
# entirely). The roster (SECURITY) says who controls the device: only an owner or an
# installer may read or change it.
POLICY = {
    OWNER: (_ALL, (), ()),
    INSTALLER: (_ALL, (), ()),
    AGGREGATOR: (_ALL, (DEVICE_INFO, TIME), (SECURITY,)),
    MONITOR: (_READS, (), (SECURITY,)),
}


class Roster:
    """peer id -> role, bounded; the device's share of the bridge's roster."""

    __slots__ = ("roles", "max_peers")

    def __init__(self, max_peers=8):
        self.roles = {}
        self.max_peers = max_peers

    def pair(self, peer, role):
        if role not in POLICY:
            raise ValueError("unknown role")
        if peer not in self.roles and len(self.roles) >= self.max_peers:
            raise ValueError("roster full")
        self.roles[peer] = role

    def unpair(self, peer):
        self.roles.pop(peer, None)

    def role(self, peer):
        return self.roles.get(peer)

    def authorise(self, peer, op, sid):
        """True if peer may perform op on service sid."""
        role = self.roles.get(peer)
        return role is not None and role_allows(role, op, sid)


def role_allows(role, op, sid):
    """True if the role may perform op on service sid."""
    ops, no_writes, closed = POLICY[role]
    return (op in ops and sid not in closed
            and not (sid in no_writes and (op == _WRITE or op == _INVOKE)))

