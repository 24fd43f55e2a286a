"""Block-wise transfers (RFC 7959) on the server side of the CoAP endpoint, imported with
the first block: a request body arriving in Block1 blocks is reassembled, a response body
larger than a block is cut into Block2 blocks (kept in a snapshot for the next ones), and
both tables drop what lies idle. Functions of core.coap_endpoint.Endpoint `s`, which keeps
the tables (empty until then) and calls in here only when a request carries a Block1
option, a response needs cutting or a table holds something: a device's frames fit one
datagram, so a board usually holds none of this code's functions in its heap.
"""
from .compat import const
from .coap import block_size
from .coap_server import Response, _too_large

_SIZE1 = const(60)
_CONTINUE = const(95)
_BAD_REQUEST = const(128)
_REQUEST_ENTITY_INCOMPLETE = const(136)
_BUFFER_LIFETIME_MS = const(60000)       # idle Block1 reassembly / Block2 snapshot kept


def block1(s, req, key, b1, now):
    """A request with Block1 (num, more, szx) b1: the answer the endpoint gives itself
    (2.31 Continue, or an error), or None once the body is whole (req.payload)."""
    num, more, szx = b1
    size = block_size(szx)
    payload = req.payload
    entry = s._rx.get(key)
    if num == 0:
        size1 = req.msg.get_uint(_SIZE1)
        if size1 is not None and size1 > s.max_body:
            s._rx.pop(key, None)
            return _too_large(s)
        entry = None
    elif entry is None or entry[2] != req.code or len(entry[0]) != num * size:
        s._rx.pop(key, None)
        return Response(_REQUEST_ENTITY_INCOMPLETE)
    if more and len(payload) != size:
        s._rx.pop(key, None)
        return Response(_BAD_REQUEST, b'Block1 payload size mismatch')
    have = len(entry[0]) if entry is not None else 0
    if have + len(payload) > s.max_body:
        s._rx.pop(key, None)
        return _too_large(s)
    if not more:
        if entry is not None:
            entry[0] += payload
            req.payload = bytes(entry[0])
            del s._rx[key]
        req.block1 = (num, False, szx)
        return None
    if entry is None:
        entry = [bytearray(), now, req.code]
        _store(s._rx, key, entry, s.max_buffers)
    entry[0] += payload
    entry[1] = now
    req.block1 = (num, True, min(szx, s.block_szx))
    return Response(_CONTINUE)


def block2(s, req, resp, num, szx, now):
    """Block num (size exponent szx) of resp's body for req: (its bytes, the Block2
    option's value, Size2 or None); None when the body ends before it. A body with more
    blocks is kept for the next requests (a copy of resp: the handler may reuse its own)."""
    payload = resp.payload
    size = block_size(szx)
    start = num * size
    if start >= len(payload):
        return None
    more = start + size < len(payload)
    key = (req.addr, req.uri_key())
    if more:
        snap = s._snap.get(key)
        if snap is None or snap[0].payload is not resp.payload:
            snap = Response(resp.code, resp.payload, resp.content_format, resp.max_age,
                            resp.etag, resp.options)
            _store(s._snap, key, [snap, now, req.code], s.max_buffers)
    else:
        s._snap.pop(key, None)
    return (payload[start:start + size], (num << 4) | (8 if more else 0) | szx,
            len(payload) if num == 0 else None)


def expire(s, now):
    """Drop reassemblies and snapshots idle for longer than _BUFFER_LIFETIME_MS."""
    _expire(s._rx, now)
    _expire(s._snap, now)


def _expire(table, now):
    # drop entries [.., last use ms] older than _BUFFER_LIFETIME_MS; turns allocate
    # nothing: no list, and no closure cells (a comprehension here makes them per call)
    for k in table:
        if now - table[k][1] > _BUFFER_LIFETIME_MS:
            _drop_old(table, now)
            return


def _drop_old(table, now):
    for key in [k for k in table if now - table[k][1] > _BUFFER_LIFETIME_MS]:
        del table[key]


def _store(table, key, entry, cap):
    """Insert into a capped table, evicting the least recently used entry."""
    if key not in table and len(table) >= cap:
        oldest = None
        for k, v in table.items():
            if oldest is None or v[1] < table[oldest][1]:
                oldest = k
        del table[oldest]
    table[key] = entry
