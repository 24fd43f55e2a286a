"""The SPOT frame: a 4-byte header and a CBOR body.

    byte 0   protocol version (high nibble, 1) | operation (low nibble)
    byte 1   service id (0-254; 255 reserved)
    byte 2-3 message id, big-endian: correlates a RESULT/ERROR with its request
             and a NOTIFY with the SUBSCRIBE it serves
    byte 4-  body: one deterministic CBOR item, or nothing (a None body)

A receiver can route or drop a frame on bytes 0-1 alone (see peek()).
"""
from .compat import const, MICROPYTHON
from . import cbor
from .errors import SpotError

if MICROPYTHON:
    def __getattr__(name):
        # F.RESULT, `from .frame import RESULT`: core/frame_numbers, imported on first use
        # (this module and the device-side ones use private copies and never ask)
        from . import frame_numbers
        return getattr(frame_numbers, name)
else:
    from .frame_numbers import *  # noqa: F401,F403  the numbers as this module's attributes

# core.errors' codes and core/frame_numbers' numbers, copied: no global slot holds them
# on a board
_TOO_LARGE = const(7)
_MALFORMED = const(9)
_UNSUPPORTED = const(10)
_VERSION = const(1)
_HEADER_SIZE = const(4)
_MAX_FRAME = const(1024)
_ERROR = const(9)


def encode(op, service, mid, body=None, buf=None):
    """A whole frame as bytes; buf: a bytearray to encode in (reused, it keeps its room)."""
    if buf is None:
        out = bytearray(_HEADER_SIZE)
    else:
        out = buf
        out[:] = b'\0\0\0\0'
    out[0] = (_VERSION << 4) | op
    out[1] = service
    out[2] = (mid >> 8) & 0xFF
    out[3] = mid & 0xFF
    if body is not None:
        cbor.encode_into(out, body)
    return bytes(out)


def peek(frame):
    """(version, op, service) from the first two bytes, or None if too short."""
    if len(frame) < 2:
        return None
    b = frame[0]
    return b >> 4, b & 0x0F, frame[1]


def message_id(frame):
    """The message id of a frame with a whole header, else None."""
    if len(frame) < _HEADER_SIZE:
        return None
    return (frame[2] << 8) | frame[3]


def decode(frame, max_size=_MAX_FRAME):
    """(op, service, mid, body) of a frame.

    Raises SpotError: TOO_LARGE, UNSUPPORTED (version or op) or MALFORMED
    (short header, bad CBOR). The caller answers with message_id(frame).
    """
    if len(frame) > max_size:
        raise SpotError(_TOO_LARGE, max_size)
    if len(frame) < _HEADER_SIZE:
        raise SpotError(_MALFORMED, "short header")
    b = frame[0]
    if b >> 4 != _VERSION:
        raise SpotError(_UNSUPPORTED, "version %d" % (b >> 4))
    op = b & 0x0F
    if op == 0 or op > _ERROR:
        raise SpotError(_UNSUPPORTED, "op %d" % op)
    body = None
    if len(frame) > _HEADER_SIZE:
        try:
            body = cbor.loads(frame, start=_HEADER_SIZE)
        except cbor.CBORError as e:
            raise SpotError(_MALFORMED, str(e))
    return op, frame[1], (frame[2] << 8) | frame[3], body


def error(service, mid, code, detail=None):
    """An ERROR frame answering message mid."""
    return encode(_ERROR, service, mid, [code] if detail is None else [code, detail])
