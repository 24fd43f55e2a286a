"""SPOT frame decoding on the bridge: cbor2's C decoder where it gives core's answer.

core/frame.py's decode (pure Python, portable) stays the definition. When
cbor2 with its C extension is installed, a frame's body is first decoded by
cbor2 and taken only if core's strict decoder would have returned the same
value, which is checked cheaply and by construction:

- the body re-encoded by cbor2 (keys in the order received, shortest heads)
  is byte-for-byte the body received. That alone sends to core what cbor2
  lets through and core refuses: duplicate map keys (the dict is shorter),
  indefinite lengths, trailing bytes (cbor2 ignores them), tags that cbor2
  turns into plain values (bignums, shared values, self-describe). A frame
  with floats fails it too (cbor2 writes doubles, SPOT the shortest exact
  form) and takes core's path: correct, not faster;
- one walk over the value: only int, bool, None, float, str, bytes, list and
  dict with int/str/bytes keys (so no tag, no simple value, no bignum: cbor2
  turns those into other types), nesting and counts within core's limits.

Anything else, and any cbor2 error, goes to core's decode, which returns its
value or raises its own SpotError (same code, same detail). So the bridge
refuses exactly what a SPOT node refuses, with the same error.

`encode` writes the one body the bridge sends most, a registration's RESULT (one
integer key, one integer value), with cbor2: the same bytes as core's encode
(one key: no order to choose; integers in their shortest head either way).
"""
from ..core import cbor, frame as F

try:
    import cbor2
except ImportError:   # no cbor2: core alone
    cbor2 = None
# its compiled decoder only (cbor2's pure-Python fallback would be slower than core)
if cbor2 is not None and type(cbor2.loads) is type(len) and type(cbor2.dumps) is type(len):
    _c_loads, _c_dumps = cbor2.loads, cbor2.dumps
else:
    _c_loads = _c_dumps = None

_SCALARS = frozenset((int, bool, type(None), float))
_KEYS = frozenset((int, str, bytes))
_STRINGS = frozenset((str, bytes))
_INT = frozenset((int,))


def _plain(v, depth):
    """True if v is a value core's decoder could return within its limits.

    Whole containers of scalars are checked with set(map(type, ...)), at C speed.
    """
    t = type(v)
    if t in _SCALARS:
        return True
    if t is bytes:
        return len(v) <= cbor.MAX_ITEMS
    if t is str:   # core counts a text string's UTF-8 bytes (at most 4 a character)
        return len(v) * 4 <= cbor.MAX_ITEMS or len(v.encode("utf-8")) <= cbor.MAX_ITEMS
    if (t is not list and t is not dict) or depth >= cbor.MAX_DEPTH or len(v) > cbor.MAX_ITEMS:
        return False
    if t is dict:
        keys = set(map(type, v))
        if not keys <= _KEYS or (not keys.isdisjoint(_STRINGS)
                                 and not all(_plain(k, depth + 1) for k in v)):
            return False
        v = v.values()
    if set(map(type, v)) <= _SCALARS:
        return True
    inner = depth + 1 < cbor.MAX_DEPTH   # a container inside may hold scalars
    for x in v:
        t = type(x)
        # what the call below answers True at once, answered here without the call: a
        # scalar, a short string, a list of scalars (an ANNOUNCE's services)
        if t in _SCALARS or (t is str and len(x) * 4 <= cbor.MAX_ITEMS) or (
                t is list and inner and len(x) <= cbor.MAX_ITEMS
                and set(map(type, x)) <= _SCALARS):
            continue
        if not _plain(x, depth + 1):
            return False
    return True


def fast_body(body):
    """The value of CBOR bytes `body` if cbor2 decodes it exactly as core would, else None.

    None means "ask core" (it may still be valid: e.g. floats in their shortest
    form, which cbor2 re-encodes as doubles, or keys out of canonical order).
    """
    if _c_loads is None:
        return None
    try:
        value = _c_loads(body)
        if _c_dumps(value) != body:
            return None
    except Exception:   # any cbor2 error or type it cannot re-encode: core decides
        return None
    if _plain_notify(value):
        return value
    if value is None or not _plain(value, 0):
        return None     # None: a null body is rare; core keeps its reading of it
    return value


def _plain_notify(v):
    """True for the usual telemetry body, [time, {object id: number}], in core's limits
    (the general walk, _plain, says the same of it, a few calls slower)."""
    if type(v) is not list or len(v) != 2 or type(v[0]) is not int:
        return False
    d = v[1]
    return (type(d) is dict and len(d) <= cbor.MAX_ITEMS and set(map(type, d)) <= _INT
            and set(map(type, d.values())) <= _SCALARS)


def decode(frame, max_size=F.MAX_FRAME):
    """(op, service, mid, body) of a frame: core/frame.py's decode, faster on CPython."""
    if F.HEADER_SIZE < len(frame) <= max_size:
        b = frame[0]
        op = b & 0x0F
        if b >> 4 == F.VERSION and 0 < op <= F.ERROR:
            body = fast_body(bytes(frame[F.HEADER_SIZE:]))
            if body is not None:
                return op, frame[1], (frame[2] << 8) | frame[3], body
    return F.decode(frame, max_size)


def encode(op, service, mid, body=None):
    """core/frame.py's encode (the same bytes); a body of one integer pair by cbor2."""
    if _c_dumps is not None and type(body) is dict and len(body) == 1:
        for k, v in body.items():
            if type(k) is int and type(v) is int and -_WORD <= k < _WORD \
                    and -_WORD <= v < _WORD:
                return bytes(((F.VERSION << 4) | op, service, (mid >> 8) & 0xFF,
                              mid & 0xFF)) + _c_dumps(body)
    return F.encode(op, service, mid, body)


_WORD = 1 << 64   # CBOR's integer heads: beyond them cbor2 writes bignums, core refuses
