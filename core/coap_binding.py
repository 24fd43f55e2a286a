"""The CoAP mapping of SPOT on the device (spec section 9.1), sans-I/O.

CoapBinding is the request handler of a core.coap_endpoint.Endpoint:

    POST /s                              a SPOT frame in, the reply frame out (CF_SPOT)
    FETCH /s + Observe 0                 a SUBSCRIBE frame; its NOTIFYs come back as
                                         notifications of that observation
    GET  /.well-known/core               RFC 6690 discovery  } core.coap_rest, imported
    GET|PUT|POST /<service>[/<object>]   the REST view       } on the first such request

Observations (Observe, core.coap_observe) are imported with the first one.

Every request becomes a SPOT frame handed to node.receive(), so checks, access
control and state are exactly the node's; ERROR codes become CoAP codes as spec
section 8 says.

CoapDevice ties a Node, an Endpoint, the binding, an optional OSCORE layer
(core.coap_oscore) and the registration with a bridge (ANNOUNCE POSTed to the
bridge's /s every `lifetime` seconds) together. It is driven like an Endpoint --
receive(datagram, addr, now_ms), step(now_ms), next_timeout(now_ms), events() --
so ports/micropython/coap_loop.CoapLoop runs it as it is.
"""
from .compat import const
from . import coap
from . import frame as F
from .coap_server import Response
from .coap_client import CoapBusy, NOTHING, request_like
from .errors import SpotError

# core.coap's, core.coap_client's, core.errors', core.frame's and core.services' numbers as
# constants of this module: no global slot holds them on a board
_POST = const(2)
_FETCH = const(5)
_CONTENT = const(69)
_CHANGED = const(68)
_BAD_REQUEST = const(128)
_UNAUTHORIZED = const(129)
_NOT_FOUND = const(132)
_METHOD_NOT_ALLOWED = const(133)
_REQUEST_ENTITY_TOO_LARGE = const(141)
_UNSUPPORTED_CONTENT_FORMAT = const(143)
_SERVICE_UNAVAILABLE = const(163)
_EV_RESPONSE = const(1)
_UNSUPPORTED = const(10)
_WRITE = const(2)
_TIME = const(2)
_CON = const(0)
_OSCORE = const(9)
_CONTENT_FORMAT = const(12)
_ECHO = const(252)
# core/frame_numbers' numbers, copied: no global slot holds them on a board
_ERROR = const(9)
_READ = const(1)
_RESULT = const(8)
_SUBSCRIBE = const(4)
_UNSUBSCRIBE = const(5)
_VERSION = const(1)

_MAX_POSTS = const(2)      # CoapDevice's defaults
_MAX_OUTBOX = const(16)

CF_SPOT = const(65000)     # application/spot-frame (experimental range, spec 9.1)
BUS = 's'                  # the bus resource

# spec section 8: the CoAP response code of SPOT error codes 1 to 10, in order (a private
# constant: folded into coap_code's code, no global slot or name)
_CODES = const((
    _NOT_FOUND,                  # 1 unknown-service
    _NOT_FOUND,                  # 2 unknown-object
    _METHOD_NOT_ALLOWED,         # 3 read-only
    _BAD_REQUEST,                # 4 out-of-range
    _BAD_REQUEST,                # 5 wrong-type
    _UNAUTHORIZED,               # 6 not-authorised
    _REQUEST_ENTITY_TOO_LARGE,   # 7 too-large
    _SERVICE_UNAVAILABLE,        # 8 busy
    _BAD_REQUEST,                # 9 malformed
    _METHOD_NOT_ALLOWED,         # 10 unsupported
))


def coap_code(code):
    """CoAP response code for a SPOT error code (4.00 for unknown codes)."""
    if type(code) is int and 0 < code <= len(_CODES):
        return _CODES[code - 1]
    return _BAD_REQUEST


def error_response(code, text):
    """A Response with a diagnostic payload (text or bytes)."""
    return Response(code, text if isinstance(text, bytes) else text.encode())


class CoapBinding:
    """Maps CoAP requests onto node frames; handle(req, peer) is the handler.

    peer is who the node sees (roles, subscriptions): the OSCORE kid when the
    OSCORE layer calls, else the sender's address. `now` is the node's time in
    seconds; the driver sets it before each call.
    """

    def __init__(self, node, endpoint=None):
        self.node = node
        self.ep = endpoint
        self.now = 0
        self.observations = {}   # (addr, token) -> coap_observe.Observation
        self.unrouted = 0        # NOTIFYs no CoAP observation carries
        self._mid = 0
        self._links = None
        self._reply = Response()  # see _frame()

    # ---- requests -----------------------------------------------------------------------

    def handle(self, req, peer=None):
        if peer is None:
            peer = req.addr
        if req.notification:
            from . import coap_observe
            return coap_observe.notification(self, req)
        observe = req.observe
        req.observe = None       # only a registration below turns it back on
        path = req.path
        n = len(path)
        bus = n == 1 and path[0] == BUS
        if observe == 1 and not bus and self.observations:
            from . import coap_observe
            coap_observe.deregister(self, req.addr, req.token, peer)
        if bus:
            return self._bus(req, peer, observe)
        if n == 1 or n == 2:
            try:
                from . import coap_rest
            except ImportError:     # a bundle without the REST view (spot bundle --rest)
                return error_response(_NOT_FOUND, 'only /s')
            if n == 2 and path[0] == '.well-known' and path[1] == 'core':
                return coap_rest.well_known(self, req)
            return coap_rest.rest(self, req, peer, observe)
        return error_response(_NOT_FOUND, 'no such resource')

    # ---- the bus resource ----------------------------------------------------------------

    def _bus(self, req, peer, observe):
        if req.content_format is not None and req.content_format != CF_SPOT:
            return error_response(_UNSUPPORTED_CONTENT_FORMAT,
                                  'SPOT frames only')
        code = req.code
        if code != _POST and code != _FETCH:
            return error_response(_METHOD_NOT_ALLOWED, 'POST or FETCH')
        frame = req.payload
        if not frame:
            return error_response(_BAD_REQUEST, 'no frame')
        mid = F.message_id(frame)
        if mid is None or frame[0] >> 4 != _VERSION:
            op = 0   # not a request this view treats specially: the node decides
        else:
            op = frame[0] & 0x0F
        if code == _POST:
            if op == _SUBSCRIBE:
                return self._frame(F.error(frame[1], mid, _UNSUPPORTED,
                                           'SUBSCRIBE needs FETCH with Observe'), _CHANGED)
            return self._frame(self.node.receive(frame, self.now, peer), _CHANGED)
        if op == _SUBSCRIBE and observe == 0:
            from . import coap_observe
            return coap_observe.observe_bus(self, req, peer, frame, frame[1], mid)
        if op == _SUBSCRIBE and observe == 1:
            obs = self.observations.get((req.addr, req.token))
            if obs is not None and (obs.peer, obs.sid, obs.mid) == (peer, frame[1], mid):
                from . import coap_observe
                coap_observe.drop(self, obs)
            return self._frame(self.node.receive(
                F.encode(_UNSUBSCRIBE, frame[1], mid, mid), self.now, peer), _CONTENT)
        if op == _READ and observe is None:
            return self._frame(self.node.receive(frame, self.now, peer), _CONTENT)
        if mid is None:
            return error_response(_BAD_REQUEST, 'short frame')
        return self._frame(F.error(frame[1], mid, _UNSUPPORTED,
                                   'FETCH takes READ or SUBSCRIBE'), _CONTENT)

    def _frame(self, reply, code):
        # the answer of the bus, in one reused Response: the server encodes it at once
        # (and copies one it must keep), so a request makes no Response of its own
        r = self._reply
        r.code = code      # the request's answer, unless the reply is an ERROR frame
        r.payload = reply or b''
        r.content_format = None if reply is None else CF_SPOT
        if reply is not None and reply[0] & 0x0F == _ERROR:
            try:
                r.code = coap_code(F.decode(reply, len(reply))[3][0])
            except (SpotError, TypeError, IndexError, KeyError):
                r.code = _BAD_REQUEST
        return r

    # ---- observations (core.coap_observe, imported with the first) ---------------------

    def notify(self, peer, frame):
        """Send one NOTIFY frame of node.step() as the notification of its observation."""
        if self.observations:
            from . import coap_observe
            coap_observe.notify_frame(self, peer, frame)
        else:
            self.unrouted += 1

    def sweep(self):
        """Keep observations, endpoint observers and node subscriptions in step.

        An observation whose observer is gone (Reset, Observe 1, CON timeout,
        replaced) loses its subscription; one whose subscription was ended by an
        UNSUBSCRIBE gets a final 4.04 notification.
        """
        if self.ep is not None and self.observations:
            from . import coap_observe
            coap_observe.sweep(self)


class CoapDevice:
    """A node served over CoAP: binding, OSCORE (optional) and bridge registration.

    endpoint: a core.coap_endpoint.Endpoint (its handler is set here).
    bridge_addr: where to POST the ANNOUNCE (None: no registration).
    oscore: a core.coap_oscore.OscoreServer; bridge_kid picks its context for
      the registration (None: register without OSCORE).
    lifetime: seconds between registrations; retry: first delay after a failure
      (doubling up to lifetime).
    Notifications nobody subscribed to (node.report(), peer None: telemetry,
    alarms) are POSTed to the bridge's /s as confirmable requests, at most
    `max_posts` at a time; the rest wait in an outbox of `max_outbox` frames
    (the oldest is dropped, and counted, when it overflows). A frame leaves
    the outbox only when the bridge answered it: 2.xx once it is stored, or
    4.00 / 4.13 refusing the frame itself (counted in `dropped`).
    """

    # What a board leaves at its default, or changes only on a rare path, is a class
    # attribute (on MicroPython, where __slots__ does nothing, an instance's attributes
    # are a hash table: 23 entries fit one of 23 slots, 28 take 29)
    max_posts = _MAX_POSTS
    max_outbox = _MAX_OUTBOX
    dropped = 0        # telemetry frames lost: a full outbox, or refused (4.00, 4.13)
    _echo = None       # Echo value (RFC 9175) the next registration repeats
    _binds = None      # token -> OSCORE binding of a protected POST to the bridge

    def __init__(self, node, endpoint, bridge_addr=None, oscore=None, bridge_kid=None,
                 lifetime=300, retry=15, max_events=16, max_posts=_MAX_POSTS,
                 max_outbox=_MAX_OUTBOX, node_clock=None):
        self.node = node
        self.ep = endpoint
        self.binding = CoapBinding(node, endpoint)
        self.oscore = oscore
        if oscore is not None:
            self._binds = {}
            oscore.handler = self.binding.handle
            extra = dict(endpoint.extra_options or {})
            extra[_OSCORE] = (0, 255, False)
            endpoint.extra_options = extra
            endpoint.handler = oscore
        else:
            endpoint.handler = self.binding.handle
        self.max_datagram = endpoint.max_datagram   # driven like an Endpoint (CoapLoop)
        self.bridge = bridge_addr
        self.bridge_ctx = None if oscore is None or bridge_kid is None \
            else oscore.context(bridge_kid)
        self.lifetime = lifetime
        self.retry = retry
        self.registered = False
        self.registrations = 0     # RESULTs received for our ANNOUNCE
        self.max_events = max_events
        self._events = []
        self._delay = retry
        self._reg_due = None if bridge_addr is None else 0
        self._reg = None           # (token, mid, sent with an Echo, bridge peer): open registration
        self._reg_mid = 0
        # the node's clock in seconds from the endpoint's milliseconds (a simulator
        # runs its nodes on simulated Unix time)
        self.node_clock = node_clock or (lambda now_ms: now_ms // 1000)
        if max_posts != _MAX_POSTS:
            self.max_posts = max_posts
        if max_outbox != _MAX_OUTBOX:
            self.max_outbox = max_outbox
        self.outbox = []           # telemetry frames not yet answered by the bridge
        self.posted = {}           # token -> frame being POSTed
        self._emit = self._notified   # bound once: step() hands it to node.step()
        self._post_template = coap.set_uri(coap.CoapMessage(_CON, _POST), BUS).add(
            _CONTENT_FORMAT, CF_SPOT)     # of every plain POST of a frame to the bridge

    # ---- driven like an Endpoint (times in ms) ---------------------------------------------

    def receive(self, data, addr, now):
        self.binding.now = self.node_clock(now)
        out = self.ep.receive(data, addr, now)
        self._client_events(now)
        self._sweep()
        return out

    def send_telemetry(self, frames):
        """Queue NOTIFY frames for the bridge (a firmware or simulator stepping the node
        itself): the oldest is dropped, and counted, when the outbox is full."""
        for f in frames:
            if len(self.outbox) >= self.max_outbox:
                self.outbox.pop(0)
                self.dropped += 1
            self.outbox.append(f)

    def send_notifications(self, frames):
        """Send the (peer, NOTIFY frame) pairs of a node.step() the caller ran itself:
        those for nobody to the bridge as telemetry, the others on their observation."""
        for peer, frame in frames:
            self._notified(peer, frame)

    def step(self, now):
        now_s = self.node_clock(now)
        self.binding.now = now_s
        self.node.step(now_s, self._emit)
        self._sweep()
        self._post_outbox()
        if self._reg_due is not None and now >= self._reg_due:
            # the ANNOUNCE (registration) is due
            self._reg_mid = (self._reg_mid + 1) & 0xFFFF
            echo = self._echo
            if echo is not None:
                self._echo = None
            # the bridge's requests come from its OSCORE kid, else its address
            peer = self.bridge if self.bridge_ctx is None else self.bridge_ctx.recipient_id
            try:
                token, _ = self._post(self.node.announce(self._reg_mid, peer), echo)
            except CoapBusy:   # too many exchanges; OSCORE numbers exhausted
                self._failed(now)
            else:
                self._reg = (token, self._reg_mid, echo is not None, peer)
                self._reg_due = None
        out = self.ep.step(now)
        self._client_events(now)
        return out

    def next_timeout(self, now):
        best = self.ep.next_timeout(now)
        d = self.node.next_deadline(self.node_clock(now))
        if d is not None:
            t = max(0, int(d * 1000))
            best = t if best is None or t < best else best
        if self._reg_due is not None:
            t = max(0, self._reg_due - now)
            best = t if best is None or t < best else best
        return best

    def events(self):
        """Client events not consumed by the registration (an empty result is shared)."""
        evs = self._events
        if not evs:
            return NOTHING
        self._events = []
        return evs

    def register_now(self):
        """Send the ANNOUNCE at the next step()."""
        if self.bridge is not None and self._reg is None:
            self._reg_due = 0

    # ---- internals -------------------------------------------------------------------------

    def _notified(self, peer, frame):
        # node.step()'s notifications: those for nobody (telemetry, alarms) to the bridge
        if peer is None and self.bridge is not None:
            self.send_telemetry((frame,))
        else:
            self.binding.notify(peer, frame)

    def _sweep(self):
        self.binding.sweep()
        if self.oscore is not None and self.oscore.observations:
            self.oscore.prune([(o.addr, o.token) for o in self.ep.observers.values()])

    def _post(self, frame, echo=None):
        """POST frame to the bridge's /s, repeating the bridge's Echo value if given;
        (token, OSCORE binding). Protected with the bridge context if set
        (core.coap_oscore.post_protected, imported only then). Raises CoapBusy."""
        if self.bridge_ctx is not None:
            from . import coap_oscore
            return coap_oscore.post_protected(self, frame, echo)
        if echo is None:    # the usual POST: one template
            return request_like(self.ep, self.bridge, self._post_template, frame), None
        return self.ep.request(self.bridge, _POST, BUS, frame, content_format=CF_SPOT,
                               options=[(_ECHO, echo)]), None

    def _post_outbox(self):
        """POST waiting telemetry while registered and a slot is free (oldest first)."""
        # (no list of the posted frames, no generator: a notification turn allocates little)
        posted = self.posted
        for f in self.outbox:
            if not self.registered or len(posted) >= self.max_posts:
                return
            for token in posted:
                if posted[token] is f:   # this very frame (not an equal one) is posted
                    break
            else:
                try:
                    token, _ = self._post(f)
                except CoapBusy:
                    return
                posted[token] = f

    def _client_events(self, now):
        for ev in self.ep.events():
            bind = self._binds.pop(ev.token, None) if self._binds else None
            reg = self._reg
            if reg is not None and ev.token == reg[0]:
                self._reg = None
                self._answer(self._outcome(ev, bind), reg, now)
            elif ev.token in self.posted:
                frame = self.posted.pop(ev.token)
                got = self._outcome(ev, bind)
                code = -1 if got is None else got[0]     # -1: no answer (the else below)
                if (code >> 5 == 2 or code == _BAD_REQUEST
                        or code == _REQUEST_ENTITY_TOO_LARGE):
                    if code >> 5 != 2:    # refused for what it says: sending it again
                        self.dropped += 1     # cannot succeed (spec 9.1), so it is dropped
                    outbox = self.outbox      # stored by the bridge, or dropped: it leaves
                    for i in range(len(outbox)):   # in place: no new list per answer
                        if outbox[i] is frame:
                            outbox.pop(i)
                            break
                else:   # no answer or refused: register again, resend then
                    self._refused(got, False, now)
            elif len(self._events) < self.max_events:
                self._events.append(ev)

    def _outcome(self, event, bind):
        """(code, options, payload) of the bridge's answer, the inner ones when it is
        protected; None for no answer, or one that does not verify."""
        if event.kind != _EV_RESPONSE:
            return None
        if self.bridge_ctx is None:
            return event.code, event.msg.options, event.payload
        if bind is None:
            return None
        from . import coap_oscore
        return coap_oscore.answer_protected(self.bridge_ctx, bind, event)

    def _answer(self, got, reg, now):
        if got is None:
            return self._failed(now)
        code, _, payload = got
        head = F.peek(payload) if payload else None
        if (code >> 5 == 2 and head is not None and head[1] == _RESULT
                and F.message_id(payload) == reg[1]):
            if len(payload) > 4:   # the bridge's time (spec 3.1), taken as its WRITE of it
                self.node.receive(bytes((payload[0] & 0xF0 | _WRITE, _TIME)) + payload[2:],
                                  self.node_clock(now), reg[3])
            self.registered = True
            self.registrations += 1
            self._delay = self.retry
            self._reg_due = now + self.lifetime * 1000
            self._post_outbox()   # what waited for the registration goes now
        else:
            self._refused(got, reg[2], now)

    def _refused(self, got, echoed, now):
        """The bridge refused a POST or never answered: register again after the back-off,
        or at once repeating the Echo of a 4.01 (RFC 9175: a bridge that lost its replay
        state asks for it) unless this very request already carried one."""
        echo = None
        if got is not None and got[0] == _UNAUTHORIZED and not echoed:
            for number, value in got[1]:
                if number == _ECHO:
                    echo = value
        if echo is None:
            return self._failed(now)
        self.registered = False
        if self._reg is None:   # an open registration will be answered as it is
            self._echo = echo
            self._reg_due = now

    def _failed(self, now):
        self.registered = False
        self._reg_due = now + self._delay * 1000
        self._delay = min(self._delay * 2, self.lifetime)
