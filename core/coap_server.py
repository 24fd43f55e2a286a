"""Server side of the sans-I/O CoAP endpoint: requests, blocks (RFC 7959), Observe (RFC 7641).

Functions of a coap_endpoint.Endpoint `ep`, which holds their state (one instance, no
object of this side's own): a request message becomes a Request for the application
handler (ep.handler) and its Response response messages: piggy-backed, separate
(respond()), block-wise, and notifications for registered observers (core.coap_observe,
imported with the first observation; blocks: core.coap_blocks, with the first block).
Used by coap_endpoint.Endpoint, not on their own.
"""
from .compat import const
from . import coap
from .coap import CoapError
from .coap_client import Event, NOTHING

# CoAP numbers (the same as coap's), private so that they fold into the bytecode
_CON = const(0)
_NON = const(1)
_ACK = const(2)
_EMPTY = const(0)
_GET = const(1)
_FETCH = const(5)
_ETAG = const(4)
_OBSERVE = const(6)
_URI_PATH = const(11)
_CONTENT_FORMAT = const(12)
_MAX_AGE = const(14)
_URI_QUERY = const(15)
_ACCEPT = const(17)
_BLOCK2 = const(23)
_BLOCK1 = const(27)
_SIZE2 = const(28)
_PROXY_URI = const(35)
_PROXY_SCHEME = const(39)
_SIZE1 = const(60)
_CONTENT = const(69)
_BAD_REQUEST = const(128)
_BAD_OPTION = const(130)
_NOT_FOUND = const(132)
_METHOD_NOT_ALLOWED = const(133)
_REQUEST_ENTITY_TOO_LARGE = const(141)
_INTERNAL_SERVER_ERROR = const(160)
_EV_ERROR = const(5)      # coap_client.EV_ERROR
_PROXYING_NOT_SUPPORTED = const(165)

_TX_RESPONSE = const(3)  # Transmission kind of this side (as coap_endpoint's)


class Request:
    """What a handler sees: code, path/query segments, payload, formats, observe, peer."""

    # What most requests never change is a class attribute (its default): on MicroPython,
    # where __slots__ does nothing, each instance holds its attributes in a hash table
    # grown one step at a time (core/coap_client.Exchange): 10 entries, not 14 (17 slots)
    accept = None
    notification = False   # True when rendered for an Observe notification
    responded = False
    block1 = None          # (num, more, szx) to echo once a Block1 body is whole

    def __init__(self, msg, addr):
        self.addr = addr
        self.msg = msg
        try:
            path = _strings(msg, _URI_PATH)
            query = _strings(msg, _URI_QUERY)
        except UnicodeError:
            raise CoapError('Uri-Path/Uri-Query not UTF-8', msg.mtype, msg.mid, msg.token,
                            _BAD_REQUEST)
        self.confirmable = msg.mtype == _CON
        self.renew(path, query)

    def renew(self, path, query):
        """Make a Request (new or used) ready for its handler: a notification reuses its
        observer's, with the path and query segments made at the first."""
        msg = self.msg
        self.code = msg.code
        self.token = msg.token
        self.path = path
        self.query = query
        self.payload = msg.payload
        self.content_format = msg.get_uint(_CONTENT_FORMAT)
        accept = msg.get_uint(_ACCEPT)
        if accept is not None or self.accept is not None:
            self.accept = accept
        self.observe = msg.get_uint(_OBSERVE)
        if self.responded:          # a used one: the defaults again
            self.responded = False
        if self.block1 is not None:
            self.block1 = None

    def option(self, number, default=None):
        return self.msg.get(number, default)

    def path_str(self):
        return '/'.join(self.path)

    def uri_key(self):
        if self.query:
            return self.path_str() + '?' + '&'.join(self.query)
        return self.path_str()


class Response:
    """A handler's answer. options: extra (number, value) pairs (value int/str/bytes)."""

    __slots__ = ('code', 'payload', 'content_format', 'max_age', 'etag', 'options')

    def __init__(self, code=_CONTENT, payload=b'', content_format=None, max_age=None,
                 etag=None, options=None):
        self.code = code
        self.payload = payload
        self.content_format = content_format
        self.max_age = max_age
        self.etag = etag
        self.options = options


# ---- requests -----------------------------------------------------------------------
def on_request(ep, msg, addr, now):
    """Handle a new request; returns the ACK datagram for CON (None for NON)."""
    try:
        req = Request(msg, addr)
    except CoapError as err:
        ep.stats['bad'] += 1
        mid = ep.next_mid() if msg.mtype == _NON else None
        reply = coap.error_reply(err, mid)
        if msg.mtype == _NON and reply is not None:
            ep.send(addr, reply)
            return None
        return reply
    resp = _pre_handle(ep, req, msg, now)
    if resp is None:
        resp = _call(ep, req)
        if resp is None:  # separate response later (or piggy-backed: hold_acks)
            if req.confirmable and not ep.hold_acks:
                return coap.encode_message(_ACK, _EMPTY, msg.mid)
            return None
    return _answer(ep, req, resp, now)


def _pre_handle(ep, req, msg, now):
    """Answers the endpoint gives without the handler (errors, blocks), else None."""
    if msg.code > 7:
        return Response(_METHOD_NOT_ALLOWED)
    if msg.get(_PROXY_URI) is not None or msg.get(_PROXY_SCHEME) is not None:
        return Response(_PROXYING_NOT_SUPPORTED)
    if ep.handler is None:
        return Response(_NOT_FOUND)
    b1 = msg.get_block(_BLOCK1)
    if b1 is not None:
        from . import coap_blocks
        resp = coap_blocks.block1(ep, req, (req.addr, req.uri_key()), b1, now)
        if resp is not None:
            return resp
    elif len(msg.payload) > ep.max_body:
        return _too_large(ep)
    b2 = msg.get_block(_BLOCK2)
    if b2 is not None and b2[0] > 0:
        snap = ep._snap.get((req.addr, req.uri_key()))
        if snap is not None and snap[2] == msg.code:
            snap[1] = now
            return snap[0]
    if req.observe == 1 and ep.observers:
        ep.observers.pop((req.addr, req.uri_key()), None)
    return None


def _call(ep, req):
    # the handler's answer (coap_observe's too, for a notification)
    try:
        return ep.handler(req)
    except MemoryError:     # not the handler's fault: the device counts it (and resets)
        raise
    except Exception as e:  # a handler bug must not kill the endpoint
        ev = Event(_EV_ERROR, req.token, req.addr)
        ev.error = e
        ep.emit(ev)
        return Response(_INTERNAL_SERVER_ERROR)


def _too_large(ep):
    return Response(_REQUEST_ENTITY_TOO_LARGE, options=[(_SIZE1, ep.max_body)])


# ---- responses ----------------------------------------------------------------------
def _answer(ep, req, response, now):
    """Encode response for req: the ACK of a CON (the handler's answer, or a later one with
    hold_acks), or queue it as a NON/CON (separate)."""
    seq = None
    if req.observe == 0 and (req.code == _GET or req.code == _FETCH) and not req.notification:
        from . import coap_observe
        seq = coap_observe.answer_seq(ep, req, response, now)
    if req.confirmable and (not req.responded or ep.hold_acks):
        return _datagram(ep, req, response, _ACK, req.msg.mid, seq, now)
    mid = ep.next_mid()
    if req.confirmable:
        data = _datagram(ep, req, response, _CON, mid, seq, now)
        if ep.send_con(req.addr, mid, data, _TX_RESPONSE, None) is not None:
            return None
    ep.send(req.addr, _datagram(ep, req, response, _NON, mid, seq, now))
    return None


def _datagram(ep, req, response, mtype, mid, observe, now):
    """response encoded for req as message mtype/mid, with Observe value `observe` unless None.

    Block2 cuts the payload (RFC 7959; a larger body is kept in a snapshot for the
    next blocks). Without extra options the message is written straight into the
    reused buffer, so the returned bytes are all it allocates."""
    payload = response.payload
    b2 = req.msg.get(_BLOCK2)
    num = 0
    szx = ep.block_szx
    if b2 is not None:
        num, _, theirs = coap.decode_block(b2)
        if req.notification:
            num = 0
        if theirs < szx:
            szx = theirs
        else:
            num = (num << theirs) >> szx  # same offset at our (smaller or equal) size
    size = coap.block_size(szx)
    block2 = size2 = None
    if len(payload) > size or num > 0:
        from . import coap_blocks
        cut = coap_blocks.block2(ep, req, response, num, szx, now)
        if cut is None:
            return coap.encode_message(mtype, _BAD_OPTION, mid, req.token, (),
                                       b'block out of range')
        payload, block2, size2 = cut
    b1 = req.block1
    block1 = None if b1 is None else (b1[0] << 4) | (8 if b1[1] else 0) | b1[2]
    if response.options:   # rare (Size1 of a 4.13): merged and sorted as a list
        opts = [(_ETAG, response.etag), (_OBSERVE, observe),
                (_CONTENT_FORMAT, response.content_format),
                (_MAX_AGE, response.max_age)] + list(response.options) + [
                (_BLOCK2, block2), (_BLOCK1, block1), (_SIZE2, size2)]
        return coap.encode_message(mtype, response.code, mid, req.token,
                                   [o for o in opts if o[1] is not None], payload)
    out = ep._buf
    coap.put_header(out, mtype, response.code, mid, req.token)
    last = coap.put_option(out, 0, _ETAG, response.etag)
    last = coap.put_option(out, last, _OBSERVE, observe)
    last = coap.put_option(out, last, _CONTENT_FORMAT, response.content_format)
    last = coap.put_option(out, last, _MAX_AGE, response.max_age)
    last = coap.put_option(out, last, _BLOCK2, block2)
    last = coap.put_option(out, last, _BLOCK1, block1)
    coap.put_option(out, last, _SIZE2, size2)
    coap.put_payload(out, payload)
    return bytes(out)


def respond(ep, req, response, now):
    if req.responded:
        raise ValueError('request already answered')
    req.responded = True
    return _answer(ep, req, response, now)


# ---- timers ---------------------------------------------------------------------------
def step(ep, now):
    if ep._rx or ep._snap:   # block-wise transfers under way
        from . import coap_blocks
        coap_blocks.expire(ep, now)


def _strings(msg, number):
    """The values of a repeatable option as text (a shared empty list when absent)."""
    out = NOTHING
    for num, value in msg.options:
        if num == number:
            if out is NOTHING:
                out = []
            out.append(bytes(value).decode())
    return out
