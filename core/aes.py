"""AES-128 block encryption, forward direction only (all that CCM needs).

`AesEcb(key).encrypt_block(block16)` uses the board's C `cryptolib.aes(key, 1)`
(ECB) when the firmware has it, else `AesEcbPure`: a byte-oriented pure-Python
AES-128 (FIPS-197) with the round keys expanded once per key and SubBytes,
ShiftRows and MixColumns folded into three 256-entry lookup tables.
Portable (MicroPython 1.27 and CPython 3.11); no I/O.
"""
from .compat import MICROPYTHON

try:
    from cryptolib import aes as _c_aes
except ImportError:
    try:
        from ucryptolib import aes as _c_aes
    except ImportError:
        _c_aes = None

_MODE_ECB = 1

# FIPS-197 S-box.
_SBOX = (
    b'\x63\x7c\x77\x7b\xf2\x6b\x6f\xc5\x30\x01\x67\x2b\xfe\xd7\xab\x76'
    b'\xca\x82\xc9\x7d\xfa\x59\x47\xf0\xad\xd4\xa2\xaf\x9c\xa4\x72\xc0'
    b'\xb7\xfd\x93\x26\x36\x3f\xf7\xcc\x34\xa5\xe5\xf1\x71\xd8\x31\x15'
    b'\x04\xc7\x23\xc3\x18\x96\x05\x9a\x07\x12\x80\xe2\xeb\x27\xb2\x75'
    b'\x09\x83\x2c\x1a\x1b\x6e\x5a\xa0\x52\x3b\xd6\xb3\x29\xe3\x2f\x84'
    b'\x53\xd1\x00\xed\x20\xfc\xb1\x5b\x6a\xcb\xbe\x39\x4a\x4c\x58\xcf'
    b'\xd0\xef\xaa\xfb\x43\x4d\x33\x85\x45\xf9\x02\x7f\x50\x3c\x9f\xa8'
    b'\x51\xa3\x40\x8f\x92\x9d\x38\xf5\xbc\xb6\xda\x21\x10\xff\xf3\xd2'
    b'\xcd\x0c\x13\xec\x5f\x97\x44\x17\xc4\xa7\x7e\x3d\x64\x5d\x19\x73'
    b'\x60\x81\x4f\xdc\x22\x2a\x90\x88\x46\xee\xb8\x14\xde\x5e\x0b\xdb'
    b'\xe0\x32\x3a\x0a\x49\x06\x24\x5c\xc2\xd3\xac\x62\x91\x95\xe4\x79'
    b'\xe7\xc8\x37\x6d\x8d\xd5\x4e\xa9\x6c\x56\xf4\xea\x65\x7a\xae\x08'
    b'\xba\x78\x25\x2e\x1c\xa6\xb4\xc6\xe8\xdd\x74\x1f\x4b\xbd\x8b\x8a'
    b'\x70\x3e\xb5\x66\x48\x03\xf6\x0e\x61\x35\x57\xb9\x86\xc1\x1d\x9e'
    b'\xe1\xf8\x98\x11\x69\xd9\x8e\x94\x9b\x1e\x87\xe9\xce\x55\x28\xdf'
    b'\x8c\xa1\x89\x0d\xbf\xe6\x42\x68\x41\x99\x2d\x0f\xb0\x54\xbb\x16'
)


def _xtime(a):
    """Multiply by x (i.e. 2) in GF(2^8) modulo the AES polynomial."""
    a <<= 1
    return (a ^ 0x11B) if a & 0x100 else a


def _build_tables():
    s2 = bytearray(256)
    s3 = bytearray(256)
    for i in range(256):
        s = _SBOX[i]
        d = _xtime(s)
        s2[i] = d
        s3[i] = d ^ s
    # bytes keep the tables at 256 bytes each on a board; CPython indexes
    # tuples of (cached) small ints faster, so it gets tuples.
    conv = bytes if MICROPYTHON else tuple
    return conv(_SBOX), conv(s2), conv(s3)


_S, _S2, _S3 = _build_tables()


def expand_key(key):
    """AES-128 key schedule: 11 round keys, each a tuple of 16 ints."""
    if len(key) != 16:
        raise ValueError("AES-128 key must be 16 bytes")
    sbox = _SBOX
    w = bytearray(176)
    w[0:16] = key
    rcon = 1
    for i in range(16, 176, 4):
        t0 = w[i - 4]
        t1 = w[i - 3]
        t2 = w[i - 2]
        t3 = w[i - 1]
        if i & 15 == 0:
            t0, t1, t2, t3 = sbox[t1] ^ rcon, sbox[t2], sbox[t3], sbox[t0]
            rcon = _xtime(rcon)
        w[i] = w[i - 16] ^ t0
        w[i + 1] = w[i - 15] ^ t1
        w[i + 2] = w[i - 14] ^ t2
        w[i + 3] = w[i - 13] ^ t3
    return tuple(tuple(w[r:r + 16]) for r in range(0, 176, 16))


class AesEcbPure:
    """Pure-Python AES-128 encryption of single 16-byte blocks."""

    def __init__(self, key):
        self._rk = expand_key(bytes(key))

    def encrypt_block(self, block):
        """Encrypt one 16-byte block; returns 16 bytes."""
        if len(block) != 16:
            raise ValueError("AES block must be 16 bytes")
        S = _S
        S2 = _S2
        S3 = _S3
        rk = self._rk
        k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15 = rk[0]
        s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15 = block
        s0 ^= k0
        s1 ^= k1
        s2 ^= k2
        s3 ^= k3
        s4 ^= k4
        s5 ^= k5
        s6 ^= k6
        s7 ^= k7
        s8 ^= k8
        s9 ^= k9
        s10 ^= k10
        s11 ^= k11
        s12 ^= k12
        s13 ^= k13
        s14 ^= k14
        s15 ^= k15
        for r in range(1, 10):
            # SubBytes + ShiftRows + MixColumns + AddRoundKey, column by column.
            k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15 = rk[r]
            s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15 = (
                S2[s0] ^ S3[s5] ^ S[s10] ^ S[s15] ^ k0,
                S[s0] ^ S2[s5] ^ S3[s10] ^ S[s15] ^ k1,
                S[s0] ^ S[s5] ^ S2[s10] ^ S3[s15] ^ k2,
                S3[s0] ^ S[s5] ^ S[s10] ^ S2[s15] ^ k3,
                S2[s4] ^ S3[s9] ^ S[s14] ^ S[s3] ^ k4,
                S[s4] ^ S2[s9] ^ S3[s14] ^ S[s3] ^ k5,
                S[s4] ^ S[s9] ^ S2[s14] ^ S3[s3] ^ k6,
                S3[s4] ^ S[s9] ^ S[s14] ^ S2[s3] ^ k7,
                S2[s8] ^ S3[s13] ^ S[s2] ^ S[s7] ^ k8,
                S[s8] ^ S2[s13] ^ S3[s2] ^ S[s7] ^ k9,
                S[s8] ^ S[s13] ^ S2[s2] ^ S3[s7] ^ k10,
                S3[s8] ^ S[s13] ^ S[s2] ^ S2[s7] ^ k11,
                S2[s12] ^ S3[s1] ^ S[s6] ^ S[s11] ^ k12,
                S[s12] ^ S2[s1] ^ S3[s6] ^ S[s11] ^ k13,
                S[s12] ^ S[s1] ^ S2[s6] ^ S3[s11] ^ k14,
                S3[s12] ^ S[s1] ^ S[s6] ^ S2[s11] ^ k15,
            )
        k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15 = rk[10]
        return bytes((
            S[s0] ^ k0, S[s5] ^ k1, S[s10] ^ k2, S[s15] ^ k3,
            S[s4] ^ k4, S[s9] ^ k5, S[s14] ^ k6, S[s3] ^ k7,
            S[s8] ^ k8, S[s13] ^ k9, S[s2] ^ k10, S[s7] ^ k11,
            S[s12] ^ k12, S[s1] ^ k13, S[s6] ^ k14, S[s11] ^ k15,
        ))

    def encrypt_blocks(self, data):
        """Encrypt a whole number of 16-byte blocks independently (ECB)."""
        n = len(data)
        if n & 15:
            raise ValueError("ECB input must be a multiple of 16 bytes")
        mv = memoryview(data)
        out = bytearray(n)
        enc = self.encrypt_block
        for i in range(0, n, 16):
            out[i:i + 16] = enc(bytes(mv[i:i + 16]))
        return bytes(out)


class AesEcbNative:
    """AES-128 ECB through the firmware's C `cryptolib` module."""

    def __init__(self, key):
        if len(key) != 16:
            raise ValueError("AES-128 key must be 16 bytes")
        self._aes = _c_aes(bytes(key), _MODE_ECB)

    def encrypt_block(self, block):
        """Encrypt one 16-byte block; returns 16 bytes."""
        if len(block) != 16:
            raise ValueError("AES block must be 16 bytes")
        return self._aes.encrypt(bytes(block))

    def encrypt_blocks(self, data):
        """Encrypt a whole number of 16-byte blocks independently (ECB)."""
        if len(data) & 15:
            raise ValueError("ECB input must be a multiple of 16 bytes")
        return self._aes.encrypt(bytes(data))


if _c_aes is not None:
    AesEcb = AesEcbNative
    BACKEND = "cryptolib"
else:
    AesEcb = AesEcbPure
    BACKEND = "python"
