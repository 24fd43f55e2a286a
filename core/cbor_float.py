"""Floats in CBOR (RFC 8949 section 4.2.2: the shortest of half, single or double
precision that keeps the value exactly, NaN as f97e00), for core.cbor, which imports
this module with the first float it encodes or decodes: a board's values are integers
in the profile's units, so its heap usually holds none of this code.
"""
import struct

_F32_MAX = 3.4028234663852886e38


def half_bits(f32):
    """IEEE half-precision bits for the single-precision bits f32, or -1 if inexact."""
    sign = (f32 >> 16) & 0x8000
    exp = (f32 >> 23) & 0xFF
    man = f32 & 0x7FFFFF
    if exp == 0xFF:
        return 0x7E00 if man else sign | 0x7C00
    if exp == 0:
        return sign if man == 0 else -1
    e = exp - 127
    if -14 <= e <= 15:
        if man & 0x1FFF:
            return -1
        return sign | ((e + 15) << 10) | (man >> 13)
    if -24 <= e < -14:  # half subnormal
        full = man | 0x800000
        shift = 13 - 14 - e
        if full & ((1 << shift) - 1):
            return -1
        return sign | (full >> shift)
    return -1


def encode(out, x):
    """Append the shortest exact encoding of the float x to the bytearray out."""
    if x != x:  # NaN, canonical form
        out.extend(b"\xf9\x7e\x00")
        return
    b32 = struct.pack(">f", x) if -_F32_MAX <= x <= _F32_MAX or x - x != x - x else None
    if b32 is not None and struct.unpack(">f", b32)[0] == x:
        h = half_bits(struct.unpack(">I", b32)[0])
        if h >= 0:
            out.append(0xF9)
            out.append(h >> 8)
            out.append(h & 0xFF)
        else:
            out.append(0xFA)
            out.extend(b32)
    else:
        out.append(0xFB)
        out.extend(struct.pack(">d", x))


def half_to_float(h):
    """The float value of IEEE half-precision bits h."""
    exp = (h >> 10) & 0x1F
    man = h & 0x3FF
    if exp == 0:
        val = man * 5.960464477539063e-08  # 2**-24
    elif exp == 31:
        val = float("nan") if man else float("inf")
    else:
        val = (1024 + man) * (2.0 ** (exp - 25))
    return -val if h & 0x8000 else val


def decode(buf, p, size):
    """The float of the `size` (2, 4 or 8: half, single or double precision) bytes of
    buf at p."""
    if size == 2:
        return half_to_float((buf[p] << 8) | buf[p + 1])
    return struct.unpack_from(">f" if size == 4 else ">d", buf, p)[0]
