"""OSCORE protection for SPOT frames on carriers other than CoAP (MQTT, serial).

A protected frame is the frame sealed as the payload of an OSCORE-protected
POST (RFC 8613): the same keys, nonces, AEAD and replay window as OSCORE over
CoAP, so protection survives brokers and gateways end to end.

    0x00 | len(option) | OSCORE option value (flags, Partial IV, kid) | ciphertext

A plain frame never starts with 0x00 (its version nibble is at least 1), so a
receiver tells the two apart from the first byte.
"""
from .compat import const
from .oscore import POST, OscoreError, find_context, BAD_REQUEST

MARK = const(0x00)


def is_sealed(data):
    return len(data) > 0 and data[0] == MARK


def seal(ctx, frame):
    """Protect frame with the sender side of the OSCORE context ctx."""
    _, option, ciphertext, _ = ctx.protect_request(POST, [], frame)
    return bytes((MARK, len(option))) + option + ciphertext


def open_sealed(contexts, data):
    """(frame, context) of a sealed frame; raises OscoreError (replay, bad tag,
    unknown kid, malformed), in which case no context changed."""
    if len(data) < 2 or data[0] != MARK or 2 + data[1] > len(data):
        raise OscoreError(BAD_REQUEST, "not a sealed frame")
    end = 2 + data[1]
    option = bytes(data[2:end])
    ctx = find_context(contexts, option)
    code, options, payload, _ = ctx.unprotect_request(option, bytes(data[end:]))
    if code != POST or options:
        raise OscoreError(BAD_REQUEST, "not a sealed frame")
    return payload, ctx
