"""OSCORE (RFC 8613) message protection core, sans-I/O.

A `SecurityContext` derives the Sender/Recipient Keys and Common IV from the
Master Secret (HKDF-SHA256, section 3.2) and protects or verifies messages
given as plain parts: inner code, inner (Class E) options as a list of
(number, value bytes), payload  <->  outer code, OSCORE option value,
ciphertext. The caller's CoAP codec moves the outer parts in and out of real
CoAP messages and keeps Class U options (Uri-Host, Proxy-Uri, ...) outer.

Every failure on the receiving side raises `OscoreError`, whose `code` is the
CoAP code (header byte, e.g. 0x81 = 4.01) a server should answer with, and
leaves the context unchanged: the replay window only moves after a message
was authenticated and parsed. The small CBOR structures (HKDF info, AAD) are
encoded here by hand. Portable (MicroPython 1.27 and CPython 3.11); no I/O.
"""
from .ccm import Ccm
from .hkdf import hkdf_extract, hkdf_expand
from .replay import ReplayWindow

# CoAP codes as header bytes (class << 5 | detail).
POST = 0x02
FETCH = 0x05
CHANGED = 0x44        # 2.04
CONTENT = 0x45        # 2.05
BAD_REQUEST = 0x80    # 4.00
UNAUTHORIZED = 0x81   # 4.01
BAD_OPTION = 0x82     # 4.02
INTERNAL_ERROR = 0xA0  # 5.00

OPTION_OBSERVE = 6
OPTION_OSCORE = 9

# COSE AES-CCM algorithms with a 128-bit key: alg -> (nonce length, tag length).
ALG_AES_CCM_16_64_128 = 10
_ALGORITHMS = {
    10: (13, 8),    # AES-CCM-16-64-128 (the OSCORE default)
    12: (7, 8),     # AES-CCM-64-64-128
    30: (13, 16),   # AES-CCM-16-128-128
    32: (7, 16),    # AES-CCM-64-128-128
}
_KEY_LEN = 16

MAX_SEQ = (1 << 40) - 1   # section 7.2.1: sequence numbers stay below 2^40

_FLAG_KID = 0x08
_FLAG_KID_CONTEXT = 0x10
_FLAGS_RESERVED = 0xE0


class OscoreError(Exception):
    """OSCORE processing failed. `code` is the CoAP code to answer with
    (BAD_REQUEST, UNAUTHORIZED, BAD_OPTION or INTERNAL_ERROR); `reason` is a
    short diagnostic text, usable as the diagnostic payload."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


# -- tiny CBOR encoder for the fixed structures of sections 3.2.1 and 5.4 --

def _cbor_head(major, n):
    mt = major << 5
    if n < 24:
        return bytes((mt | n,))
    if n < 0x100:
        return bytes((mt | 24, n))
    if n < 0x10000:
        return bytes((mt | 25,)) + n.to_bytes(2, "big")
    return bytes((mt | 26,)) + n.to_bytes(4, "big")


def _cbor_bstr(b):
    return _cbor_head(2, len(b)) + bytes(b)


def _cbor_int(v):
    if v >= 0:
        return _cbor_head(0, v)
    return _cbor_head(1, -1 - v)


def kdf_info(id_, id_context, alg, type_, length):
    """CBOR info = [id, id_context / nil, alg_aead, type, L] (section 3.2.1)."""
    t = type_.encode()
    return (b"\x85" + _cbor_bstr(id_)
            + (b"\xf6" if id_context is None else _cbor_bstr(id_context))
            + _cbor_int(alg) + _cbor_head(3, len(t)) + t + _cbor_int(length))


def aad(alg, request_kid, request_piv, class_i_options=b""):
    """AAD = Enc_structure ["Encrypt0", h'', external_aad] (section 5.4)."""
    aad_array = (b"\x85\x01\x81" + _cbor_int(alg) + _cbor_bstr(request_kid)
                 + _cbor_bstr(request_piv) + _cbor_bstr(class_i_options))
    return b"\x83\x68Encrypt0\x40" + _cbor_bstr(aad_array)


# -- OSCORE option value (section 6.1) --

def encode_option(piv=None, kid=None, kid_context=None):
    """OSCORE option value from Partial IV, kid and kid context (None = absent)."""
    flags = 0
    out = bytearray(1)
    if piv:
        if len(piv) > 5:
            raise ValueError("Partial IV longer than 5 bytes")
        flags |= len(piv)
        out += piv
    if kid_context is not None:
        if len(kid_context) > 255:
            raise ValueError("kid context longer than 255 bytes")
        flags |= _FLAG_KID_CONTEXT
        out.append(len(kid_context))
        out += kid_context
    if kid is not None:
        flags |= _FLAG_KID
        out += kid
    if not flags:
        return b""
    out[0] = flags
    return bytes(out)


def decode_option(value):
    """(piv, kid, kid_context) from an OSCORE option value; absent parts are
    None. Raises OscoreError(BAD_OPTION) when the value is malformed."""
    value = bytes(value)
    n = len(value)
    if n == 0:
        return None, None, None
    flags = value[0]
    if flags & _FLAGS_RESERVED:
        raise OscoreError(BAD_OPTION, "Reserved OSCORE flag bits set")
    if flags == 0:
        raise OscoreError(BAD_OPTION, "OSCORE option with zero flags must be empty")
    piv_len = flags & 0x07
    if piv_len > 5:
        raise OscoreError(BAD_OPTION, "Reserved Partial IV length")
    pos = 1 + piv_len
    if pos > n:
        raise OscoreError(BAD_OPTION, "Truncated Partial IV")
    piv = value[1:pos] if piv_len else None
    kid_context = None
    if flags & _FLAG_KID_CONTEXT:
        if pos >= n:
            raise OscoreError(BAD_OPTION, "Truncated kid context")
        s = value[pos]
        pos += 1
        if pos + s > n:
            raise OscoreError(BAD_OPTION, "Truncated kid context")
        kid_context = value[pos:pos + s]
        pos += s
    kid = None
    if flags & _FLAG_KID:
        kid = value[pos:]
    elif pos != n:
        raise OscoreError(BAD_OPTION, "Trailing bytes in OSCORE option")
    return piv, kid, kid_context


def piv_from_seq(seq):
    """Partial IV bytes of a sequence number: shortest big-endian, 0 -> b'\\x00'."""
    if seq < 0 or seq > MAX_SEQ:
        raise ValueError("sequence number out of range")
    n = 1
    while seq >> (8 * n):
        n += 1
    return seq.to_bytes(n, "big")


# -- plaintext = code | Class E options | 0xFF payload (section 5.3) --

def _option_ext(v, ext):
    if v < 13:
        return v
    if v < 269:
        ext.append(v - 13)
        return 13
    if v - 269 > 0xFFFF:
        raise ValueError("option delta or length too large")
    ext += (v - 269).to_bytes(2, "big")
    return 14


def _read_ext(v, data, pos, n):
    """(value, new pos) of a delta or length nibble v and its extended bytes."""
    if v < 13:
        return v, pos
    size = v - 12   # 13: one extra byte, 14: two
    if pos + size > n:
        raise OscoreError(BAD_REQUEST, "Truncated option")
    if size == 1:
        return data[pos] + 13, pos + 1
    return ((data[pos] << 8) | data[pos + 1]) + 269, pos + 2


def _sorted_options(options):
    """Options ordered by number; repeated options keep their order."""
    prev = -1
    for opt in options:
        if opt[0] < prev:
            break
        prev = opt[0]
    else:
        return options
    order = sorted(range(len(options)), key=lambda i: (options[i][0], i))
    return [options[i] for i in order]


def encode_plaintext(code, options, payload=b""):
    """OSCORE plaintext: code byte, CoAP-encoded options, 0xFF + payload."""
    out = bytearray((code,))
    prev = 0
    for number, value in _sorted_options(options):
        if number == OPTION_OSCORE:
            raise ValueError("the OSCORE option cannot be protected")
        if number < 0:
            raise ValueError("negative option number")
        ext = bytearray()
        delta = _option_ext(number - prev, ext)
        length = _option_ext(len(value), ext)
        out.append((delta << 4) | length)
        out += ext
        out += value
        prev = number
    if payload:
        out.append(0xFF)
        out += payload
    return bytes(out)


def decode_plaintext(data):
    """(code, options, payload) from an OSCORE plaintext.
    Raises OscoreError(BAD_REQUEST) when malformed, BAD_OPTION for an inner
    OSCORE option."""
    data = bytes(data)
    n = len(data)
    if n == 0:
        raise OscoreError(BAD_REQUEST, "Empty plaintext")
    code = data[0]
    pos = 1
    number = 0
    options = []
    payload = b""
    while pos < n:
        head = data[pos]
        pos += 1
        if head == 0xFF:
            if pos == n:
                raise OscoreError(BAD_REQUEST, "Payload marker without payload")
            payload = data[pos:]
            break
        delta = head >> 4
        length = head & 0x0F
        if delta == 15 or length == 15:
            raise OscoreError(BAD_REQUEST, "Reserved option nibble")
        delta, pos = _read_ext(delta, data, pos, n)
        length, pos = _read_ext(length, data, pos, n)
        number += delta
        if pos + length > n:
            raise OscoreError(BAD_REQUEST, "Truncated option value")
        if number == OPTION_OSCORE:
            raise OscoreError(BAD_OPTION, "OSCORE option inside the plaintext")
        options.append((number, data[pos:pos + length]))
        pos += length
    return code, options, payload


def _is_request_code(code):
    return 0x01 <= code <= 0x1F


def _is_response_code(code):
    return 0x40 <= code <= 0xBF


def _has_observe(options):
    for opt in options:
        if opt[0] == OPTION_OBSERVE:
            return True
    return False


class RequestBinding:
    """What a response is bound to (section 7.1): the request's kid, Partial IV
    and nonce. protect_request()/unprotect_request() return one; keep it with
    the token until the response is protected or verified."""

    def __init__(self, kid, piv, nonce):
        self.kid = kid
        self.piv = piv
        self.nonce = nonce
        # a response was already protected (server) or accepted (client) with
        # the request nonce; a second one must carry its own Partial IV
        self.request_nonce_used = False
        self.last_response_seq = -1       # highest Partial IV seen in responses


class SecurityContext:
    """One OSCORE security context (Common, Sender and Recipient Context).

    master_secret, sender_id, recipient_id: bytes (ids at most nonce length - 6).
    master_salt: bytes, default empty. id_context: bytes or None.
    alg: COSE AES-CCM algorithm with a 128-bit key (default 10).
    sender_seq: next Sender Sequence Number, unguarded (tests, fresh contexts
      whose numbers need no persistence).
    persisted_seq: resume from a value stored by the reservation procedure
      (see reserve_sender_seq); protection then refuses numbers not covered
      by a confirmed reservation.
    window: a ReplayWindow (e.g. restored); default an empty one of 32.
    send_kid_context: put 'kid context' in requests (default: when id_context set).
    """

    def __init__(self, master_secret, sender_id, recipient_id, master_salt=b"",
                 id_context=None, alg=ALG_AES_CCM_16_64_128, sender_seq=0,
                 persisted_seq=None, window=None, send_kid_context=None):
        if alg not in _ALGORITHMS:
            raise ValueError("unsupported AEAD algorithm %r" % (alg,))
        nonce_len, tag_len = _ALGORITHMS[alg]
        sender_id = bytes(sender_id)
        recipient_id = bytes(recipient_id)
        if len(sender_id) > nonce_len - 6 or len(recipient_id) > nonce_len - 6:
            raise ValueError("Sender/Recipient ID longer than %d bytes" % (nonce_len - 6))
        if sender_id == recipient_id:
            raise ValueError("Sender ID and Recipient ID must differ")
        if id_context is not None:
            id_context = bytes(id_context)
        self.alg = alg
        self.nonce_len = nonce_len
        self.sender_id = sender_id
        self.recipient_id = recipient_id
        self.id_context = id_context
        self.send_kid_context = (id_context is not None) if send_kid_context is None \
            else bool(send_kid_context)
        prk = hkdf_extract(bytes(master_salt), bytes(master_secret))
        self.sender_key = hkdf_expand(
            prk, kdf_info(sender_id, id_context, alg, "Key", _KEY_LEN), _KEY_LEN)
        self.recipient_key = hkdf_expand(
            prk, kdf_info(recipient_id, id_context, alg, "Key", _KEY_LEN), _KEY_LEN)
        self.common_iv = hkdf_expand(
            prk, kdf_info(b"", id_context, alg, "IV", nonce_len), nonce_len)
        self._sender_aead = Ccm(self.sender_key, tag_len, 15 - nonce_len)
        self._recipient_aead = Ccm(self.recipient_key, tag_len, 15 - nonce_len)
        if persisted_seq is None:
            self.sender_seq = sender_seq
            self.sender_seq_limit = None
        else:
            self.sender_seq = persisted_seq
            self.sender_seq_limit = persisted_seq
        self.window = window if window is not None else ReplayWindow(32)

    # -- Sender Sequence Number persistence (section 7.5, Appendix B.1.1) --

    def sender_seq_remaining(self):
        """How many numbers can still be used before a new reservation is
        confirmed; None when the sequence number is not guarded."""
        if self.sender_seq_limit is None:
            return None
        return max(0, self.sender_seq_limit - self.sender_seq)

    def reserve_sender_seq(self, count):
        """Value to write to non-volatile memory to allow `count` more numbers.
        Changes nothing: call confirm_sender_seq(value) once the write is done.
        After a reboot, pass the stored value as persisted_seq."""
        if count < 1:
            raise ValueError("reservation count must be >= 1")
        base = self.sender_seq if self.sender_seq_limit is None \
            else max(self.sender_seq, self.sender_seq_limit)
        return min(base + count, MAX_SEQ + 1)

    def confirm_sender_seq(self, value):
        """The value from reserve_sender_seq() is durably stored: use numbers
        below it."""
        if self.sender_seq_limit is not None and value < self.sender_seq_limit:
            raise ValueError("reservation below the current one")
        self.sender_seq_limit = value

    def _next_seq(self):
        """The number the next message will use; raises when none may be used.
        The caller advances sender_seq only once the message is built."""
        seq = self.sender_seq
        if seq > MAX_SEQ:
            raise OscoreError(INTERNAL_ERROR, "Sender Sequence Number exhausted")
        if self.sender_seq_limit is not None and seq >= self.sender_seq_limit:
            raise OscoreError(INTERNAL_ERROR, "Sender Sequence Number not reserved")
        return seq

    # -- building blocks --

    def nonce(self, id_piv, piv):
        """AEAD nonce from the ID of whoever generated the Partial IV (section 5.2)."""
        n = self.nonce_len
        b = bytearray(n)
        b[0] = len(id_piv)
        b[n - 5 - len(id_piv):n - 5] = id_piv
        b[n - len(piv):n] = piv
        iv = self.common_iv
        for i in range(n):
            b[i] ^= iv[i]
        return bytes(b)

    # -- client side --

    def protect_request(self, code, options, payload=b"", outer_code=None):
        """Protect a request. Returns (outer_code, option_value, ciphertext,
        binding). outer_code defaults to POST, FETCH when Observe is present."""
        if not _is_request_code(code):
            raise ValueError("not a request code")
        plaintext = encode_plaintext(code, options, payload)
        seq = self._next_seq()
        piv = piv_from_seq(seq)
        kid = self.sender_id
        nonce = self.nonce(kid, piv)
        ciphertext = self._sender_aead.encrypt(nonce, plaintext, aad(self.alg, kid, piv))
        self.sender_seq = seq + 1
        option = encode_option(piv, kid, self.id_context if self.send_kid_context else None)
        if outer_code is None:
            outer_code = FETCH if _has_observe(options) else POST
        return outer_code, option, ciphertext, RequestBinding(kid, piv, nonce)

    def unprotect_response(self, binding, option_value, ciphertext):
        """Verify a response to the request of `binding`. Returns
        (code, options, payload); raises OscoreError."""
        piv, kid, _ = decode_option(option_value)
        if kid is not None and kid != self.recipient_id:
            raise OscoreError(UNAUTHORIZED, "Security context not found")
        if piv is None:
            if binding.request_nonce_used:
                raise OscoreError(UNAUTHORIZED, "Replay detected")
            nonce = binding.nonce
            seq = -1
        else:
            seq = int.from_bytes(piv, "big")
            if seq <= binding.last_response_seq:
                raise OscoreError(UNAUTHORIZED, "Replay detected")
            nonce = self.nonce(self.recipient_id, piv)
        plaintext = self._open(self._recipient_aead, nonce, ciphertext,
                               aad(self.alg, binding.kid, binding.piv))
        code, options, payload = decode_plaintext(plaintext)
        if not _is_response_code(code):
            raise OscoreError(BAD_REQUEST, "Inner code is not a response code")
        if piv is None:
            binding.request_nonce_used = True
        else:
            binding.last_response_seq = seq
        return code, options, payload

    # -- server side --

    def unprotect_request(self, option_value, ciphertext):
        """Verify a request. Returns (code, options, payload, binding);
        raises OscoreError (4.02 malformed, 4.01 unknown kid or replay,
        4.00 decryption failed or bad plaintext)."""
        piv, kid, kid_context = decode_option(option_value)
        if piv is None or kid is None:
            raise OscoreError(BAD_OPTION, "Request without Partial IV or kid")
        if kid != self.recipient_id or (
                kid_context is not None and kid_context != self.id_context):
            raise OscoreError(UNAUTHORIZED, "Security context not found")
        seq = int.from_bytes(piv, "big")
        if self.window.check(seq) is not None:
            raise OscoreError(UNAUTHORIZED, "Replay detected")
        nonce = self.nonce(kid, piv)
        plaintext = self._open(self._recipient_aead, nonce, ciphertext,
                               aad(self.alg, kid, piv))
        code, options, payload = decode_plaintext(plaintext)
        if not _is_request_code(code):
            raise OscoreError(BAD_REQUEST, "Inner code is not a request code")
        self.window.mark(seq)
        return code, options, payload, RequestBinding(kid, piv, nonce)

    def protect_response(self, binding, code, options, payload=b"", new_piv=False,
                         outer_code=None):
        """Protect a response to the request of `binding`. With new_piv the
        response carries its own Partial IV (e.g. notifications), otherwise
        it reuses the request nonce -- once: later responses to the same
        request always get their own Partial IV, so no nonce is used twice.
        Returns (outer_code, option_value, ciphertext). outer_code defaults
        to 2.04 Changed, 2.05 Content with Observe."""
        if not _is_response_code(code):
            raise ValueError("not a response code")
        plaintext = encode_plaintext(code, options, payload)
        new_piv = new_piv or binding.request_nonce_used
        seq = -1
        if new_piv:
            seq = self._next_seq()
            piv = piv_from_seq(seq)
            nonce = self.nonce(self.sender_id, piv)
            option = encode_option(piv)
        else:
            nonce = binding.nonce
            option = b""
        ciphertext = self._sender_aead.encrypt(
            nonce, plaintext, aad(self.alg, binding.kid, binding.piv))
        if new_piv:
            self.sender_seq = seq + 1
        else:
            binding.request_nonce_used = True
        if outer_code is None:
            outer_code = CONTENT if _has_observe(options) else CHANGED
        return outer_code, option, ciphertext

    def _open(self, aead, nonce, ciphertext, aad_bytes):
        if len(ciphertext) <= aead.tag_len:
            raise OscoreError(BAD_OPTION, "Failed to decode COSE")
        try:
            return aead.decrypt(nonce, ciphertext, aad_bytes)
        except ValueError:   # AuthenticationError, or longer than CCM's L allows
            raise OscoreError(BAD_REQUEST, "Decryption failed")


def find_context(contexts, option_value):
    """The context in `contexts` whose Recipient ID (and ID Context, when the
    request names one) match a request's OSCORE option; raises OscoreError
    (BAD_OPTION malformed, UNAUTHORIZED when none matches)."""
    piv, kid, kid_context = decode_option(option_value)
    if kid is None:
        raise OscoreError(BAD_OPTION, "Request without kid")
    for ctx in contexts:
        if ctx.recipient_id == kid and (kid_context is None or kid_context == ctx.id_context):
            return ctx
    raise OscoreError(UNAUTHORIZED, "Security context not found")
