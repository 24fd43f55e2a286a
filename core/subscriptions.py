"""Subscriptions and the notification policy (LwM2M-style observe attributes).

A subscription is made by one peer for some objects of one service; its id is
the message id of the SUBSCRIBE, and every NOTIFY it causes carries that id.
Per object the attributes are (all optional, in the object's wire units):

    0 pmin  minimum seconds between two notifications
    1 pmax  maximum seconds without a notification (sent even if unchanged)
    2 st    change threshold: notify when |value - last sent| >= st
    3 gt    notify when the value crosses above or below gt
    4 lt    notify when the value crosses above or below lt

Without st/gt/lt any change notifies (still no faster than pmin).
"""
from .compat import const, MICROPYTHON
from .errors import SpotError

# core.errors' codes, copied: no global slot holds them on a board
_UNKNOWN_OBJECT = const(2)
_BUSY = const(8)
_MALFORMED = const(9)

# core/subscriptions_numbers' attribute keys, copied
_PMIN = const(0)
_PMAX = const(1)
_ST = const(2)
_GT = const(3)
_LT = const(4)
# per-object state slots after the five attributes
_LAST = const(5)   # last value sent
_SENT = const(6)   # time it was sent
_DIRTY = const(7)  # a change worth notifying is pending

if MICROPYTHON:
    def __getattr__(name):
        # `from .subscriptions import PMIN` (the CoAP REST view): core/subscriptions_numbers,
        # imported on first use (this module uses private copies and never asks)
        from . import subscriptions_numbers
        return getattr(subscriptions_numbers, name)
else:
    from .subscriptions_numbers import *  # noqa: F401,F403  the keys as this module's attributes


def parse_attrs(attrs):
    """Attribute list [pmin, pmax, st, gt, lt] from the wire map (or None)."""
    a = [0, None, None, None, None]
    if attrs is None:
        return a
    if type(attrs) is not dict:
        raise SpotError(_MALFORMED, "attrs not a map")
    for k in attrs:
        v = attrs[k]
        if type(k) is not int or k < 0 or k > _LT:
            continue  # unknown attribute: skipped (newer minor version)
        if k <= _PMAX:
            if type(v) is not int or v < 0:
                raise SpotError(_MALFORMED, "pmin/pmax not unsigned")
        elif type(v) is not int and type(v) is not float:
            raise SpotError(_MALFORMED, "threshold not a number")
        a[k] = v
    if a[_PMAX] is not None and (a[_PMAX] == 0 or a[_PMAX] < a[_PMIN]):
        raise SpotError(_MALFORMED, "pmax 0 or below pmin")
    return a


class Subscriptions:
    """All subscriptions of a node, bounded by max_subs."""

    __slots__ = ("subs", "max_subs")

    def __init__(self, max_subs):
        self.subs = []  # [peer, sid, mid, {oid: state}]
        self.max_subs = max_subs

    def add(self, peer, sid, mid, objects, now):
        """Add or replace the subscription (peer, sid, mid).

        objects maps oid -> (attrs list, current wire value).
        """
        table = {}
        for oid in objects:
            a, value = objects[oid]
            table[oid] = a + [value, now, False]
        for s in self.subs:
            if s[0] == peer and s[1] == sid and s[2] == mid:
                s[3] = table
                return
        if len(self.subs) >= self.max_subs:
            raise SpotError(_BUSY, "subscriptions full")
        self.subs.append([peer, sid, mid, table])

    def remove(self, peer, sid, mid):
        """Remove one subscription (mid) or all of peer's in sid (mid None)."""
        keep = [s for s in self.subs
                if not (s[0] == peer and s[1] == sid and (mid is None or s[2] == mid))]
        if len(keep) == len(self.subs) and mid is not None:
            raise SpotError(_UNKNOWN_OBJECT, "subscription")
        self.subs = keep

    def drop_peer(self, peer):
        self.subs = [s for s in self.subs if s[0] != peer]

    def changed(self, sid, oid, value):
        """Note a new wire value of (sid, oid): pending wherever the change from the value
        last sent passes the attributes (any change, or for numbers with st, gt or lt: a
        change of st or more, or gt or lt crossed)."""
        for s in self.subs:
            if s[1] != sid:
                continue
            st = s[3].get(oid)
            if st is None or st[_DIRTY]:
                continue
            old = st[_LAST]
            if old == value:
                continue
            step = st[_ST]
            gt = st[_GT]
            lt = st[_LT]
            if type(value) in (int, float) and type(old) in (int, float) and (
                    step is not None or gt is not None or lt is not None):
                # a number under st, gt or lt: pending for a change of st or more, or
                # for gt or lt crossed; else it changed too little
                if not ((step is not None and abs(value - old) >= step)
                        or (gt is not None and (old <= gt) != (value <= gt))
                        or (lt is not None and (old <= lt) != (value <= lt))):
                    continue
            st[_DIRTY] = True

    def next_deadline(self):
        """Earliest time at which due() may return something, or None."""
        t = None
        for s in self.subs:
            table = s[3]
            for oid in table:
                st = table[oid]
                if st[_DIRTY]:
                    d = st[_SENT] + st[_PMIN]
                    t = d if t is None or d < t else t
                if st[_PMAX] is not None:
                    d = st[_SENT] + st[_PMAX]
                    t = d if t is None or d < t else t
        return t


def due_values(sub, now, read, values=None):
    """{oid: value} to notify now for one subscription [peer, sid, mid, table], or None;
    read(sid, oid) gives values. Marks them sent. values: a dict to fill (emptied
    first; a node reuses one, so a notification makes no dict)."""
    table = sub[3]
    found = False
    for oid in table:
        st = table[oid]
        age = now - st[_SENT]
        if (st[_DIRTY] and age >= st[_PMIN]) or (st[_PMAX] is not None and age >= st[_PMAX]):
            v = read(sub[1], oid)
            if values is None:
                values = {}
            elif not found:
                values.clear()
            found = True
            values[oid] = v
            st[_LAST] = v
            st[_SENT] = now
            st[_DIRTY] = False
    return values if found else None
