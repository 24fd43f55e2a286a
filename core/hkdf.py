"""HMAC-SHA256 and HKDF-SHA256 (RFC 2104, RFC 5869) over hashlib.sha256.

Uses the `hmac` module when the firmware has a working one and a small
built-in HMAC otherwise (many boards ship hashlib but no hmac). Portable
(MicroPython 1.27 and CPython 3.11); no I/O.
"""
import hashlib

_BLOCK = 64   # SHA-256 block size in bytes
_HASH_LEN = 32

_IPAD = b"\x36" * _BLOCK
_OPAD = b"\x5c" * _BLOCK


def _xor_pad(key, pad):
    return bytes(k ^ p for k, p in zip(key, pad))


def hmac_sha256_pure(key, msg):
    """HMAC-SHA256 built from hashlib.sha256 alone; returns 32 bytes."""
    key = bytes(key)
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    inner = hashlib.sha256(_xor_pad(key, _IPAD))
    inner.update(bytes(msg))
    outer = hashlib.sha256(_xor_pad(key, _OPAD))
    outer.update(inner.digest())
    return outer.digest()


def _probe_module_hmac():
    """Return a (key, msg) -> digest function backed by the hmac module, or None.

    The module is only trusted after it reproduces a known HMAC-SHA256 value.
    """
    try:
        import hmac
    except ImportError:
        return None
    fast = getattr(hmac, "digest", None)
    if fast is not None:
        def mac(key, msg):
            return fast(bytes(key), bytes(msg), "sha256")
    else:
        def mac(key, msg):
            return hmac.new(bytes(key), bytes(msg), hashlib.sha256).digest()
    try:
        long_key = b"k" * 70   # also exercise the hash-the-long-key path
        ok = (mac(b"probe-key", b"probe-msg") == hmac_sha256_pure(b"probe-key", b"probe-msg")
              and mac(long_key, b"") == hmac_sha256_pure(long_key, b""))
    except Exception:  # noqa: BLE001 - any failure means "do not use it"
        ok = False
    return mac if ok else None


hmac_sha256 = _probe_module_hmac() or hmac_sha256_pure


def hkdf_extract(salt, ikm):
    """HKDF-Extract: PRK = HMAC(salt or 32 zero bytes, IKM)."""
    if not salt:
        salt = bytes(_HASH_LEN)
    return hmac_sha256(salt, ikm)


def hkdf_expand(prk, info, length):
    """HKDF-Expand: the first `length` bytes of T(1) | T(2) | ..."""
    if length < 0 or length > 255 * _HASH_LEN:
        raise ValueError("HKDF length must be 0..8160 bytes")
    info = bytes(info)
    out = bytearray()
    t = b""
    i = 1
    while len(out) < length:
        t = hmac_sha256(prk, t + info + bytes((i,)))
        out += t
        i += 1
    return bytes(out[:length])


def hkdf(salt, ikm, info, length):
    """HKDF-SHA256 (extract then expand)."""
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)
