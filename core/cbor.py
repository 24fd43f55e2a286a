"""Deterministic CBOR (RFC 8949) for the types SPOT uses.

Encoding is byte-identical to cbor2's canonical output: shortest heads, map
keys ordered length-first then bytewise, floats in the shortest of half,
single or double precision that keeps the value exactly, NaN as f97e00.
Decoding is strict and bounded: definite lengths only, no tags, no simple
values but false/true/null, no duplicate map keys, limits on nesting depth and
on item counts, and every problem raises CBORError (never another exception,
never a hang).

Types: int (64-bit range), bool, None, float, str, bytes (bytearray and
memoryview encode as bytes), list/tuple (encode as arrays, decode as lists),
dict with int, str or bytes keys.
"""
from .compat import const

MAX_DEPTH = const(16)  # default nesting limit for decoding
MAX_ITEMS = const(4096)  # default limit on one string's bytes or one container's items

_UINT64_MAX = const(0xFFFFFFFFFFFFFFFF)
_float = None   # core.cbor_float, imported with the first float (_floats())


class CBORError(ValueError):
    """Malformed, truncated, unsupported or over-limit CBOR (or an unencodable value)."""


# MicroPython's bytes.decode() checks only the shape of UTF-8 sequences: it lets
# surrogates, overlong forms and code points past U+10FFFF through. Probe for
# that once; on such a runtime non-ASCII text strings get the strict check of
# core.cbor_utf8 (imported with the first one).
try:
    b"\xed\xa0\x80".decode("utf-8")
    _LAX_UTF8 = True
except UnicodeError:
    _LAX_UTF8 = False


def _floats():
    # a board's values are integers: the float code is loaded only when one comes, and
    # kept here so that the bridge (CPython) does not look the module up per float
    global _float
    if _float is None:
        from . import cbor_float
        _float = cbor_float
    return _float


# ---------------------------------------------------------------- encoding


def _head(out, major, n):
    mt = major << 5
    if n < 24:
        out.append(mt | n)
        return
    if n < 0x100:
        out.append(mt | 24)
        size = 1
    elif n < 0x10000:
        out.append(mt | 25)
        size = 2
    elif n < 0x100000000:
        out.append(mt | 26)
        size = 4
    elif n <= _UINT64_MAX:
        out.append(mt | 27)
        size = 8
    else:
        raise CBORError("integer out of 64-bit range")
    shift = (size - 1) * 8
    while shift >= 0:   # big-endian, byte by byte: no intermediate bytes object
        out.append((n >> shift) & 0xFF)
        shift -= 8


def _map(out, obj):
    small = len(obj) <= 16
    for k in obj:
        if type(k) is not int or k < 0:
            break
    else:
        if small:   # ascending keys picked in place: no list to sort
            last = -1
            for _ in range(len(obj)):
                k = None
                for c in obj:
                    if c > last and (k is None or c < k):
                        k = c
                _head(out, 0, k)
                encode_into(out, obj[k])
                last = k
            return
        keys = sorted(obj)  # numeric order is length-first bytewise order here
        for k in keys:
            _head(out, 0, k)
            encode_into(out, obj[k])
        return
    pairs = []
    for k in obj:
        if type(k) not in (int, str, bytes):
            raise CBORError("map key must be int, str or bytes")
        kb = bytearray()
        encode_into(kb, k)
        pairs.append((len(kb), bytes(kb), k))
    pairs.sort()
    for _, kb, k in pairs:
        out.extend(kb)
        encode_into(out, obj[k])


def encode_into(out, obj):
    """Append the deterministic encoding of obj to the bytearray out."""
    t = type(obj)
    if t is int:
        if obj >= 0:
            _head(out, 0, obj)
        else:
            _head(out, 1, -1 - obj)
    elif t is bool:
        out.append(0xF5 if obj else 0xF4)
    elif obj is None:
        out.append(0xF6)
    elif t is float:
        _floats().encode(out, obj)
    elif t is str:
        try:
            b = obj.encode("utf-8")
        except UnicodeError:  # CPython: lone surrogates
            raise CBORError("text not encodable as UTF-8")
        _head(out, 3, len(b))
        out.extend(b)
    elif t is bytes or t is bytearray or t is memoryview:
        _head(out, 2, len(obj))
        out.extend(obj)
    elif t is list or t is tuple:
        _head(out, 4, len(obj))
        for item in obj:
            encode_into(out, item)
    elif t is dict:
        _head(out, 5, len(obj))
        _map(out, obj)
    else:
        raise CBORError("cannot encode " + t.__name__)


def dumps(obj):
    """The deterministic CBOR encoding of obj, as bytes."""
    out = bytearray()
    encode_into(out, obj)
    return bytes(out)


# ---------------------------------------------------------------- decoding


class _Decoder:
    __slots__ = ("buf", "pos", "end", "max_depth", "max_items")

    def __init__(self, buf, pos, end, max_depth, max_items):
        self.buf = buf
        self.pos = pos
        self.end = end
        self.max_depth = max_depth
        self.max_items = max_items

    def _take(self, n):
        p = self.pos
        if n > self.end - p:
            raise CBORError("truncated")
        self.pos = p + n
        return p

    def _count(self, n):
        if n > self.max_items:
            raise CBORError("length %d over limit %d" % (n, self.max_items))
        if n > self.end - self.pos:  # every item takes at least one byte
            raise CBORError("truncated")
        return n

    def item(self, depth):
        buf = self.buf
        ib = buf[self._take(1)]
        major = ib >> 5
        n = ib & 0x1F   # the additional info, then the argument it gives
        if major == 7:   # simple values and floats
            if 20 <= n <= 22:
                return (False, True, None)[n - 20]
            if not 25 <= n <= 27:
                raise CBORError("unsupported simple value %d" % n)
            size = 1 << (n - 24)
            return _floats().decode(buf, self._take(size), size)
        if n > 27:
            raise CBORError("indefinite length not allowed" if n == 31
                            else "invalid additional info %d" % n)
        if n == 24:
            n = buf[self._take(1)]
        elif n == 25:
            p = self._take(2)
            n = (buf[p] << 8) | buf[p + 1]
        elif n > 25:
            p = self._take(1 << (n - 24))
            n = int.from_bytes(buf[p:self.pos], "big")
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2 or major == 3:
            n = self._count(n)
            p = self._take(n)
            raw = bytes(buf[p:p + n])
            if major == 2:
                return raw
            try:
                text = raw.decode("utf-8")
            except UnicodeError:
                raise CBORError("invalid UTF-8 in text string")
            if _LAX_UTF8 and len(text) != n:
                from .cbor_utf8 import valid
                if not valid(raw):
                    raise CBORError("invalid UTF-8 in text string")
            return text
        if major == 6:
            raise CBORError("unsupported tag %d" % n)
        if depth >= self.max_depth:
            raise CBORError("nesting deeper than %d" % self.max_depth)
        n = self._count(n)
        if major == 4:
            out = [None] * n
            for i in range(n):
                out[i] = self.item(depth + 1)
            return out
        out = {}
        for _ in range(n):
            k = self.item(depth + 1)
            if type(k) not in (int, str, bytes):
                raise CBORError("map key must be int, str or bytes")
            if k in out:
                raise CBORError("duplicate map key")
            out[k] = self.item(depth + 1)
        return out


def decode_prefix(data, pos=0, max_depth=MAX_DEPTH, max_items=MAX_ITEMS):
    """Decode one item starting at pos; return (value, position after it)."""
    d = _Decoder(data, pos, len(data), max_depth, max_items)
    try:
        value = d.item(0)
    except RuntimeError:  # stack exhausted before max_depth (RecursionError on CPython)
        raise CBORError("nesting too deep for this stack")
    return value, d.pos


def loads(data, max_depth=MAX_DEPTH, max_items=MAX_ITEMS, start=0):
    """Decode exactly one CBOR item filling data (bytes or memoryview) from start on."""
    value, end = decode_prefix(data, start, max_depth, max_items)
    if end != len(data):
        raise CBORError("%d trailing bytes" % (len(data) - end))
    return value
