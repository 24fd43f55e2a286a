"""Robustness of spot.core.cbor.loads() and spot.core.frame.decode() on hostile input.

Random bytes and mutated valid encodings (bit flips, truncation, insertion,
deletion, overwrite): loads() returns a value or raises CBORError and nothing
else, and whatever it accepts cbor2 decodes to the same value; frame.decode()
raises SpotError and nothing else. Huge declared lengths fail at once (a
SIGALRM guard turns a hang into a failure). The atheris harness in
tests/fuzz/fuzz_cbor.py runs for a bounded number of inputs when atheris is
installed.
"""
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cbor_same import same
from spot.core import cbor, frame
from spot.core.cbor import CBORError
from spot.core.errors import MALFORMED, TOO_LARGE, UNSUPPORTED, SpotError

FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz", "fuzz_cbor.py")


class Hang(Exception):
    pass


@contextmanager
def hang_guard(seconds):
    """Raise Hang in the test if the block runs longer than seconds (SIGALRM)."""
    def on_alarm(signum, frame_):
        raise Hang("still running after %s s" % seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)




def check_loads(data, **limits):
    """loads(data) must return or raise CBORError; what it accepts, cbor2 must agree on."""
    try:
        value = cbor.loads(data, **limits)
    except CBORError:
        return
    assert same(value, cbor2.loads(data)), data.hex()
    assert same(cbor.loads(cbor.dumps(value), max_depth=64, max_items=1 << 20), value)


def check_frame(data, **kw):
    """frame.decode(data) must return a well-formed tuple or raise SpotError."""
    try:
        op, service, mid, body = frame.decode(data, **kw)
    except SpotError as e:
        assert e.code in (MALFORMED, TOO_LARGE, UNSUPPORTED), e.code
        return
    assert 1 <= op <= frame.ERROR and 0 <= service <= 255 and 0 <= mid <= 0xFFFF
    rest = data[frame.HEADER_SIZE:]
    assert same(body, cbor.loads(rest)) if rest else body is None


# ---------------------------------------------------------------- strategies

keys = st.integers(-(2**64), 2**64 - 1) | st.text(max_size=6) | st.binary(max_size=6)
scalars = (st.integers(-(2**64), 2**64 - 1) | st.booleans() | st.none() | st.floats()
           | st.text(max_size=12) | st.binary(max_size=12))
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=5) | st.dictionaries(keys, c, max_size=5),
    max_leaves=20,
)
encodings = values.map(cbor.dumps)


@st.composite
def mutated(draw, source=encodings):
    """A valid encoding with 1-4 random edits."""
    data = bytearray(draw(source))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        if kind == "truncate" or not data:
            data = data[:draw(st.integers(0, max(len(data) - 1, 0)))]
            continue
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 3))]
        else:
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


headers = st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF)).map(
    lambda t: bytes([t[0], t[1], t[2] >> 8, t[2] & 0xFF]))
valid_headers = st.tuples(st.integers(1, frame.ERROR), st.integers(0, 254),
                          st.integers(0, 0xFFFF)).map(
    lambda t: frame.encode(t[0], t[1], t[2]))


# ---------------------------------------------------------------- loads()


# random bytes whose item heads cover all 256 initial bytes, not mostly zeros
any_byte = st.integers(0, 255)
random_bytes = st.lists(any_byte, max_size=64).map(bytes)
random_items = st.lists(st.tuples(any_byte, st.binary(max_size=9)), max_size=12).map(
    lambda parts: b"".join(bytes([b]) + rest for b, rest in parts))


@FUZZ
@given(random_bytes | random_items)
def test_random_bytes_decode_or_raise_cbor_error(data):
    with hang_guard(5):
        check_loads(data)


@FUZZ
@given(st.sampled_from([b"\x81", b"\x82", b"\x84", b"\x98\x10", b"\xa1", b"\xa2", b"\xb8\x03"]),
       random_bytes | random_items)
def test_random_bytes_behind_container_heads_decode_or_raise_cbor_error(head, rest):
    with hang_guard(5):
        check_loads(head + rest)


@FUZZ
@given(mutated())
def test_mutated_encodings_decode_or_raise_cbor_error(data):
    with hang_guard(5):
        check_loads(data)


@FUZZ
@given(mutated(), st.integers(0, 4), st.integers(0, 8))
def test_mutated_encodings_under_tight_limits_decode_or_raise_cbor_error(data, depth, items):
    with hang_guard(5):
        check_loads(data, max_depth=depth, max_items=items)


@FUZZ
@given(encodings, st.data())
def test_every_strict_prefix_of_an_encoding_is_rejected(data, draw):
    cut = draw.draw(st.integers(0, len(data) - 1))
    with pytest.raises(CBORError):
        cbor.loads(data[:cut], max_depth=64)


@FUZZ
@given(encodings, st.binary(min_size=1, max_size=8))
def test_any_trailing_bytes_are_rejected(data, tail):
    with pytest.raises(CBORError):
        cbor.loads(data + tail, max_depth=64)


SUFFIXES = [b"", b"\x00" * 9, b"\xff" * 9, b"\x01\x02\x03\x04\x05\x06\x07\x08\x09",
            b"\x18\x18\x61\x80\xa0\xf6\xf9\x3c\x00"]


def test_every_input_of_one_or_two_bytes_decodes_or_raises_cbor_error():
    with hang_guard(20):
        for i in range(1 << 16):
            check_loads(bytes([i >> 8, i & 0xFF]))
            if i < 256:
                check_loads(bytes([i]))


@pytest.mark.parametrize("prefix", [b"", b"\x81", b"\xa1\x01", b"\xa1", b"\x82\x80"])
def test_every_initial_byte_with_any_suffix_decodes_or_raises_cbor_error(prefix):
    with hang_guard(20):
        for b in range(256):
            for suffix in SUFFIXES:
                check_loads(prefix + bytes([b]) + suffix)
                check_frame(b"\x12\x01\x00\x07" + prefix + bytes([b]) + suffix)


HUGE_HEADS = [
    "9bffffffffffffffff",      # array of 2**64-1 items
    "9b8000000000000000",      # array of 2**63 items
    "bb8000000000000000",      # map of 2**63 pairs
    "5b8000000000000000",      # byte string of 2**63 bytes
    "7b8000000000000000",      # text string of 2**63 bytes
    "9affffffff",              # array of 2**32-1 items
    "819b8000000000000000",    # the same, nested
    "a1019b800000000000000000",
]


@pytest.mark.parametrize("head", HUGE_HEADS)
@pytest.mark.parametrize("padding", [0, 1, 1000])
def test_huge_declared_lengths_fail_at_once(head, padding):
    data = bytes.fromhex(head) + bytes(padding)
    for limit in (cbor.MAX_ITEMS, 1 << 70):  # even with the item limit out of the way
        start = time.perf_counter()
        with hang_guard(2), pytest.raises(CBORError):
            cbor.loads(data, max_items=limit)
        assert time.perf_counter() - start < 0.5


def test_a_whole_frame_of_nested_array_heads_fails_at_once():
    start = time.perf_counter()
    with hang_guard(2), pytest.raises(CBORError):
        cbor.loads(b"\x9b\x80\x00\x00\x00\x00\x00\x00\x00" * 110, max_depth=200, max_items=1 << 70)
    assert time.perf_counter() - start < 0.5


# ---------------------------------------------------------------- frame.decode()


@FUZZ
@given(random_bytes | headers.flatmap(lambda h: random_items.map(lambda b: h + b)))
def test_random_frames_decode_or_raise_spot_error(data):
    with hang_guard(5):
        check_frame(data)


@FUZZ
@given(headers, mutated())
def test_any_header_with_mutated_body_decodes_or_raises_spot_error(header, body):
    with hang_guard(5):
        check_frame(header + body)


@FUZZ
@given(valid_headers, mutated())
def test_bad_cbor_body_raises_malformed(header, body):
    try:
        cbor.loads(body)
        body_ok = True
    except CBORError:
        body_ok = False
    if body_ok or not body:
        assert same(frame.decode(header + body)[3], cbor.loads(body) if body else None)
    else:
        with pytest.raises(SpotError) as e:
            frame.decode(header + body)
        assert e.value.code == MALFORMED


@FUZZ
@given(valid_headers, values)
def test_valid_frames_decode_to_their_fields(header, body):
    data = header + cbor.dumps(body)
    try:
        cbor.loads(data[frame.HEADER_SIZE:])
    except CBORError:  # deeper than the default limit
        return
    op, service, mid, decoded = frame.decode(data, max_size=1 << 20)
    assert (op, service, mid) == (header[0] & 0x0F, header[1], (header[2] << 8) | header[3])
    assert same(decoded, cbor.loads(data[frame.HEADER_SIZE:]))


@pytest.mark.parametrize("data, code", [
    (b"", MALFORMED), (b"\x11", MALFORMED), (b"\x11\x01\x00", MALFORMED),
    (b"\x21\x01\x00\x00", UNSUPPORTED), (b"\x10\x01\x00\x00", UNSUPPORTED),
    (b"\x1a\x01\x00\x00", UNSUPPORTED), (b"\x1f\x01\x00\x00", UNSUPPORTED),
    (b"\x11\x01\x00\x00\x9b\xff\xff\xff\xff\xff\xff\xff\xff", MALFORMED),
    (b"\x11\x01\x00\x00\x00\x00", MALFORMED), (b"\x11\x01\x00\x00\xff", MALFORMED),
])
def test_frame_rejections_carry_their_error_code(data, code):
    with pytest.raises(SpotError) as e:
        frame.decode(data)
    assert e.value.code == code


def test_frame_size_limit_is_inclusive():
    data = frame.encode(frame.WRITE, 1, 2, b"x" * 100)
    assert frame.decode(data, max_size=len(data))[3] == b"x" * 100
    with pytest.raises(SpotError) as e:
        frame.decode(data, max_size=len(data) - 1)
    assert e.value.code == TOO_LARGE


# ---------------------------------------------------------------- atheris

try:
    import atheris  # noqa: F401  optional: coverage-guided fuzzing
    HAVE_ATHERIS = True
except ImportError:
    HAVE_ATHERIS = False


@pytest.mark.skipif(not HAVE_ATHERIS, reason="atheris not installed (optional: pip install atheris)")
def test_atheris_harness_finds_no_failure(tmp_path):
    proc = subprocess.run(
        [sys.executable, HARNESS, "-runs=50000", "-seed=20240601", "-max_len=1100",
         "-len_control=20", "-artifact_prefix=%s/" % tmp_path],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    tail = "\n".join(proc.stderr.splitlines()[-30:])
    assert proc.returncode == 0, tail
    assert "Done 50000 runs" in proc.stderr, tail
