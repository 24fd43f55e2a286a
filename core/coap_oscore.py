"""OSCORE (RFC 8613) between a sans-I/O CoAP Endpoint and a request handler, device side.

OscoreServer is the Endpoint's handler. A request carrying the OSCORE option is
verified with the context whose Recipient ID is its kid (core.oscore.find_context,
unprotect_request: replay window, AEAD), rebuilt as the inner request and given to
`handler(inner_request, kid)` -- the kid is the peer identity the node authorises,
so roster roles apply. The inner response is protected and answered as 2.04 (2.05
for Observe). OSCORE failures are answered unprotected with the code core.oscore
gives (4.02 malformed option, 4.01 unknown kid or replay, 4.00 decryption failed);
a plain request gets 4.01 when `require` is set. Observe notifications are
protected again at each send, each with its own Partial IV.

The endpoint must accept the OSCORE option: Endpoint(extra_options=OPTION_FORMAT)
(CoapDevice sets it). protect_request()/unprotect_response() are the client side
for a device's own requests; post_protected()/answer_protected() are CoapDevice's
(its registration and telemetry POSTed to the bridge), here so that a board without
OSCORE holds none of it. Portable, no I/O.
"""
from . import coap
from .coap import (CoapMessage, CoapError, OSCORE, OBSERVE, URI_PATH, CONTENT_FORMAT,
                   MAX_AGE, ETAG, UNAUTHORIZED, BAD_REQUEST, INTERNAL_SERVER_ERROR,
                   POST, ECHO, encode_uint)
from .coap_client import CoapBusy
from .coap_server import Request, Response
from .oscore import OscoreError, find_context

OPTION_FORMAT = {OSCORE: (0, 255, False)}


def _bytes(value):
    if isinstance(value, int):
        return encode_uint(value)
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


class OscoreServer:
    """The OSCORE layer: contexts (one per paired peer), handler(req, kid) inside.

    require: refuse plain requests with 4.01 (otherwise they reach the handler
    with peer None, i.e. their address). max_observations bounds the protected
    observations kept (context, request binding, inner request per token).
    """

    def __init__(self, contexts, handler=None, require=True, max_observations=8):
        self.contexts = list(contexts)
        self.handler = handler
        self.require = require
        self.max_observations = max_observations
        self.observations = {}   # (addr, token) -> (context, binding, inner Request)
        self.rejected = 0        # requests refused by this layer

    def context(self, kid):
        """The context of the peer with Recipient ID `kid`."""
        for ctx in self.contexts:
            if ctx.recipient_id == kid:
                return ctx
        raise KeyError(kid)

    def __call__(self, req):
        if req.notification:
            return self._notification(req)
        value = req.option(OSCORE)
        observe = req.observe
        req.observe = None   # only an authenticated inner registration may observe
        if value is None:
            if self.require:
                self.rejected += 1
                return Response(UNAUTHORIZED, b'OSCORE required')
            req.observe = observe
            return self.handler(req, None)
        try:
            ctx = find_context(self.contexts, value)
            code, options, payload, binding = ctx.unprotect_request(value, req.payload)
        except OscoreError as e:
            self.rejected += 1
            return Response(e.code, e.reason.encode())
        msg = CoapMessage(req.msg.mtype, code, req.msg.mid, req.token, options, payload)
        try:
            inner = Request(msg, req.addr)
        except CoapError as e:
            return self._protect(ctx, binding, Response(BAD_REQUEST, e.reason.encode()), False)
        key = (req.addr, req.token)
        self.observations.pop(key, None)
        resp = self.handler(inner, ctx.recipient_id)
        if resp is None:   # separate responses are not offered through OSCORE
            resp = Response(INTERNAL_SERVER_ERROR)
        registered = inner.observe == 0 and resp.code >> 5 == 2
        if registered and len(self.observations) < self.max_observations:
            # the endpoint keys the observer by the inner resource, hidden on the wire
            req.observe = 0
            req.path = inner.path
            req.query = inner.query
            self.observations[key] = (ctx, binding, inner)
        else:
            registered = False
        return self._protect(ctx, binding, resp, registered)

    def _notification(self, req):
        key = (req.addr, req.token)
        entry = self.observations.get(key)
        if entry is None:
            return None
        ctx, binding, inner = entry
        inner.notification = True
        resp = self.handler(inner, ctx.recipient_id)
        if resp is None:
            return None
        ok = resp.code >> 5 == 2
        if not ok:
            del self.observations[key]
        return self._protect(ctx, binding, resp, ok, True)

    def _protect(self, ctx, binding, resp, observe, new_piv=None):
        """The outer Response of an inner one; Observe responses get a Partial IV."""
        opts = []
        if observe:
            opts.append((OBSERVE, b''))
        if resp.etag is not None:
            opts.append((ETAG, _bytes(resp.etag)))
        if resp.content_format is not None:
            opts.append((CONTENT_FORMAT, encode_uint(resp.content_format)))
        if resp.max_age is not None:
            opts.append((MAX_AGE, encode_uint(resp.max_age)))
        if resp.options:
            for num, v in resp.options:
                opts.append((num, _bytes(v)))
        try:
            code, option, ciphertext = ctx.protect_response(
                binding, resp.code, opts, resp.payload,
                new_piv=observe if new_piv is None else new_piv)
        except OscoreError as e:
            return Response(e.code, e.reason.encode())
        return Response(code, ciphertext, options=[(OSCORE, option)])

    def prune(self, live):
        """Forget protected observations whose (addr, token) is not in `live`."""
        for key in [k for k in self.observations if k not in live]:
            del self.observations[key]


def protect_request(ctx, code, path, payload=b'', content_format=None, observe=None):
    """A protected request for Endpoint.request(addr, outer_code, '', ciphertext,
    options=outer_options): returns (outer_code, outer_options, ciphertext, binding)."""
    options = [(URI_PATH, seg.encode()) for seg in coap.split_path(path)]
    if content_format is not None:
        options.append((CONTENT_FORMAT, encode_uint(content_format)))
    if observe is not None:
        options.append((OBSERVE, encode_uint(observe)))
    outer_code, option, ciphertext, binding = ctx.protect_request(code, options, payload)
    outer = [(OSCORE, option)]
    if observe is not None:
        outer.append((OBSERVE, encode_uint(observe)))
    return outer_code, outer, ciphertext, binding


def unprotect_response(ctx, binding, msg, payload=None):
    """(code, options, payload) of a protected response message; raises OscoreError.
    payload: the reassembled body when it differs from msg.payload (Block2)."""
    value = msg.get(OSCORE)
    if value is None:
        raise OscoreError(UNAUTHORIZED, 'Response not protected')
    return ctx.unprotect_response(binding, value, msg.payload if payload is None else payload)


def post_protected(dev, frame, echo=None):
    """A core.coap_binding.CoapDevice's POST of frame to its bridge's /s, protected with
    its bridge context (the bridge's Echo value repeated inside if given): (token,
    binding), the binding kept in dev._binds for the answer. Raises CoapBusy when
    the endpoint's exchanges are full, or when the context can protect no more (its
    sender sequence numbers exhausted): either way the POST cannot go now."""
    inner = list(dev._post_template.options)    # Uri-Path s, Content-Format
    if echo is not None:
        inner.append((ECHO, echo))
    try:
        code, option, payload, binding = dev.bridge_ctx.protect_request(POST, inner, frame)
    except OscoreError as e:
        raise CoapBusy(e.reason)
    token = dev.ep.request(dev.bridge, code, '', payload, options=[(OSCORE, option)])
    dev._binds[token] = binding
    return token, binding


def answer_protected(ctx, binding, event):
    """(code, options, payload) inside the bridge's answer to post_protected(), or None
    when it does not verify."""
    try:
        return unprotect_response(ctx, binding, event.msg, event.payload)
    except OscoreError:
        return None
