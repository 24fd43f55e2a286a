"""The device-side node: serves its services' objects over SPOT frames.

Sans-I/O, in the manner of Wakaama's core: bytes and time go in, bytes and
events come out.

    reply = node.receive(frame, now, peer)  # answer to send back, or None
    for peer, frame in node.step(now): ...  # notifications due now (or step(now, emit))
    node.next_deadline(now)                 # when step() wants to run next
    node.events                             # (kind, service, object, arg) to act on

`now` is the node's monotonic clock in seconds; unix time is now + the offset
set through the time service. Firmware updates measurements with set() and
reads commanded values with get(), both in SI units; or it binds getters and
setters to objects with bind().
"""
from .compat import const, MICROPYTHON
from . import frame as F
from . import model
from .errors import SpotError
from . import subscriptions
from . import plans as P

# core.errors', core.services' and core.model's numbers as constants of this module: no
# global slot holds them, and TIME_OBJECTS is one constant (in flash when frozen)
_UNKNOWN_SERVICE = const(1)
_UNKNOWN_OBJECT = const(2)
_READ_ONLY = const(3)
_MALFORMED = const(9)
_UNSUPPORTED = const(10)
_NOT_AUTHORISED = const(6)
_NODE = const(0)
_TIME = const(2)
_PLANS = const(4)
_TIME_TYPE = const(5)    # model.TIME, the type
_RW = const(3)
_M = const(1)
_ID = const(0)          # core.model's row field and access rights
_ACCESS = const(4)
_R = const(1)
_W = const(2)
_X = const(4)
# core/frame_numbers' numbers, copied: no global slot holds them on a board
_ANNOUNCE = const(7)
_INVOKE = const(3)
_MAX_FRAME = const(1024)
_NOTIFY = const(6)
_READ = const(1)
_RESULT = const(8)
_SUBSCRIBE = const(4)
_VERSION = const(1)
_WRITE = const(2)
_UNSUBSCRIBE = const(5)
# core.plans' object ids, copied
_PUSH = const(1)
_DEFAULT = const(3)
_ACTIVE = const(4)
_COMM_TIMEOUT = const(5)
_LIST = const(6)
_FALLBACK = const(7)

# core/node_numbers' numbers, copied: the event kinds in node.events, the time service's
# object, the ANNOUNCE body's keys and flags
_EV_WRITE = const(1)
_EV_INVOKE = const(2)
_EV_SIGNAL = const(3)
_EV_PLAN = const(4)
_EV_FALLBACK = const(5)
_UNIX_TIME = const(1)
_A_ID = const(0)
_A_SERVICES = const(1)
_A_CONSUMES = const(2)
_A_FLAGS = const(3)
_FLAG_SLEEPY = const(1)
_FLAG_CLOCK = const(2)

_MAX_STEP_BACK = const(86400)  # a clock set further back than this before a stamp: it was wrong

if MICROPYTHON:
    def __getattr__(name):
        # node.EV_WRITE, `from .node import A_ID`: core/node_numbers, imported on first use
        # (this module and the device-side ones use private copies and never ask)
        from . import node_numbers
        return getattr(node_numbers, name)
else:
    from .node_numbers import *  # noqa: F401,F403  the numbers as this module's attributes

NOTHING = []  # shared empty result of step() when nothing is due: read results, never change them

TIME_OBJECTS = (
    (_UNIX_TIME, "unix_time", _TIME_TYPE, "s", _RW, _M, None, None, 0),
)


class Node:
    # callable(peer, op, sid) -> bool, set on the node by a port that checks its peers
    # (core/pairing); None: every peer may (a class attribute: a node without holds none)
    authorise = None

    def __init__(self, profiles, device_id="", consumes=(), max_frame=_MAX_FRAME,
                 max_subs=8, max_plans=4, comm_timeout=900, max_horizon=172800,
                 sleepy=False):
        self.device_id = device_id
        self.services = {}
        for p in profiles:
            s = model.service_of(p)
            self.services[s.sid] = s
        self.services[_TIME] = model.Service(_TIME, "time", (1, 0), TIME_OBJECTS)
        controllable = False
        for s in self.services.values():
            for r in s.rows:
                if r[_ACCESS] & _W and s.sid != _TIME:
                    controllable = True
        if controllable:
            self.services[_PLANS] = model.service_of(P)
        # informational services taken (spec 7); with self.services, the set of services
        # whose frames are read past byte 1 (receive())
        self.consumes = tuple(consumes)
        self.values = {}
        for sid in self.services:
            self.values[sid] = {}
        self.signals = {}
        # bind(): oid << 8 | sid -> (row, get, wire) / (row, set, wire), keys made without
        # a tuple (a board's heap holds no key objects, a lookup makes none)
        self.getters = {}
        self.setters = {}
        self.events = []
        self.subs = subscriptions.Subscriptions(max_subs)
        self.plans = P.Plans(max_plans, max_horizon)
        self.max_frame = max_frame
        self.sleepy = sleepy
        self.clock_offset = 0
        self.time_known = False
        self.stamped = None    # the latest time put on a NOTIFY (set_time never goes before it)
        self.last_contact = None
        self.fallback = False
        self.dropped = 0
        self._read = self.wire     # bound once: step() hands it on every turn
        # a NOTIFY body [stamp, values], refilled per frame: the values' dict too
        # (subscriptions.due_values)
        self._body = [None, {}]
        self._buf = bytearray()    # frame encode buffer, reused (grows to the largest frame)
        # node seconds at which plans are looked at next: 0 at once (node time is never
        # negative), None never (set by _apply_plans)
        self._plan_at = 0
        self._now = 0
        if controllable:
            v = self.values[_PLANS]
            v[_COMM_TIMEOUT] = comm_timeout
            v[_ACTIVE] = 0
            v[_FALLBACK] = False

    # ------------------------------------------------------------ firmware API

    def bind(self, sid, oid, get=None, set=None, wire=False):
        """Read (sid, oid) through get() and/or hand accepted values to set(value).

        Values passed either way are in SI units, or with wire=True the wire
        values themselves: for a scaled number an integer in units of
        10**scale (the scale is in the object's profile row), so a getter of a
        sensor makes no float per read. set() also receives INVOKE arguments
        of action objects.
        """
        row = self._service(sid).row(oid)
        if get is not None:
            self.getters[oid << 8 | sid] = (row, get, wire)
        if set is not None:
            self.setters[oid << 8 | sid] = (row, set, wire)

    def bound(self, sid, oid):
        """Whether a getter is bound to (sid, oid)."""
        return (oid << 8 | sid) in self.getters

    def set(self, sid, oid, value, now=None):
        """Update an object locally (a measurement) from an SI value."""
        row = self._service(sid).row(oid)
        wire = None if value is None else model.to_wire(row, value)
        if wire is not None:
            model.check(row, wire)
        self._store(sid, oid, wire)

    def get(self, sid, oid):
        """SI value of an object (None if never set)."""
        row = self._service(sid).row(oid)
        v = self.wire(sid, oid)
        return None if v is None else model.from_wire(row, v)

    def set_default_plan(self, entries):
        """Install the local default plan {service: {object: wire value}} (checked)."""
        if entries:
            P.check_entries(self.services, entries)
        self.plans.default = entries or {}
        self._store(_PLANS, _DEFAULT, self.plans.default)
        self._plan_at = 0

    def report(self, sid, attrs, now, peer=None, mid=0):
        """Notify peer of objects of sid on the node's own initiative (telemetry).

        attrs maps object id -> observe attributes as in SUBSCRIBE; the NOTIFY
        frames carry message id mid, a SUBSCRIBE's (0: telemetry nobody subscribed to).
        """
        svc = self._service(sid)
        objects = {}
        for oid in attrs:
            svc.row(oid)
            objects[oid] = (subscriptions.parse_attrs(attrs[oid]), self.wire(sid, oid))
        self.subs.add(peer, sid, mid, objects, now)

    def consume(self, sid):
        """Start taking informational broadcasts of service sid (run-time filter)."""
        if sid not in self.consumes:
            self.consumes = self.consumes + (sid,)

    def ignore(self, sid):
        """Stop taking broadcasts of service sid; they are dropped from the header."""
        self.consumes = tuple([s for s in self.consumes if s != sid])

    def set_time(self, unix_s, now):
        """The node's clock: Unix seconds unix_s at node time now (seconds). It never goes
        back before a time already put on a NOTIFY (that time + 1 instead), so a reading
        is never stamped with a time an earlier one had (spec 3.1); a set more than a day
        back is taken as it is (the clock was wrong, not fast)."""
        last = self.stamped
        if last is not None and last - _MAX_STEP_BACK < unix_s < last:
            unix_s = last + 1
        self.clock_offset = unix_s - now
        self.time_known = True
        self._plan_at = 0    # plans are looked at again, on the new clock, at once: a
        if _PLANS in self.services:   # write right after this is not undone at the next step
            self._apply_plans(unix_s)

    def unix(self, now):
        return now + self.clock_offset

    def stamp(self, now):
        """The time of a NOTIFY made at node time now (None while the clock is unset),
        remembered for set_time."""
        if not self.time_known:
            return None
        t = self.stamped = int(now + self.clock_offset)
        return t

    def pop_events(self):
        ev = self.events
        self.events = []
        return ev

    def announce(self, mid=0, bridge=None):
        """An ANNOUNCE frame: identity, services with versions, consumed services. bridge:
        the peer whose RESULT to it brings the time (CoAP): flag bit 1 if it may set the
        clock (spec 3.1)."""
        svcs = []
        for sid in sorted(self.services):
            s = self.services[sid]
            svcs.append([sid, s.version[0], s.version[1]])
        body = {_A_ID: self.device_id, _A_SERVICES: svcs}
        if self.consumes:
            body[_A_CONSUMES] = list(self.consumes)
        flags = _FLAG_SLEEPY if self.sleepy else 0
        if bridge is not None and (self.authorise is None
                                   or self.authorise(bridge, _WRITE, _TIME)):
            flags |= _FLAG_CLOCK
        if flags:
            body[_A_FLAGS] = flags
        return F.encode(_ANNOUNCE, _NODE, mid, body)

    # ------------------------------------------------------------ frames in

    def receive(self, frame, now, peer=None):
        """Handle one frame; return the reply frame or None."""
        self._now = now
        if len(frame) < 2:   # (F.peek() without its tuple)
            self.dropped += 1
            return None
        ver = frame[0] >> 4
        op = frame[0] & 0x0F
        sid = frame[1]
        mid = F.message_id(frame)
        is_request = _READ <= op <= _UNSUBSCRIBE and mid is not None
        if sid not in self.services and sid not in self.consumes:   # from byte 1 alone
            self.dropped += 1
            if is_request and ver == _VERSION:
                return F.error(sid, mid, _UNKNOWN_SERVICE)
            return None
        try:
            op, sid, mid, body = F.decode(frame, self.max_frame)
        except SpotError as e:
            self.dropped += 1
            return F.error(sid, mid, e.code, e.detail) if is_request else None
        if op == _NOTIFY and sid in self.consumes:
            # peer None: the transport vouches for the sender (an MQTT broker's ACL)
            if peer is not None and self.authorise is not None \
                    and not self.authorise(peer, _WRITE, sid):
                self.dropped += 1
                return None
            self.signals[sid] = body
            self.events.append((_EV_SIGNAL, sid, None, body))
            return None
        if not is_request or sid not in self.services:
            self.dropped += 1
            return F.error(sid, mid, _UNKNOWN_SERVICE) if is_request else None
        if self.authorise is not None and not self.authorise(peer, op, sid):
            return F.error(sid, mid, _NOT_AUTHORISED)
        try:
            result = self._handle(op, sid, mid, body, now, peer)
        except SpotError as e:
            return F.error(sid, mid, e.code, e.detail)
        if self.fallback:   # only a request that was carried out is contact
            self._set_fallback(False)
        self.last_contact = now
        return F.encode(_RESULT, sid, mid, result, self._buf)

    def _known(self, sid, oids, need):
        # rows of the known oids of service sid (unknown ones skipped), checking access bits
        svc = self.services[sid]
        rows = []
        for oid in oids:
            if type(oid) is not int:
                raise SpotError(_MALFORMED, "bad object id")
            row = svc.get(oid)
            if row is None:
                continue
            if not row[_ACCESS] & need:
                raise SpotError(_READ_ONLY if need != _R else _UNSUPPORTED, oid)
            rows.append(row)
        if not rows:
            raise SpotError(_UNKNOWN_OBJECT, oids[0] if len(oids) == 1 else None)
        return rows

    def _handle(self, op, sid, mid, body, now, peer):
        """The result of request op (READ to UNSUBSCRIBE) from peer on service sid; raises
        SpotError with nothing changed."""
        svc = self.services[sid]
        if op == _READ:
            out = {}
            if body is None:
                for r in svc.rows:
                    if r[_ACCESS] & _R:
                        out[r[_ID]] = self.wire(sid, r[_ID])
                return out
            if type(body) is not list:
                raise SpotError(_MALFORMED, "READ takes [oid...]")
            for oid in body:   # as _known(), without the list of rows
                if type(oid) is not int:
                    raise SpotError(_MALFORMED, "bad object id")
                row = svc.get(oid)
                if row is not None:
                    if not row[_ACCESS] & _R:
                        raise SpotError(_UNSUPPORTED, oid)
                    out[oid] = self.wire(sid, oid)
            if not out:
                raise SpotError(_UNKNOWN_OBJECT, body[0] if len(body) == 1 else None)
            return out

        if op == _WRITE:
            if type(body) is not dict or not body:
                raise SpotError(_MALFORMED, "WRITE takes {oid: value}")
            oids = list(body)
            rows = self._known(sid, oids, _W)
            for r in rows:  # check everything before changing anything
                v = body[r[_ID]]
                model.check(r, v)
                if sid == _PLANS and r[_ID] == _DEFAULT and v:
                    P.check_entries(self.services, v, self.authorise, peer)
            for r in rows:
                oid = r[_ID]
                v = body[oid]
                if sid == _TIME:   # UNIX_TIME, its only writable object
                    self.set_time(v, now)
                elif sid == _PLANS and oid == _DEFAULT:
                    self.plans.default = v
                    self._plan_at = 0
                self._write(sid, oid, v)
            return [oid for oid in oids if svc.get(oid) is None] or None

        if op == _INVOKE:
            if type(body) is not list or not 1 <= len(body) <= 2 or type(body[0]) is not int:
                raise SpotError(_MALFORMED, "INVOKE takes [oid, arg]")
            row = self._known(sid, body[:1], _X)[0]
            arg = body[1] if len(body) == 2 else None
            oid = row[_ID]
            if sid != _PLANS:
                model.check(row, arg)
                self._set_hw(sid, oid, arg)
                self.events.append((_EV_INVOKE, sid, oid, arg))
                return None
            skipped = None
            if oid == _PUSH:
                self.plans.check_plan(arg, self.unix(now))
                skipped = P.check_entries(self.services, arg[4], self.authorise, peer) or None
                self.plans.push(arg)
            else:   # CANCEL
                model.check(row, arg)
                self.plans.cancel(arg)
            self._store(_PLANS, _LIST, self.plans.summary())
            self._plan_at = 0
            return skipped

        if op == _SUBSCRIBE:
            if type(body) is not dict or not body:
                raise SpotError(_MALFORMED, "SUBSCRIBE takes {oid: attrs}")
            objects = {}
            current = {}
            for r in self._known(sid, list(body), _R):
                oid = r[_ID]
                v = self.wire(sid, oid)
                objects[oid] = (subscriptions.parse_attrs(body[oid]), v)
                current[oid] = v
            self.subs.add(peer, sid, mid, objects, now)
            return current

        # UNSUBSCRIBE
        if body is not None and (type(body) is not int or body < 0):
            raise SpotError(_MALFORMED, "UNSUBSCRIBE takes [id]")
        return self.subs.remove(peer, sid, body)

    # ------------------------------------------------------------ time

    def step(self, now, emit=None):
        """Advance plans and the fallback timer; return [(peer, NOTIFY frame)], or hand
        each to emit(peer, frame) and return an empty list (no list made per turn)."""
        self._now = now
        if (not self.fallback and self.last_contact is not None and self.plans.temp
                and _PLANS in self.services
                and now - self.last_contact >= self.values[_PLANS][_COMM_TIMEOUT]):
            self._set_fallback(True)
        # Unix seconds are past MicroPython's small ints on 32-bit boards (a heap object
        # each): compared in node seconds (_plan_at), made only when used
        at = self._plan_at
        if at is not None and now >= at and _PLANS in self.services:
            self._apply_plans(self.unix(now))
        out = None
        body = self._body
        for s in self.subs.subs:
            if subscriptions.due_values(s, now, self._read, body[1]) is not None:
                body[0] = self.stamp(now)
                frame = F.encode(_NOTIFY, s[1], s[2], body, self._buf)
                if emit is not None:
                    emit(s[0], frame)
                    continue
                if out is None:
                    out = []
                out.append((s[0], frame))
        return NOTHING if out is None else out

    def next_deadline(self, now):
        """Seconds until step() has work, or None if only input can cause any."""
        best = self.subs.next_deadline()
        if _PLANS in self.services:
            if self.plans.temp and self.last_contact is not None and not self.fallback:
                d = self.last_contact + self.values[_PLANS][_COMM_TIMEOUT]
                best = d if best is None or d < best else best
            d = self._plan_at
            if d is not None:
                best = d if best is None or d < best else best
        return None if best is None else max(0, best - now)

    def _set_fallback(self, on):
        self.fallback = on
        self._store(_PLANS, _FALLBACK, on)
        self.events.append((_EV_FALLBACK, _PLANS, None, on))
        self._plan_at = 0

    def _apply_plans(self, t):
        plans = self.plans
        if plans.expire(t):
            self._store(_PLANS, _LIST, plans.summary())
        for sid, oid in plans.governed():
            svc = self.services.get(sid)
            row = svc.get(oid) if svc is not None else None
            if row is None:
                continue
            v, _ = plans.value_at(sid, oid, P.is_series(row), t, self.fallback)
            if v is not None and v != self.wire(sid, oid):
                self._write(sid, oid, v)
        active = plans.active(t, self.fallback)
        if active != self.values[_PLANS].get(_ACTIVE):
            self._store(_PLANS, _ACTIVE, active)
            self.events.append((_EV_PLAN, _PLANS, None, active))
        due = plans.next_edge(t)
        self._plan_at = None if due is None else due - self.clock_offset   # node seconds

    # ------------------------------------------------------------ storage

    def _service(self, sid):
        svc = self.services.get(sid)
        if svc is None:
            raise SpotError(_UNKNOWN_SERVICE, sid)
        return svc

    def wire(self, sid, oid):
        """Current wire value of (sid, oid), through a bound getter if any."""
        if sid == _TIME and oid == _UNIX_TIME:
            return int(self._now + self.clock_offset) if self.time_known else None
        g = self.getters.get(oid << 8 | sid)
        if g is not None:
            v = g[1]()
            return v if v is None or g[2] else model.to_wire(g[0], v)
        return self.values[sid].get(oid)

    def _store(self, sid, oid, wire):
        vals = self.values[sid]
        if vals.get(oid) != wire or oid not in vals:
            vals[oid] = wire
            self.subs.changed(sid, oid, wire)

    def _write(self, sid, oid, wire):
        """A value written remotely or by a plan: stored, handed to the setter, an event."""
        self._store(sid, oid, wire)
        self._set_hw(sid, oid, wire)
        self.events.append((_EV_WRITE, sid, oid, None))

    def _set_hw(self, sid, oid, wire):
        s = self.setters.get(oid << 8 | sid)
        if s is not None:
            s[1](wire if wire is None or s[2] else model.from_wire(s[0], wire))
