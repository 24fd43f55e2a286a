"""Plans: a local default plan, temporary plans with primacy, and fallback.

A plan sets writable objects of the node's services over time. Its entries
map service -> {object: value}; a value is a constant or, for objects that
are not schedules themselves, a schedule [start, step, [v0, v1, ...]] whose
current slot gives the value (None slots leave the object to lower plans).

A temporary plan [id, start, expiry, primacy, entries] governs from start
until expiry. Where several cover an object, the higher primacy wins, then
the one pushed last. Where none does, the default plan does. While the
controller has been silent for the communication timeout, the node is in
fallback: temporary plans are suspended and the default plan governs.
"""
from .compat import const, MICROPYTHON
from . import model
from .errors import SpotError

# core.model's, core.errors' and core.services' numbers as constants of this module:
# OBJECTS is then one constant (in flash when frozen), and no global slot holds them
_PLAN = const(10)
_ENUM = const(3)
_MAP = const(11)
_ANALOG = const(1)
_BINARY = const(2)
_R = const(1)
_W = const(2)
_X = const(4)
_RW = const(3)
_M = const(1)
_TYPE = const(2)
_ACCESS = const(4)
_SCHEDULE = const(6)
_CURVE = const(7)
_MALFORMED = const(9)
_OUT_OF_RANGE = const(4)
_BUSY = const(8)
_UNKNOWN_OBJECT = const(2)
_READ_ONLY = const(3)
_NOT_AUTHORISED = const(6)
_PLANS = const(4)
_TIME_SID = const(2)      # core.services.TIME (core.model.TIME is a type)
_WRITE = const(2)         # core.frame's operation

# core/plans_numbers' numbers, copied: the objects of this service (comm_timeout's is
# private), the highest primacy
_PUSH = const(1)
_CANCEL = const(2)
_DEFAULT = const(3)
_ACTIVE = const(4)
_COMM_TIMEOUT = const(5)
_LIST = const(6)
_FALLBACK = const(7)
_MAX_PRIMACY = const(255)

if MICROPYTHON:
    def __getattr__(name):
        # plans.PUSH, `from .plans import CANCEL`: core/plans_numbers, imported on first use
        # (this module and the device-side ones use private copies and never ask)
        from . import plans_numbers
        return getattr(plans_numbers, name)
else:
    from .plans_numbers import *  # noqa: F401,F403  the numbers as this module's attributes

SERVICE = _PLANS
NAME = "plans"
VERSION = (1, 0)
OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (_PUSH, "push", _PLAN, "", _X, _M, None, None, 0),
    (_CANCEL, "cancel", _ENUM, "", _X, _M, 1, 0xFFFFFFFF, 0),
    (_DEFAULT, "default_plan", _MAP, "", _RW, _M, None, None, 0),
    (_ACTIVE, "active_plan", _ENUM, "", _R, _M, 0, 0xFFFFFFFF, 0),
    (_COMM_TIMEOUT, "comm_timeout", _ANALOG, "s", _RW, _M, 10, 604800, 0),
    (_LIST, "plans", _PLAN, "", _R, _M, None, None, 0),
    (_FALLBACK, "fallback", _BINARY, "", _R, _M, None, None, 0),
)

# plan record slots
_ID = const(0)
_START = const(1)
_EXPIRY = const(2)
_PRIMACY = const(3)
_ENTRIES = const(4)
_SEQ = const(5)


def is_series(row):
    """True for objects whose value is itself a list (schedule, curve)."""
    return row[_TYPE] == _SCHEDULE or row[_TYPE] == _CURVE


def check_entries(services, entries, authorise=None, peer=None):
    """Validate plan entries; return the skipped [service, object] pairs.

    Unknown services and objects are skipped (a newer controller), and so are
    the plans and time services, which no plan sets; a service peer may not
    write (authorise(peer, WRITE, sid) false) is NOT_AUTHORISED; anything else wrong raises SpotError. Raises
    UNKNOWN_OBJECT if nothing is left.
    """
    if type(entries) is not dict:
        raise SpotError(_MALFORMED, "entries not a map")
    skipped = []
    known = 0
    for sid in entries:
        objs = entries[sid]
        if type(objs) is not dict:
            raise SpotError(_MALFORMED, "entries not a map")
        svc = services.get(sid)
        if svc is not None and authorise is not None and not authorise(peer, _WRITE, sid):
            raise SpotError(_NOT_AUTHORISED, sid)
        for oid in objs:
            row = svc.get(oid) if svc is not None and sid != _PLANS and sid != _TIME_SID else None
            if row is None:
                skipped.append([sid, oid])
                continue
            if not row[_ACCESS] & _W:
                raise SpotError(_READ_ONLY, oid)
            v = objs[oid]
            if type(v) is list and not is_series(row):
                model.check_schedule(row, v)
            else:
                model.check(row, v)
            known += 1
    if not known:
        raise SpotError(_UNKNOWN_OBJECT, "no known object")
    return skipped


def _value_in(entries, sid, oid, series, t):
    # value one plan's entries give (sid, oid) at time t (schedules give their slot), or None
    objs = entries.get(sid)
    if objs is None or oid not in objs:
        return None
    v = objs[oid]
    if type(v) is list and not series:
        return model.schedule_at(v, t)
    return v


class Plans:
    """The plan store of one node."""

    __slots__ = ("temp", "default", "max_plans", "max_horizon", "_seq")

    def __init__(self, max_plans=4, max_horizon=172800):
        self.temp = []
        self.default = {}
        self.max_plans = max_plans
        self.max_horizon = max_horizon
        self._seq = 0

    def check_plan(self, plan, now):
        """Validate the header of a pushed plan (not its entries)."""
        if type(plan) is not list or len(plan) != 5:
            raise SpotError(_MALFORMED, "plan is [id, start, expiry, primacy, entries]")
        pid, start, expiry, primacy = plan[0], plan[1], plan[2], plan[3]
        for v in (pid, start, expiry, primacy):
            if type(v) is not int or v < 0:
                raise SpotError(_MALFORMED, "plan header not unsigned")
        if pid == 0 or primacy > _MAX_PRIMACY:
            raise SpotError(_OUT_OF_RANGE, "plan id or primacy")
        if expiry <= start or expiry <= now or expiry - now > self.max_horizon:
            raise SpotError(_OUT_OF_RANGE, "plan expiry")
        if len(self.temp) >= self.max_plans and self.find(pid) is None:
            raise SpotError(_BUSY, "plans full")

    def find(self, pid):
        for p in self.temp:
            if p[_ID] == pid:
                return p
        return None

    def push(self, plan):
        """Store a checked plan; a plan with the same id is replaced."""
        self._seq += 1
        rec = [plan[0], plan[1], plan[2], plan[3], plan[4], self._seq]
        old = self.find(plan[0])
        if old is not None:
            self.temp.remove(old)
        self.temp.append(rec)
        # precedence order: higher primacy first, then the later push
        self.temp.sort(key=lambda p: (-p[_PRIMACY], -p[_SEQ]))

    def cancel(self, pid):
        p = self.find(pid)
        if p is None:
            raise SpotError(_UNKNOWN_OBJECT, pid)
        self.temp.remove(p)

    def expire(self, t):
        """Drop plans whose expiry has passed; return their ids."""
        gone = [p[_ID] for p in self.temp if p[_EXPIRY] <= t]
        if gone:
            self.temp = [p for p in self.temp if p[_EXPIRY] > t]
        return gone

    def summary(self):
        return [[p[_ID], p[_START], p[_EXPIRY], p[_PRIMACY]] for p in self.temp]

    def governed(self):
        """Every (service, object) some plan sets."""
        out = []
        for entries in [self.default] + [p[_ENTRIES] for p in self.temp]:
            for sid in entries:
                for oid in entries[sid]:
                    if (sid, oid) not in out:
                        out.append((sid, oid))
        return out

    def value_at(self, sid, oid, series, t, suspended):
        """(value, plan id) governing (sid, oid) at t; plan id 0 is the default."""
        if not suspended:
            for p in self.temp:
                if p[_START] <= t < p[_EXPIRY]:
                    v = _value_in(p[_ENTRIES], sid, oid, series, t)
                    if v is not None:
                        return v, p[_ID]
        v = _value_in(self.default, sid, oid, series, t)
        return (v, 0) if v is not None else (None, None)

    def active(self, t, suspended):
        """Id of the highest-precedence temporary plan in force, or 0."""
        if not suspended:
            for p in self.temp:
                if p[_START] <= t < p[_EXPIRY]:
                    return p[_ID]
        return 0

    def next_edge(self, t):
        """Next time after t at which some plan starts, ends or changes slot."""
        best = None
        for p in self.temp:
            for e in (p[_START], p[_EXPIRY]):
                if e > t and (best is None or e < best):
                    best = e
        for entries in [self.default] + [p[_ENTRIES] for p in self.temp]:
            for sid in entries:
                objs = entries[sid]
                for oid in objs:
                    v = objs[oid]
                    if type(v) is list and len(v) == 3 and type(v[2]) is list:
                        e = model.schedule_next_edge(v, t)
                        if e is not None and e > t and (best is None or e < best):
                            best = e
        return best
