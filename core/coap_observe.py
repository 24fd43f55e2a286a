"""Observe (RFC 7641) on the CoAP endpoint and the SPOT binding, imported on the first
observation: the endpoint's observers and their notifications (for
core.coap_endpoint.Endpoint `s`), and the binding's observations, each carrying a SPOT
subscription (for core.coap_binding.CoapBinding `b`), as functions of those objects.

A device is observed only when someone subscribes to it over CoAP (the bridge does for
a subscription made through its API): until then a board holds none of this code's
functions or classes in its heap. The endpoint and CoapBinding keep the tables (empty
until then) and call in here only when a request asks to observe or a table holds
something.
"""
from .compat import const
from . import cbor
from . import coap
from . import frame as F
from . import coap_server
from .coap_server import Request, Response
from .coap_binding import BUS, CF_SPOT
from .errors import SpotError

_CON = const(0)
_NON = const(1)
_CONTENT = const(69)
_NOT_FOUND = const(132)
_BLOCK2 = const(23)
_CF_CBOR = const(60)
_UNSUBSCRIBE = const(5)          # core/frame_numbers
_RESULT = const(8)
_CON_NOTIFY_MAX_AGE_MS = const(86400000)  # at least one CON notification a day (RFC 7641 4.5)
_OBSERVE_MASK = const(0xFFFFFF)
_TX_NOTIFY = const(2)            # core.coap_endpoint's Transmission kind
_batch = []     # observers being notified, reused by notify_path() (every endpoint's)


# ---- the endpoint's observers (core.coap_endpoint.Endpoint s) ------------------------------

class Observer:
    __slots__ = ('addr', 'token', 'msg', 'path', 'key', 'since_con', 'last_con', 'tx',
                 'last_mid', 'req', 'segments')

    def __init__(self, req, now):
        self.addr = req.addr
        self.token = req.token
        self.msg = req.msg
        self.path = req.path_str()
        self.key = (req.addr, req.uri_key())
        self.since_con = 0
        self.last_con = now
        self.tx = None        # CON notification in flight
        self.last_mid = -1    # last NON notification (a Reset to it deregisters)
        self.req = None       # the Request its notifications are rendered from, made once
        self.segments = None  # (path, query) lists of that Request

    def request(self):
        """The Request of a notification: made at the first, renewed for the next ones."""
        req = self.req
        if req is None:
            req = self.req = Request(self.msg, self.addr)
            self.segments = (req.path, req.query)
        else:
            req.renew(self.segments[0], self.segments[1])
        req.notification = True
        return req


def answer_seq(s, req, resp, now):
    """The Observe number of resp, the answer to req (a GET or FETCH with Observe 0,
    not a notification): a success registers its observer (None when the table is full
    or this is a later Block2 block), an error ends the observer it had."""
    key = (req.addr, req.uri_key())
    if resp.code >> 5 != 2:
        s.observers.pop(key, None)
        return None
    b2 = req.msg.get_block(_BLOCK2)
    if b2 is not None and b2[0] != 0:
        return None
    old = s.observers.get(key)
    if old is None and len(s.observers) >= s.max_observers:
        return None
    obs = Observer(req, now)
    if old is not None:
        obs.tx = old.tx
        if old.tx is not None:
            old.tx.owner = obs
    s.observers[key] = obs
    return _next_seq(s)


def _next_seq(s):
    seq = s._seq
    s._seq = (seq + 1) & _OBSERVE_MASK
    return seq


def _drop_observer(s, obs):
    if s.observers.get(obs.key) is obs:
        del s.observers[obs.key]


def notify_path(s, path, response, now):
    """Send the current state to each observer of `path`; returns how many were sent."""
    if type(path) is not str or path.startswith('/') or path.endswith('/'):
        path = '/'.join(coap.split_path(path))
    batch = _batch
    if batch:   # a handler notifying while a notification renders: a list of its own
        batch = []
    table = s.observers
    for key in table:
        if table[key].path == path:
            batch.append(table[key])
    sent = 0
    try:
        for obs in batch:
            req = obs.request()
            resp = response if response is not None else coap_server._call(s, req)
            if resp is not None:
                _notify_one(s, obs, req, resp, now)
                sent += 1
    finally:
        batch.clear()
    return sent


def _notify_one(s, obs, req, resp, now):
    ok = resp.code >> 5 == 2
    con = (not ok or obs.tx is not None or obs.since_con + 1 >= s.con_every or
           now - obs.last_con >= _CON_NOTIFY_MAX_AGE_MS)
    mid = s.next_mid()
    seq = _next_seq(s) if ok else None
    if not ok:
        _drop_observer(s, obs)
    if con:
        data = coap_server._datagram(s, req, resp, _CON, mid, seq, now)
        tx = s.send_con(obs.addr, mid, data, _TX_NOTIFY, obs, replace=obs.tx)
        if tx is not None:
            obs.tx = tx
            obs.since_con = 0
            obs.last_con = now
            return
    s.send(obs.addr, coap_server._datagram(s, req, resp, _NON, mid, seq, now))
    obs.since_con += 1
    obs.last_mid = mid


def on_notify_answer(s, obs, tx, reset):
    """ACK, RST or give-up for a CON notification."""
    if obs.tx is tx:
        obs.tx = None
    if reset:
        _drop_observer(s, obs)


def on_reset(s, addr, mid):
    """A Reset matching no pending CON: maybe the answer to a NON notification."""
    for obs in list(s.observers.values()):
        if obs.addr == addr and obs.last_mid == mid:
            _drop_observer(s, obs)


# ---- the binding's observations (core.coap_binding.CoapBinding b) ---------------------------

class Observation:
    """One CoAP observation carrying one SPOT subscription (peer, sid, mid)."""

    __slots__ = ('addr', 'token', 'peer', 'sid', 'mid', 'oid', 'path', 'pending', 'note')

    def __init__(self, addr, token, peer, sid, mid, oid, path):
        self.addr = addr
        self.token = token
        self.peer = peer
        self.sid = sid
        self.mid = mid
        self.oid = oid          # None: a bus observation (whole NOTIFY frames)
        self.path = path
        self.pending = None     # Response for the next notification
        self.note = Response(_CONTENT, b'', CF_SPOT if oid is None else _CF_CBOR)  # reused


def observe_bus(b, req, peer, frame, sid, mid):
    """FETCH /s with Observe 0 and a SUBSCRIBE frame: the subscription, observed."""
    key = (req.addr, req.token)
    old = b.observations.get(key)
    if old is not None and (old.peer != peer or old.sid != sid or old.mid != mid):
        forget(b, old)
    reply = b.node.receive(frame, b.now, peer)
    if reply is not None and reply[0] & 0x0F == _RESULT:
        for o in list(b.observations.values()):
            # one CoAP observation per subscription: a new token takes it over
            if o.peer == peer and o.sid == sid and o.mid == mid and o is not old:
                drop(b, o)
        observing(b, req, Observation(req.addr, req.token, peer, sid, mid, None, BUS))
    return b._frame(reply, _CONTENT)


def observing(b, req, obs):
    """Register obs and let the endpoint keep the CoAP observation under its token."""
    b.observations[(obs.addr, obs.token)] = obs
    req.observe = 0
    # the endpoint keys observers by (address, uri); with the token in the key a
    # client may hold several observations of one resource (RFC 7641 4.1)
    req.query = ['\x00' + bytes(req.token).hex()]


def deregister(b, addr, token, peer):
    """Observe 1: the client ends the observation (and its subscription)."""
    obs = b.observations.get((addr, token))
    if obs is None or obs.peer != peer:
        return
    drop(b, obs)
    b.node.receive(F.encode(_UNSUBSCRIBE, obs.sid, obs.mid, obs.mid), b.now, peer)


def forget(b, obs):
    """Drop an observation and its subscription without a request (no contact)."""
    drop(b, obs)
    try:
        b.node.subs.remove(obs.peer, obs.sid, obs.mid)
    except SpotError:
        pass


def drop(b, obs):
    """Drop an observation and the endpoint's observer of it."""
    addr, token = obs.addr, obs.token
    b.observations.pop((addr, token), None)
    if b.ep is not None:
        table = b.ep.observers
        for k in [k for k in table if table[k].addr == addr and table[k].token == token]:
            del table[k]


def notification(b, req):
    """The pending notification of the observation req renders, or None."""
    table = b.observations
    for key in table:   # (no key tuple to build: a notification turn allocates little)
        obs = table[key]
        if obs.addr == req.addr and obs.token == req.token:
            break
    else:
        return None
    if obs.pending is None:
        return None
    resp = obs.pending
    obs.pending = None
    if resp.code >> 5 != 2:
        # a final notification: the endpoint still sends it, then the observer is gone
        drop(b, obs)
    return resp


def notify_frame(b, peer, frame):
    """One NOTIFY frame of node.step() as the notification of its observation."""
    sid = frame[1]
    mid = F.message_id(frame)
    table = b.observations
    for key in table:
        obs = table[key]
        if obs.mid == mid and obs.sid == sid and obs.peer == peer:
            break
    else:
        b.unrouted += 1
        return
    note = obs.note
    if obs.oid is None:
        note.payload = frame
    else:
        values = F.decode(frame, len(frame))[3][1]
        if obs.oid not in values:
            return
        note.payload = cbor.dumps(values[obs.oid])
    # each observer renders only its own pending notification, so notifying the
    # path at once serves this note; other notes of the path find theirs later
    if b.ep is not None:
        obs.pending = note
        b.ep.notify(obs.path)
        obs.pending = None   # its observer was gone; sweep() ends it
    note.payload = b''


def sweep(b):
    """CoapBinding.sweep() once it has observations and an endpoint."""
    table = b.ep.observers
    subs = b.node.subs.subs
    mine = b.observations
    for key in mine:   # the usual case, without allocating
        obs = mine[key]
        if not _observed(table, obs) or not _subscribed(subs, obs):
            break
    else:
        return
    live = [(o.addr, o.token) for o in table.values()]
    subs = [(s[0], s[1], s[2]) for s in b.node.subs.subs]
    paths = []
    for key in list(b.observations):
        obs = b.observations[key]
        if key not in live:
            forget(b, obs)
        elif (obs.peer, obs.sid, obs.mid) not in subs:
            obs.pending = Response(_NOT_FOUND, b'subscription ended')
            if obs.path not in paths:
                paths.append(obs.path)
    for p in paths:
        b.ep.notify(p)
    for obs in b.observations.values():
        obs.pending = None   # its observer was gone; the next sweep() ends it


def _observed(observers, obs):
    for key in observers:
        o = observers[key]
        if o.addr == obs.addr and o.token == obs.token:
            return True
    return False


def _subscribed(subs, obs):
    for s in subs:
        if s[0] == obs.peer and s[1] == obs.sid and s[2] == obs.mid:
            return True
    return False
