"""Sealed frames: OSCORE protection of SPOT frames over MQTT and other carriers."""
from spot.core import frame as F
from spot.core.oscore import SecurityContext, OscoreError
from spot.core.secure_frame import seal, open_sealed, is_sealed

SECRET = bytes(range(16))
SALT = b"\x9e\x7c\xa9\x22\x23\x78\x63\x40"


def pair():
    device = SecurityContext(SECRET, b"\x01", b"\x02", SALT)
    bridge = SecurityContext(SECRET, b"\x02", b"\x01", SALT)
    return device, bridge


def test_sealed_frame_opens_to_the_same_frame():
    device, bridge = pair()
    frame = F.encode(F.NOTIFY, 0x10, 7, [1700000000, {8: 356}])
    sealed = seal(device, frame)
    assert is_sealed(sealed) and not is_sealed(frame)
    got, ctx = open_sealed([bridge], sealed)
    assert got == frame and ctx is bridge


def test_sealing_hides_the_frame_and_adds_a_small_overhead():
    device, _ = pair()
    frame = F.encode(F.WRITE, 0x10, 42, {7: 215})
    sealed = seal(device, frame)
    assert frame not in sealed
    # marker, length, option (flags, piv, kid), inner code and payload marker, 8-byte tag
    assert len(sealed) - len(frame) == 1 + 1 + 3 + 2 + 8


def test_replayed_sealed_frame_is_rejected():
    device, bridge = pair()
    sealed = seal(device, F.encode(F.WRITE, 0x10, 42, {7: 215}))
    open_sealed([bridge], sealed)
    try:
        open_sealed([bridge], sealed)
    except OscoreError as e:
        assert e.code == 0x81  # 4.01
    else:
        raise AssertionError("replay accepted")


def test_tampered_sealed_frame_is_rejected_and_window_unchanged():
    device, bridge = pair()
    sealed = bytearray(seal(device, F.encode(F.WRITE, 0x10, 42, {7: 215})))
    sealed[-1] ^= 1
    try:
        open_sealed([bridge], bytes(sealed))
    except OscoreError:
        pass
    else:
        raise AssertionError("tampered frame accepted")
    sealed[-1] ^= 1
    got, _ = open_sealed([bridge], bytes(sealed))  # the genuine one still opens
    assert F.decode(got)[3] == {7: 215}


def test_unknown_sender_is_unauthorised():
    _, bridge = pair()
    stranger = SecurityContext(SECRET, b"\x07", b"\x02", SALT)
    try:
        open_sealed([bridge], seal(stranger, F.encode(F.READ, 0x10, 1)))
    except OscoreError as e:
        assert e.code == 0x81
    else:
        raise AssertionError("unknown kid accepted")


def test_garbage_is_a_clear_error():
    _, bridge = pair()
    for data in (b"", b"\x00", b"\x00\x09\x01", b"\x00\x01\x09" + b"\x00" * 20):
        try:
            open_sealed([bridge], data)
        except OscoreError:
            continue
        raise AssertionError("garbage accepted: %r" % data)
