"""Client side of the sans-I/O CoAP endpoint: exchanges, block-wise transfers, observations.

Functions of a coap_endpoint.Endpoint `ep`, which holds their state (one instance, no
object of this side's own: on a board, no class, instance or table more). ep.exchanges
keeps one Exchange per token: the request goes out (Block1 blocks for a large body),
Block2 is followed to reassemble large responses, Observe registrations are kept alive
(dropping stale notifications, RFC 7641 3.4) and outcomes reported as Event objects through
the endpoint's events().  Used by coap_endpoint.Endpoint, not on their own.
"""
from .compat import const, MICROPYTHON
from . import coap

# CoAP numbers (the same as coap's), private so that they fold into the bytecode
_CON = const(0)
_ACK = const(2)
_RST = const(3)
_EMPTY = const(0)
_OBSERVE = const(6)
_BLOCK2 = const(23)
_BLOCK1 = const(27)
_SIZE1 = const(60)
_CONTINUE = const(95)

_TX_REQUEST = const(1)   # Transmission kind of this side (as coap_endpoint's)

NOTHING = []  # the shared empty result (no datagrams, no events): read results, never change them

# core/coap_numbers' event kinds (Event.kind), copied: no global slot holds them on a board
_EV_RESPONSE = const(1)
_EV_NOTIFICATION = const(2)
_EV_TIMEOUT = const(3)
_EV_RESET = const(4)
_EV_ERROR = const(5)

_OBSERVE_WINDOW = const(0x800000)
_OBSERVE_FRESH_MS = const(128000)

if MICROPYTHON:
    def __getattr__(name):
        # coap_client.EV_RESPONSE, ...: core/coap_numbers, imported on first use (the
        # device-side modules use private copies and never ask)
        from . import coap_numbers
        return getattr(coap_numbers, name)
else:
    from .coap_numbers import *  # noqa: F401,F403  the numbers as this module's attributes


class CoapBusy(Exception):
    """Too many client exchanges are open (see Endpoint max_exchanges)."""


class Event:
    """Outcome of a client exchange. payload is the whole (reassembled) body."""

    observe = None      # defaults as class attributes: see Exchange
    error = None

    def __init__(self, kind, token, addr, msg=None, payload=b''):
        self.kind = kind
        self.token = token
        self.addr = addr
        self.msg = msg
        self.code = msg.code if msg is not None else 0
        self.payload = payload

    def __repr__(self):
        return '<Event %d token=%r code=%s payload=%d observe=%r error=%r>' % (
            self.kind, self.token, coap.code_str(self.code), len(self.payload),
            self.observe, self.error)


class Exchange:
    # What most exchanges never change is a class attribute (its default): on MicroPython,
    # where __slots__ does nothing, each instance holds its attributes in a hash table
    # grown one step at a time, so an exchange setting 8 of them holds an 8-entry table,
    # not a 17-entry one (and makes none of the intermediate tables on a tight heap).
    b1_off = 0
    buf = None            # Block2 reassembly
    observe = False
    established = False
    obs_seq = -1
    obs_time = 0
    parent = None         # set on a fetch of a notification's remaining blocks
    child = None

    def __init__(self, token, addr, template, body, szx):
        self.token = token
        self.addr = addr
        self.template = template   # request without token/mid/payload/block options
        self.body = body           # request payload, b'' once fully sent
        self.b1_szx = szx
        self.b2_szx = szx
        if template.get_uint(_OBSERVE) == 0:
            self.observe = True
        self.tx = None
        self.due = -1              # response deadline (-1: none)


def request_like(ep, addr, template, payload):
    """Endpoint.request() of a prebuilt template (a CoapMessage without mid, token and
    payload, read and never changed here): a device sending the same request over
    and over builds it once."""
    if len(ep.exchanges) >= ep.max_exchanges:
        raise CoapBusy('too many open exchanges')
    ex = Exchange(_new_token(ep), addr, template, payload or b'', ep.block_szx)
    ep.exchanges[ex.token] = ex
    _send(ep, ex)
    return ex.token


def _new_token(ep):
    while True:
        r = ep.rand()
        if r > 0xFFFFFFFF:     # (a mask made a big int on a 32-bit board even when idle)
            r &= 0xFFFFFFFF
        token = r.to_bytes(4, 'big')
        if token not in ep.exchanges:
            return token


def _send(ep, ex, block2=None):
    t = ex.template
    body = ex.body
    if block2 is None and t.mtype == _CON and len(body) <= coap.block_size(ex.b1_szx) \
            and not ex.b1_off:   # the usual request: no copy of the template
        mid = ep.next_mid()
        ex.due = -1
        ex.tx = ep.send_con(ex.addr, mid, coap.encode_message(
            _CON, t.code, mid, ex.token, t.options, body), _TX_REQUEST, ex, force=True)
        return
    msg = coap.CoapMessage(t.mtype, t.code, ep.next_mid(), ex.token, list(t.options))
    if block2 is not None:
        msg.remove(_OBSERVE)
        msg.add(_BLOCK2, coap.encode_block(block2, False, ex.b2_szx))
    elif body:
        size = coap.block_size(ex.b1_szx)
        off = ex.b1_off
        if len(body) > size or off:
            msg.add(_BLOCK1, coap.encode_block(off // size, off + size < len(body), ex.b1_szx))
            if off == 0:
                msg.add(_SIZE1, len(body))
            msg.payload = body[off:off + size]
        else:
            msg.payload = body
    data = coap.encode(msg)
    ex.due = -1
    if msg.mtype == _CON:
        ex.tx = ep.send_con(ex.addr, msg.mid, data, _TX_REQUEST, ex, force=True)
    else:
        ex.tx = None
        ep.send(ex.addr, data)
        ep._ex_unarmed.append(ex)


# ---- answers ------------------------------------------------------------------------
def on_ack(ep, ex, msg, addr, now):
    """ACK (empty or piggy-backed) or RST matching our CON request."""
    ex.tx = None
    if ep.exchanges.get(ex.token) is not ex:
        return
    if msg.mtype == _RST:
        _finish(ep, ex)
        if ex.parent is None:
            ep.emit(Event(_EV_RESET, ex.token, addr))
    elif msg.code == _EMPTY or msg.token != ex.token:
        ex.due = now + ep.response_wait_ms   # separate response follows
    else:
        _handle(ep, ex, msg, now)


def on_response(ep, msg, addr, now):
    """Separate response or notification (CON/NON); returns the ACK/RST to send."""
    con = msg.mtype == _CON
    ex = ep.exchanges.get(msg.token)
    if ex is None or ex.addr != addr:
        rst = coap.encode_message(_RST, _EMPTY, msg.mid)
        if con:
            return rst
        ep.send(addr, rst)
        return None
    if ex.tx is not None:   # the response implies our request arrived
        ep.forget_tx(ex.tx)
        ex.tx = None
    _handle(ep, ex, msg, now)
    return coap.encode_message(_ACK, _EMPTY, msg.mid) if con else None


def _handle(ep, ex, msg, now):
    if ex.body:
        size = coap.block_size(ex.b1_szx)
        if len(ex.body) > size or ex.b1_off:
            b1 = msg.get_block(_BLOCK1)
            if msg.code == _CONTINUE and b1 is not None:
                nxt = ex.b1_off + size
                if b1[2] < ex.b1_szx:
                    ex.b1_szx = b1[2]   # server asks for smaller blocks
                if nxt < len(ex.body):
                    ex.b1_off = nxt
                    _send(ep, ex)
                    return
        ex.body = b''
    obs = msg.get_uint(_OBSERVE) if ex.observe and msg.code >> 5 == 2 else None
    if obs is not None:
        seq = ex.obs_seq
        if ex.established and not (seq < obs < seq + _OBSERVE_WINDOW
                                   or obs < seq - _OBSERVE_WINDOW
                                   or now > ex.obs_time + _OBSERVE_FRESH_MS):
            return   # reordered, older notification (RFC 7641 3.4)
        ex.obs_seq = obs
        ex.obs_time = now
    b2 = msg.get_block(_BLOCK2)
    if b2 is None or not (b2[1] or b2[0]):
        _deliver(ep, ex, msg, msg.payload, obs)
        return
    num, more, szx = b2
    if num == 0:
        ex.buf = bytearray()
    if ex.buf is None or num * coap.block_size(szx) != len(ex.buf):
        return _fail(ep, ex, msg, 'Block2 out of order')
    if len(ex.buf) + len(msg.payload) > ep.max_body:
        return _fail(ep, ex, msg, 'response body too large')
    ex.buf += msg.payload
    if not more:
        payload = bytes(ex.buf)
        ex.buf = None
        _deliver(ep, ex, msg, payload, obs)
        return
    ex.b2_szx = szx
    nxt = len(ex.buf) >> (szx + 4)
    if obs is None:
        _send(ep, ex, nxt)
        return
    # a notification with more blocks: fetch the rest with a separate plain GET
    if ex.child is not None:
        _finish(ep, ex.child)
    if len(ep.exchanges) >= ep.max_exchanges:
        ex.buf = None
        return
    tmpl = coap.CoapMessage(_CON, ex.template.code, 0, b'', list(ex.template.options))
    tmpl.remove(_OBSERVE)
    child = Exchange(_new_token(ep), ex.addr, tmpl, b'', szx)
    child.parent = ex
    child.buf = ex.buf
    child.obs_seq = obs
    ex.buf = None
    ex.child = child
    ep.exchanges[child.token] = child
    _send(ep, child, nxt)


def _deliver(ep, ex, msg, payload, observe):
    parent = ex.parent
    if parent is not None:
        _finish(ep, ex)
        if ep.exchanges.get(parent.token) is not parent:
            return
        observe = ex.obs_seq
        ex = parent
    ev = Event(_EV_NOTIFICATION if ex.established else _EV_RESPONSE, ex.token, ex.addr,
               msg, payload)
    ev.observe = observe
    if observe is None:
        _finish(ep, ex)
    else:
        ex.established = True
        ex.due = -1
    ep.emit(ev)


def _fail(ep, ex, msg, reason):
    _finish(ep, ex)
    if ex.parent is None:
        ev = Event(_EV_ERROR, ex.token, ex.addr, msg)
        ev.error = reason
        ep.emit(ev)


def _finish(ep, ex):
    if ep.exchanges.get(ex.token) is ex:
        del ep.exchanges[ex.token]
    ep.forget_tx(ex.tx)
    ex.tx = None
    if ex.child is not None:
        child = ex.child
        ex.child = None
        _finish(ep, child)
    if ex.parent is not None and ex.parent.child is ex:
        ex.parent.child = None


# ---- timers ---------------------------------------------------------------------------
def on_give_up(ep, ex):
    """Our CON request was never acknowledged, or the wait for its response is over."""
    ex.tx = None
    if ep.exchanges.get(ex.token) is ex:
        _finish(ep, ex)
        if ex.parent is None:
            ep.emit(Event(_EV_TIMEOUT, ex.token, ex.addr))


def step(ep, now):
    table = ep.exchanges
    for key in table:    # idle turns allocate nothing: no list, and no closure cells
        e = table[key]   # (a comprehension here would make them on every call)
        if 0 <= e.due <= now and e.tx is None:
            for ex in list(table.values()):   # a copy: timing out changes the table
                if 0 <= ex.due <= now and ex.tx is None:
                    on_give_up(ep, ex)
            return

