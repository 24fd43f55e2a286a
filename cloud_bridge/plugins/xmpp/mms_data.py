"""IEC 61850 values <-> MMS Data, and model types -> MMS TypeDescription (IEC 61850-8-1).

Values are those of the shared model (cloud_bridge/iec61850/model.py): bool,
int, float, str, bytes, a Quality mask (int), a Timestamp (float Unix
seconds), Dbpos (int 0..3), and for structures {member: value}. Types are its
type descriptions: {"name", "btype"} for a leaf, {"name", "members"} for a
structure. MMS Data are asn1tools values of mms.asn (("integer", 5), ...).

The basic types map as IEC 61850-8-1 says: BOOLEAN -> boolean, INTn ->
integer, INTnU -> unsigned, FLOAT32 -> floating-point (exponent width 8, then
the IEEE 754 single), Quality -> bit-string(13), Timestamp -> utc-time
(seconds, 24-bit fraction, time quality), Dbpos and Check -> bit-string(2),
VisStringN -> visible-string, OctetN -> octet-string, Enum -> integer.
"""
import math
import struct

TIME_QUALITY = 0x0A          # not leap, no failure, synchronised, 10 bits of accuracy
_INT_WIDTH = {"INT8": 8, "INT16": 16, "INT32": 32, "INT64": 64,
              "INT8U": 8, "INT16U": 16, "INT32U": 32}


class DataError(ValueError):
    """MMS Data that does not fit the type asked for."""


def _bits(value, n):
    """bit i of value is bit i of the bit-string (bit 0: most significant of octet 0)."""
    out = bytearray((n + 7) // 8)
    for i in range(n):
        if value >> i & 1:
            out[i // 8] |= 0x80 >> (i % 8)
    return (bytes(out), n)


def _from_bits(data, n):
    raw, length = data
    if length != n:
        raise DataError("expected a bit-string of %d bits, got %d" % (n, length))
    return sum(1 << i for i in range(n) if raw[i // 8] & (0x80 >> (i % 8)))


def utc_time(t):
    """IEC 61850-8-1 UtcTime octets of Unix seconds t."""
    t = max(0.0, float(t))
    secs = int(t)
    frac = min(int((t - secs) * (1 << 24)), (1 << 24) - 1)
    return struct.pack(">I", secs & 0xFFFFFFFF) + frac.to_bytes(3, "big") + bytes([TIME_QUALITY])


def from_utc_time(octets):
    return struct.unpack(">I", octets[:4])[0] + int.from_bytes(octets[4:7], "big") / (1 << 24)


def to_data(t, value):
    """The MMS Data of a model value of type description t."""
    if "members" in t:
        value = value if isinstance(value, dict) else {}
        return ("structure", [to_data(m, value.get(m["name"])) for m in t["members"]])
    b = t["btype"]
    if b == "BOOLEAN":
        return ("boolean", bool(value))
    if b in _INT_WIDTH:
        return ("unsigned" if b.endswith("U") else "integer", int(value or 0))
    if b == "FLOAT32":
        v = float(value or 0.0)
        if not math.isfinite(v) or abs(v) > 3.4028234663852886e38:
            v = float("nan")
        return ("floating-point", b"\x08" + struct.pack(">f", v))
    if b == "Quality":
        return ("bit-string", _bits(int(value or 0), 13))
    if b == "Timestamp":
        return ("utc-time", utc_time(value or 0.0))
    if b in ("Dbpos", "Check"):
        v = int(value or 0)
        return ("bit-string", _bits((v >> 1 & 1) | (v & 1) << 1, 2))   # 8-1: MSB first
    if b.startswith("VisString"):
        return ("visible-string", str(value if value is not None else ""))
    if b.startswith("Octet"):
        return ("octet-string", bytes(value or b""))
    if b.startswith("Enum"):
        return ("integer", int(value or 0))
    raise DataError("no MMS mapping for basic type %s" % b)


def from_data(t, data):
    """The model value of MMS Data for type description t; DataError if it does not fit."""
    if not (isinstance(data, tuple) and len(data) == 2):
        raise DataError("not MMS Data")
    kind, v = data
    if "members" in t:
        if kind != "structure":
            raise DataError("%s is a structure, got %s" % (t["name"], kind))
        if len(v) > len(t["members"]):
            raise DataError("%s has %d members, got %d" % (t["name"], len(t["members"]), len(v)))
        return {m["name"]: from_data(m, d) for m, d in zip(t["members"], v)}
    b = t["btype"]
    want = to_data(t, None)[0]
    if kind != want:
        raise DataError("%s is %s, got %s" % (t["name"], want, kind))
    if kind == "floating-point":
        if len(v) != 5 or v[0] != 8:
            raise DataError("floating-point must be 5 octets, exponent width 8")
        return struct.unpack(">f", v[1:])[0]
    if kind == "bit-string":
        n = 13 if b == "Quality" else 2
        raw = _from_bits(v, n)
        return raw if n == 13 else (raw >> 1 & 1) | (raw & 1) << 1
    if kind == "utc-time":
        return from_utc_time(v)
    if kind in ("integer", "unsigned") and b in _INT_WIDTH:
        w = _INT_WIDTH[b]
        lo, hi = (0, (1 << w) - 1) if kind == "unsigned" else (-(1 << w - 1), (1 << w - 1) - 1)
        if not lo <= v <= hi:
            raise DataError("%d does not fit %s" % (v, b))
    return v


def type_description(t):
    """The MMS TypeDescription of a model type description."""
    if "members" in t:
        return ("structure", {"packed": False, "components": [
            {"componentName": m["name"], "componentType": ("typeDescription", type_description(m))}
            for m in t["members"]]})
    b = t["btype"]
    if b == "BOOLEAN":
        return ("boolean", None)
    if b in _INT_WIDTH:
        return ("unsigned" if b.endswith("U") else "integer", _INT_WIDTH[b])
    if b == "FLOAT32":
        return ("floating-point", {"format-width": 32, "exponent-width": 8})
    if b == "Quality":
        return ("bit-string", 13)
    if b in ("Dbpos", "Check"):
        return ("bit-string", 2)
    if b == "Timestamp":
        return ("utc-time", None)
    if b.startswith("VisString"):
        return ("visible-string", -int(b[len("VisString"):] or 255))
    if b.startswith("Octet"):
        return ("octet-string", -int(b[len("Octet"):] or 64))
    if b.startswith("Enum"):
        return ("integer", 8)
    raise DataError("no MMS mapping for basic type %s" % b)
