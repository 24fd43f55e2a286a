"""The REST view and discovery of the CoAP mapping on the device (spec section 9.1).

Requests other than the bus resource /s, served for core.coap_binding.CoapBinding,
which imports this module on the first such request (a device that only speaks the
bus never loads it):

    GET  /.well-known/core               RFC 6690 links: the bus and one per object
    GET|PUT|POST /<service>/<object>     READ | WRITE | INVOKE, CBOR bodies (ct 60)
    GET /<service>/<object> + Observe 0  SUBSCRIBE, attributes from the query
                                         (pmin, pmax, st, gt, lt) as in LwM2M
    GET  /<service>                      READ of every readable object (a CBOR map)

Segments are names (heat_pump/flow_setpoint) or decimal ids (16/7). Every request
becomes a SPOT frame handed to node.receive(); its ERROR becomes a CoAP code.
"""
from .compat import const
from . import cbor
from . import frame as F
from . import model
from .coap import (GET, POST, PUT, CONTENT, CHANGED, BAD_REQUEST, NOT_FOUND,
                   METHOD_NOT_ALLOWED, NOT_ACCEPTABLE, UNSUPPORTED_CONTENT_FORMAT, CF_CBOR,
                   CF_LINK_FORMAT)
from .coap_server import Response
from .coap_binding import BUS, CF_SPOT, coap_code, error_response
from .coap_observe import Observation, forget, observing
from . import errors as E
from .errors import SpotError
from .subscriptions import PMIN, PMAX, ST, GT, LT

SUB_MID_TOP = const(0xFFFF)  # REST observations take subscription ids from here down

QUERY_ATTRS = {'pmin': PMIN, 'pmax': PMAX, 'st': ST, 'gt': GT, 'lt': LT}


def diagnostic(code, detail=None):
    """Diagnostic payload text of an ERROR: 'out-of-range 7', 'malformed truncated'."""
    text = E.name(code)
    if detail is not None:
        text += ' ' + str(detail)
    return text.encode()


def parse_query(query):
    """SUBSCRIBE attribute map {key: number} from query items like 'pmin=10'.

    pmin/pmax take unsigned integers, st/gt/lt any finite number; other items are
    ignored (newer attributes). Raises SpotError(MALFORMED).
    """
    attrs = {}
    for item in query:
        i = item.find('=')
        key = QUERY_ATTRS.get(item[:i]) if i > 0 else None
        if key is None:
            continue
        text = item[i + 1:]
        try:
            if key <= PMAX:
                if not text.isdigit():
                    raise ValueError
                v = int(text)
            else:
                try:
                    v = int(text)
                except ValueError:
                    v = float(text)
                    if v != v or v in (float('inf'), float('-inf')):
                        raise ValueError
        except ValueError:
            raise SpotError(E.MALFORMED, item[:i])
        attrs[key] = v
    return attrs


# ---- REST view ------------------------------------------------------------------------

def _ask(b, op, sid, body, peer):
    """Send one request frame through the binding's node; (op, body) of its reply."""
    b._mid = (b._mid + 1) & 0xFFFF
    try:
        frame = F.encode(op, sid, b._mid, body)
    except (ValueError, TypeError, OverflowError):
        return F.ERROR, [E.MALFORMED, 'not encodable']
    reply = b.node.receive(frame, b.now, peer)
    if reply is None:
        return F.ERROR, [E.UNSUPPORTED]
    op, _, _, body = F.decode(reply, len(reply))
    return op, body


def _spot_error(b, sid, body):
    code = body[0] if type(body) is list and body else E.MALFORMED
    detail = body[1] if type(body) is list and len(body) > 1 else None
    svc = b.node.services.get(sid)
    if type(detail) is int and svc is not None and detail in svc.by_id:
        detail = svc.by_id[detail][model.NAME]
    return Response(coap_code(code), diagnostic(code, detail))


def _service_id(services, seg):
    if seg.isdigit():
        sid = int(seg)
        return sid if sid <= 0xFE else None
    for sid in services:
        if services[sid].name == seg:
            return sid
    return None


def rest(b, req, peer, observe):
    """Answer a request to /<service> or /<service>/<object> of binding b."""
    services = b.node.services
    sid = _service_id(services, req.path[0])
    if sid is None:
        return error_response(NOT_FOUND, diagnostic(E.UNKNOWN_SERVICE, req.path[0]))
    if req.accept is not None and req.accept != CF_CBOR:
        return error_response(NOT_ACCEPTABLE, 'CBOR only (60)')
    code = req.code
    if len(req.path) == 1:
        if code != GET:
            return error_response(METHOD_NOT_ALLOWED, 'GET only')
        op, body = _ask(b, F.READ, sid, None, peer)
        if op != F.RESULT:
            return _spot_error(b, sid, body)
        return Response(CONTENT, cbor.dumps(body), CF_CBOR)
    seg = req.path[1]
    svc = services.get(sid)
    if seg.isdigit():
        oid = int(seg)
    elif svc is not None and seg in svc.by_name:
        oid = svc.by_name[seg][model.ID]
    else:
        return error_response(NOT_FOUND, diagnostic(E.UNKNOWN_OBJECT, seg))
    if code == GET:
        if observe == 0:
            return _observe_object(b, req, peer, sid, oid)
        op, body = _ask(b, F.READ, sid, [oid], peer)
        if op != F.RESULT:
            return _spot_error(b, sid, body)
        return Response(CONTENT, cbor.dumps(body.get(oid)), CF_CBOR)
    if code != PUT and code != POST:
        return error_response(METHOD_NOT_ALLOWED, 'GET, PUT or POST')
    if req.content_format is not None and req.content_format != CF_CBOR:
        return error_response(UNSUPPORTED_CONTENT_FORMAT, 'CBOR only (60)')
    if req.payload:
        try:
            value = cbor.loads(req.payload)
        except cbor.CBORError as e:
            return Response(BAD_REQUEST, diagnostic(E.MALFORMED, str(e)))
    elif code == PUT:
        return Response(BAD_REQUEST, diagnostic(E.MALFORMED, 'no value'))
    if code == PUT:
        op, body = _ask(b, F.WRITE, sid, {oid: value}, peer)
        if op != F.RESULT:
            return _spot_error(b, sid, body)
        return Response(CHANGED)
    op, body = _ask(b, F.INVOKE, sid, [oid, value] if req.payload else [oid], peer)
    if op != F.RESULT:
        return _spot_error(b, sid, body)
    if body is None:
        return Response(CHANGED)
    return Response(CHANGED, cbor.dumps(body), CF_CBOR)


def _observe_object(b, req, peer, sid, oid):
    try:
        attrs = parse_query(req.query)
    except SpotError as e:
        return Response(BAD_REQUEST, diagnostic(e.code, e.detail))
    key = (req.addr, req.token)
    old = b.observations.get(key)
    mid = None
    if old is not None:
        if old.peer == peer and old.sid == sid and old.oid is not None:
            mid = old.mid    # the same token again: renew the subscription
        else:
            forget(b, old)
    if mid is None:
        mid = _free_mid(b.node, peer, sid)
    reply = b.node.receive(F.encode(F.SUBSCRIBE, sid, mid, {oid: attrs}), b.now, peer)
    op, _, _, body = F.decode(reply, len(reply))
    if op != F.RESULT:
        return _spot_error(b, sid, body)
    observing(b, req, Observation(req.addr, req.token, peer, sid, mid, oid, req.path_str()))
    return Response(CONTENT, cbor.dumps(body.get(oid)), CF_CBOR)


def _free_mid(node, peer, sid):
    used = [s[2] for s in node.subs.subs if s[0] == peer and s[1] == sid]
    mid = SUB_MID_TOP
    while mid in used:
        mid -= 1
    return mid


# ---- discovery --------------------------------------------------------------------------

def links(b):
    """[(href, rt, link text)] of /.well-known/core of binding b, built once."""
    if b._links is None:
        out = [('/' + BUS, 'spot.bus', '</%s>;rt="spot.bus";ct=%d' % (BUS, CF_SPOT))]
        services = b.node.services
        for sid in sorted(services):
            svc = services[sid]
            for row in sorted(svc.rows, key=lambda r: r[model.ID]):
                href = '/%s/%s' % (svc.name, row[model.NAME])
                rt = 'spot.' + model.TYPE_NAMES[row[model.TYPE]]
                text = '<%s>;rt="%s";ct=%d' % (href, rt, CF_CBOR)
                if row[model.ACCESS] & model.R:
                    text += ';obs'
                out.append((href, rt, text))
        b._links = out
    return b._links


def well_known(b, req):
    """Answer GET /.well-known/core (RFC 6690), filtered by href= and rt= queries."""
    if req.code != GET:
        return error_response(METHOD_NOT_ALLOWED, 'GET only')
    if req.accept is not None and req.accept != CF_LINK_FORMAT:
        return error_response(NOT_ACCEPTABLE, 'link-format only (40)')
    want_href = want_rt = None
    for q in req.query:
        if q.startswith('href='):
            want_href = q[5:]
        elif q.startswith('rt='):
            want_rt = q[3:]
    parts = []
    for href, rt, text in links(b):
        if _matches(href, want_href) and _matches(rt, want_rt):
            parts.append(text)
    return Response(CONTENT, ','.join(parts).encode(), CF_LINK_FORMAT)


def _matches(value, pattern):
    """RFC 6690 4.1 filter: exact, or a prefix when the pattern ends with '*'."""
    if pattern is None:
        return True
    if pattern.endswith('*'):
        return value.startswith(pattern[:-1])
    return value == pattern
