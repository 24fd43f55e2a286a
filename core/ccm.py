"""AES-CCM authenticated encryption (RFC 3610, NIST SP 800-38C).

Defaults are those of COSE algorithm 10, AES-CCM-16-64-128, used by OSCORE:
L = 2 (13-byte nonce), M = 8 (8-byte tag). Other tag lengths (4..16, even)
and L values (2..8, nonce of 15 - L bytes) are accepted so every CCM variant
can be tested. `Ccm(key)` keeps the expanded key for repeated use; the
module-level `encrypt`/`decrypt` build one per call. Portable (MicroPython
1.27 and CPython 3.11); no I/O.
"""
from .aes import AesEcb


class AuthenticationError(ValueError):
    """The tag did not verify: ciphertext, tag, nonce, AAD or key is wrong."""


def _probe_bigint_xor():
    # Whole-buffer XOR through big ints is one C call per step on CPython and
    # on MicroPython builds with arbitrary-precision ints (all common ports).
    try:
        v = int.from_bytes(b"\xff" * 32, "big") ^ 1
        return v.to_bytes(32, "big")[31] == 0xFE
    except (OverflowError, ValueError, TypeError):
        return False


if _probe_bigint_xor():
    def _xor(a, b):
        """XOR two equal-length byte strings."""
        n = len(a)
        return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(n, "big")
else:
    def _xor(a, b):
        """XOR two equal-length byte strings."""
        out = bytearray(a)
        for i in range(len(out)):
            out[i] ^= b[i]
        return bytes(out)


def _aad_header(n):
    """RFC 3610 2.2 encoding of the AAD length."""
    if n < 0xFF00:
        return n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\xff\xfe" + n.to_bytes(4, "big")
    return b"\xff\xff" + n.to_bytes(8, "big")


def _pad16(buf):
    rem = len(buf) & 15
    if rem:
        buf += bytes(16 - rem)


class Ccm:
    """AES-CCM with a fixed key, tag length and length-field size L."""

    def __init__(self, key, tag_len=8, l_len=2):
        if tag_len < 4 or tag_len > 16 or tag_len & 1:
            raise ValueError("CCM tag length must be 4, 6, 8, 10, 12, 14 or 16")
        if l_len < 2 or l_len > 8:
            raise ValueError("CCM L must be 2..8")
        self.tag_len = tag_len
        self.l_len = l_len
        self.nonce_len = 15 - l_len
        self._aes = AesEcb(key)

    def _check(self, nonce, n):
        if len(nonce) != self.nonce_len:
            raise ValueError("CCM nonce must be %d bytes" % self.nonce_len)
        if self.l_len < 8 and n >> (8 * self.l_len):
            raise ValueError("message too long for CCM L=%d" % self.l_len)

    def _tag(self, nonce, msg, aad):
        """CBC-MAC over B0 | encoded AAD | message (unencrypted tag T)."""
        enc = self._aes.encrypt_block
        flags = (0x40 if aad else 0) | (((self.tag_len - 2) >> 1) << 3) | (self.l_len - 1)
        buf = bytearray((flags,))
        buf += nonce
        buf += len(msg).to_bytes(self.l_len, "big")
        if aad:
            buf += _aad_header(len(aad))
            buf += aad
            _pad16(buf)
        buf += msg
        _pad16(buf)
        data = bytes(buf)
        x = enc(data[0:16])
        for i in range(16, len(data), 16):
            x = enc(_xor(x, data[i:i + 16]))
        return x[:self.tag_len]

    def _keystream(self, nonce, n):
        """Counter blocks A0.. encrypted: S0 (16 bytes) then >= n bytes."""
        nblocks = (n + 15) >> 4
        l_len = self.l_len
        ctr = bytearray(16 * (nblocks + 1))
        head = bytes((l_len - 1,)) + bytes(nonce)
        pos = 0
        for i in range(nblocks + 1):
            ctr[pos:pos + 16 - l_len] = head
            ctr[pos + 16 - l_len:pos + 16] = i.to_bytes(l_len, "big")
            pos += 16
        return self._aes.encrypt_blocks(ctr)

    def encrypt(self, nonce, plaintext, aad=b""):
        """Return ciphertext || tag (len(plaintext) + tag_len bytes)."""
        nonce = bytes(nonce)
        plaintext = bytes(plaintext)
        aad = bytes(aad)
        n = len(plaintext)
        self._check(nonce, n)
        tag = self._tag(nonce, plaintext, aad)
        ks = self._keystream(nonce, n)
        m = self.tag_len
        return _xor(plaintext, ks[16:16 + n]) + _xor(tag, ks[0:m])

    def decrypt(self, nonce, data, aad=b""):
        """Return the plaintext of ciphertext || tag, or raise AuthenticationError."""
        nonce = bytes(nonce)
        data = bytes(data)
        aad = bytes(aad)
        m = self.tag_len
        n = len(data) - m
        if n < 0:
            raise AuthenticationError("CCM input shorter than the tag")
        self._check(nonce, n)
        ks = self._keystream(nonce, n)
        plaintext = _xor(data[:n], ks[16:16 + n])
        expected = _xor(self._tag(nonce, plaintext, aad), ks[0:m])
        diff = 0
        received = data[n:]
        for i in range(m):
            diff |= expected[i] ^ received[i]
        if diff:
            raise AuthenticationError("CCM tag mismatch")
        return plaintext


def encrypt(key, nonce, plaintext, aad=b"", tag_len=8, l_len=2):
    """AES-CCM encrypt; returns ciphertext || tag."""
    return Ccm(key, tag_len, l_len).encrypt(nonce, plaintext, aad)


def decrypt(key, nonce, data, aad=b"", tag_len=8, l_len=2):
    """AES-CCM decrypt ciphertext || tag; raises AuthenticationError on a bad tag."""
    return Ccm(key, tag_len, l_len).decrypt(nonce, data, aad)
