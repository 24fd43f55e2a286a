"""CoAP message codec: RFC 7252 framing plus the Observe (RFC 7641) and Block (RFC 7959) options.

Sans-I/O and allocation-light: decode() turns one datagram into a CoapMessage, encode()
turns a CoapMessage back into bytes.  Malformed input raises CoapError, which carries how a
receiver should answer (nothing, a Reset, or an error response code); error_reply() builds
that answer.  Option values are kept as bytes; uint, block and string helpers convert them.
CoAP's numbers by name (coap.GET, coap.URI_PATH, ...) are core/coap_numbers', read through
this module.
"""
from .compat import const, MICROPYTHON

if MICROPYTHON:
    def __getattr__(name):
        # coap.GET, `from .coap import GET`: core/coap_numbers, imported on first use (this
        # module and the device-side ones use private copies and never ask)
        from . import coap_numbers
        return getattr(coap_numbers, name)
else:
    from .coap_numbers import *  # noqa: F401,F403  CoAP's numbers as this module's attributes

# core/coap_numbers.py's numbers that this module uses, and option numbers only it
# knows, as private constants: no global slot holds them on a board
_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_EMPTY = const(0)
_BAD_REQUEST = const(128)
_BAD_OPTION = const(130)
_REQUEST_ENTITY_TOO_LARGE = const(141)
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
_ECHO = const(252)
_IF_MATCH = const(1)
_URI_HOST = const(3)
_IF_NONE_MATCH = const(5)
_URI_PORT = const(7)
_LOCATION_PATH = const(8)
_LOCATION_QUERY = const(20)
_NO_RESPONSE = const(258)
_REQUEST_TAG = const(292)
_PAYLOAD_MARKER = const(0xFF)

# Options this codec understands: (number, min length, max length, repeatable), by number;
# a private constant tuple: folded into the code that reads it (no global, no name), and
# frozen code keeps it in flash (a dict would be built on the heap).
# OSCORE is deliberately absent: an endpoint without an OSCORE layer must answer 4.02
# (pass extra_options={OSCORE: (0, 255, False)} to decode() once one is in place).
_FORMATS = const((
    (_IF_MATCH, 0, 8, True), (_URI_HOST, 1, 255, False), (_ETAG, 1, 8, True),
    (_IF_NONE_MATCH, 0, 0, False), (_OBSERVE, 0, 3, False), (_URI_PORT, 0, 2, False),
    (_LOCATION_PATH, 0, 255, True), (_URI_PATH, 0, 255, True), (_CONTENT_FORMAT, 0, 2, False),
    (_MAX_AGE, 0, 4, False), (_URI_QUERY, 0, 255, True), (_ACCEPT, 0, 2, False),
    (_LOCATION_QUERY, 0, 255, True), (_BLOCK2, 0, 3, False), (_BLOCK1, 0, 3, False),
    (_SIZE2, 0, 4, False), (_PROXY_URI, 1, 1034, False), (_PROXY_SCHEME, 1, 255, False),
    (_SIZE1, 0, 4, False), (_ECHO, 1, 40, False), (_NO_RESPONSE, 0, 1, False),
    (_REQUEST_TAG, 0, 8, True),
))


class CoapError(Exception):
    """A datagram that cannot be processed.

    reason: short text.  mtype/mid/token: what was readable (None/b'' otherwise).
    code: response code a server should answer with (0 = none); rst: answer with a Reset.
    options: extra (number, bytes) options for the error response (e.g. Size1 with 4.13).
    """

    def __init__(self, reason, mtype=None, mid=None, token=b'', code=0, rst=False, options=None):
        super().__init__(reason)
        self.reason = reason
        self.mtype = mtype
        self.mid = mid
        self.token = token
        self.code = code
        self.rst = rst
        self.options = options


class CoapMessage:
    """One CoAP message. options: list of (number, bytes) kept sorted by number."""

    __slots__ = ('mtype', 'code', 'mid', 'token', 'options', 'payload')

    def __init__(self, mtype=_CON, code=_EMPTY, mid=0, token=b'', options=None, payload=b''):
        self.mtype = mtype
        self.code = code
        self.mid = mid
        self.token = token
        self.options = [] if options is None else options
        self.payload = payload

    def get(self, number, default=None):
        """First value of option `number` as bytes, or default."""
        for num, value in self.options:
            if num == number:
                return value
            if num > number:
                break
        return default

    def get_uint(self, number, default=None):
        value = self.get(number)
        return default if value is None else decode_uint(value)

    def get_block(self, number):
        """(num, more, szx) of a Block1/Block2 option, or None."""
        value = self.get(number)
        return None if value is None else decode_block(value)

    def add(self, number, value=b''):
        """Append an option after any existing ones of the same number (int/str/bytes value)."""
        if isinstance(value, int):
            value = encode_uint(value)
        elif isinstance(value, str):
            value = value.encode()
        opts = self.options
        i = len(opts)
        while i and opts[i - 1][0] > number:
            i -= 1
        opts.insert(i, (number, value))
        return self

    def remove(self, number):
        self.options = [o for o in self.options if o[0] != number]
        return self

    def __repr__(self):
        return '<CoapMessage %d %s mid=%d>' % (self.mtype, code_str(self.code), self.mid)


def code_str(code):
    """'2.05' style text of a code."""
    return '%d.%02d' % (code >> 5, code & 31)


def _uint_len(value):
    # bytes of the shortest big-endian form of a non-negative int (0 for 0)
    if value < 0:
        raise ValueError('negative uint option')
    n = 0
    while value:
        n += 1
        value >>= 8
    return n


def encode_uint(value):
    """Shortest big-endian encoding of a non-negative int (0 -> b'')."""
    return value.to_bytes(_uint_len(value), 'big')


def decode_uint(value):
    return int.from_bytes(value, 'big') if value else 0


def block_size(szx):
    return 1 << (szx + 4)


def encode_block(num, more, szx):
    return encode_uint((num << 4) | (8 if more else 0) | szx)


def decode_block(value):
    v = decode_uint(value)
    return v >> 4, bool(v & 8), v & 7


def encode_message(mtype, code, mid, token=b'', options=(), payload=b''):
    """Encode header fields, a (number, value) option list and a payload.

    Values are bytes, str or int (written as uint); options out of order are sorted
    (stably, so repeated ones keep their order)."""
    prev = 0
    for num, _ in options:
        if num < prev:
            options = _sorted_options(options)
            break
        prev = num
    out = bytearray()
    put_header(out, mtype, code, mid, token)
    prev = 0
    for num, value in options:
        prev = put_option(out, prev, num, value)
    put_payload(out, payload)
    return bytes(out)


def encode(msg):
    return encode_message(msg.mtype, msg.code, msg.mid, msg.token, msg.options, msg.payload)


def put_header(out, mtype, code, mid, token):
    """Start a message in the bytearray out (emptied first, keeping its room)."""
    tkl = len(token)
    if tkl > 8:
        raise ValueError('token longer than 8 bytes')
    out[:] = b'\0\0\0\0'
    out.extend(token)
    out[0] = 0x40 | (mtype << 4) | tkl
    out[1] = code
    out[2] = (mid >> 8) & 0xFF
    out[3] = mid & 0xFF


def put_option(out, prev, number, value):
    """Append option `number` after option `prev` (None value: nothing); returns the
    number of the last option written. value: bytes, str or int (shortest uint)."""
    if value is None:
        return prev
    if type(value) is int:
        n = _uint_len(value)
    else:
        if type(value) is str:
            value = value.encode()
        n = len(value)
    if number < prev:
        raise ValueError('options out of order')
    i = len(out)
    out.append(0)
    dn = _ext(out, number - prev)
    out[i] = (dn << 4) | _ext(out, n)
    if type(value) is int:
        while n:
            n -= 1
            out.append((value >> (n << 3)) & 0xFF)
    else:
        out.extend(value)
    return number


def put_payload(out, payload):
    if payload:
        out.append(_PAYLOAD_MARKER)
        out.extend(payload)


def _sorted_options(options):
    # stable insertion sort: MicroPython's list.sort is not guaranteed stable
    out = []
    for opt in options:
        i = len(out)
        while i and out[i - 1][0] > opt[0]:
            i -= 1
        out.insert(i, opt)
    return out


def _ext(out, value):
    # append the extended bytes of an option delta or length; return its nibble
    if value < 13:
        return value
    if value < 269:
        out.append(value - 13)
        return 13
    if value < 65805:
        value -= 269
        out.append(value >> 8)
        out.append(value & 0xFF)
        return 14
    raise ValueError('option delta/length too large')


def decode(data, max_size=0, extra_options=None):
    """Decode one datagram into a CoapMessage or raise CoapError.

    max_size: datagrams longer than this are refused (4.13 for requests).
    extra_options: {number: (min_len, max_len, repeatable)} understood beyond _FORMATS.
    """
    if type(data) is not bytes:
        data = bytes(data)   # then slices are the values themselves, one copy each
    n = len(data)
    if n < 4:
        raise CoapError('truncated header')
    b0 = data[0]
    if b0 >> 6 != 1:
        raise CoapError('unknown version')
    mtype = (b0 >> 4) & 3
    tkl = b0 & 15
    code = data[1]
    mid = (data[2] << 8) | data[3]
    cls = code >> 5
    token = b''
    options = []
    payload = b''
    # a ValueError below is answered with a Reset to a CON, else ignored
    try:
        if tkl > 8:
            raise ValueError('bad token length')
        if 4 + tkl > n:
            raise ValueError('truncated token')
        if code == _EMPTY:
            if n > 4:
                raise ValueError('empty message with content')
            return CoapMessage(mtype, _EMPTY, mid)
        token = data[4:4 + tkl]
        if cls == 1 or cls == 3 or cls > 5:
            raise ValueError('reserved code class')
        if mtype == _RST or (mtype == _ACK and cls == 0):
            raise CoapError('bad type for code', mtype, mid, token)
        if max_size and n > max_size:
            if cls == 0:
                raise CoapError('datagram too large', mtype, mid, token,
                                _REQUEST_ENTITY_TOO_LARGE, False, [(_SIZE1, encode_uint(max_size))])
            raise ValueError('datagram too large')
        num = 0
        i = 4 + tkl
        while i < n:
            b = data[i]
            i += 1
            if b == _PAYLOAD_MARKER:
                if i == n:
                    raise ValueError('payload marker without payload')
                payload = data[i:]
                break
            delta = b >> 4
            length = b & 15
            if delta >= 13 or length >= 13:   # extended forms only: (value, i) tuples
                delta, i = _read_ext(data, delta, i)
                length, i = _read_ext(data, length, i)
            if i + length > n:
                raise ValueError('truncated option value')
            num += delta
            options.append((num, data[i:i + length]))
            i += length
    except (ValueError, IndexError) as e:
        raise CoapError(str(e) or 'truncated option', mtype, mid, token, 0, mtype == _CON)
    # Drop malformed elective options; reject unknown or malformed critical ones.
    # RFC 7252 5.4.1 (critical/elective), 5.4.3 (lengths), 5.4.5 (repeats).
    keep = None
    prev = -1
    for idx in range(len(options)):
        num, value = options[idx]
        fmt = None
        at = 1                 # where (min, max, repeatable) starts in fmt
        for f in _FORMATS:
            if f[0] >= num:
                if f[0] == num:
                    fmt = f
                break
        if fmt is None and extra_options:
            fmt = extra_options.get(num)
            at = 0
        if fmt is None:
            ok = not num & 1   # unknown elective options are passed on untouched
        else:
            ok = fmt[at] <= len(value) <= fmt[at + 1] and (fmt[at + 2] or num != prev)
        if ok and (num == _BLOCK1 or num == _BLOCK2) and decode_uint(value) & 7 == 7:
            # SZX 7 is reserved: a request carrying it is a 4.00 (RFC 7959 2.2)
            if cls == 0:
                raise CoapError('reserved block size', mtype, mid, token, _BAD_REQUEST)
            ok = False
        prev = num
        if not ok:
            if num & 1:
                # a CON request gets 4.02, a NON request is dropped, a CON response Reset
                con = mtype == _CON
                raise CoapError('unrecognized critical option %d' % num, mtype, mid, token,
                                _BAD_OPTION if con and cls == 0 else 0, con and cls != 0)
            if keep is None:
                keep = options[:idx]
        elif keep is not None:
            keep.append((num, value))
    return CoapMessage(mtype, code, mid, token, options if keep is None else keep, payload)


def _read_ext(data, value, i):
    # an option delta or length from its header nibble `value` and any extended bytes at
    # data[i]: (the number, where the next field starts)
    if value < 13:
        return value, i
    if value == 13:
        return data[i] + 13, i + 1
    if value == 14:
        return ((data[i] << 8) | data[i + 1]) + 269, i + 2
    raise ValueError('reserved option nibble 15')


def error_reply(error, mid=None):
    """Datagram answering a CoapError, or None when it is to be ignored.

    A response code goes piggy-backed on an ACK for CON requests, or in a NON response
    (with message id `mid`) for NON requests when a mid is given.
    """
    if error.code:
        if error.mtype == _CON:
            return encode_message(_ACK, error.code, error.mid, error.token, error.options or ())
        if error.mtype == _NON and mid is not None:
            return encode_message(_NON, error.code, mid, error.token, error.options or ())
        return None
    if error.rst and error.mid is not None:
        return encode_message(_RST, _EMPTY, error.mid)
    return None


def split_path(path):
    """'a/b' or '/a/b' or ['a', 'b'] -> list of segments (empty path -> [])."""
    if isinstance(path, str):
        path = path.strip('/')
        return path.split('/') if path else []
    return list(path)


def set_uri(msg, path, query=None):
    """Add Uri-Path options for `path` and Uri-Query options for a list of 'k=v' strings."""
    for seg in split_path(path):
        msg.add(_URI_PATH, seg)
    if query:
        for q in query:
            msg.add(_URI_QUERY, q)
    return msg
