"""Property tests: spot.core.cbor against cbor2, the reference implementation.

Encoding must be byte-identical to cbor2.dumps(x, canonical=True) for every type
SPOT uses; decoding must invert it, agree with cbor2's decoder, and accept any
other valid definite-length encoding of the same value (longer heads, wider
floats, any map order). Limits must bite exactly at their boundary.
"""
import math
import struct

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from spot.core import cbor, cbor_float, cbor_utf8
from spot.core.cbor import CBORError

settings.register_profile(
    "cbor", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("cbor")

UINT64_MAX = 2**64 - 1

# ---------------------------------------------------------------- strategies

ints = st.integers(-(2**64), UINT64_MAX)
small_ints = st.integers(-30, 30)  # around the 1-byte head boundaries
boundary_ints = st.sampled_from(
    [s * v + d for v in (23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, UINT64_MAX)
     for s in (1, -1) for d in (-1, 0, 1) if -(2**64) <= s * v + d <= UINT64_MAX]
)


def _from_bits(fmt, nbits):
    return st.integers(0, 2**nbits - 1).map(
        lambda b: struct.unpack(">" + fmt, b.to_bytes(nbits // 8, "big"))[0]
    )


f16_values = _from_bits("e", 16)
f32_values = _from_bits("f", 32)
f64_values = _from_bits("d", 64)
floats = st.floats() | f16_values | f32_values | f64_values | st.sampled_from(
    [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 2.0**-24, 2.0**-25, 2.0**-149,
     2.0**-150, 65504.0, 65520.0, 3.4028234663852886e38, 1.0e300]
)
texts = st.text(max_size=40)
blobs = st.binary(max_size=40)
keys = ints | small_ints | texts | blobs
scalars = ints | small_ints | boundary_ints | st.booleans() | st.none() | floats | texts | blobs


def _containers(children):
    return (
        st.lists(children, max_size=6)
        | st.lists(children, max_size=6).map(tuple)
        | st.dictionaries(keys, children, max_size=6)
    )


values = st.recursive(scalars, _containers, max_leaves=25)


# ---------------------------------------------------------------- helpers


def normalized(x):
    """What decoding gives back for x: tuples become lists."""
    if isinstance(x, (list, tuple)):
        return [normalized(v) for v in x]
    if isinstance(x, dict):
        return {k: normalized(v) for k, v in x.items()}
    return x


def same(a, b):
    """Equal values of equal types, recursively; NaN == NaN and -0.0 != 0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if math.isnan(a):
            return math.isnan(b)
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def decode(data):
    """cbor.loads with room for any nesting the value strategy can draw."""
    return cbor.loads(data, max_depth=200)


def _loose_head(draw, major, n):
    """A valid head for (major, n), not necessarily the shortest."""
    widths = [w for w, limit in ((0, 24), (1, 2**8), (2, 2**16), (4, 2**32), (8, 2**64))
              if n < limit]
    w = draw(st.sampled_from(widths))
    if w == 0:
        return bytes([(major << 5) | n])
    ai = {1: 24, 2: 25, 4: 26, 8: 27}[w]
    return bytes([(major << 5) | ai]) + n.to_bytes(w, "big")


def _loose_float(draw, x):
    """x as f16, f32 or f64, any width that keeps it exactly."""
    forms = [b"\xfb" + struct.pack(">d", x)]
    for tag, fmt in ((b"\xfa", ">f"), (b"\xf9", ">e")):
        try:
            packed = struct.pack(fmt, x)
        except OverflowError:
            break
        back = struct.unpack(fmt, packed)[0]
        if back == x or (math.isnan(x) and math.isnan(back)):
            forms.append(tag + packed)
    return draw(st.sampled_from(forms))


def loose_encode(draw, x):
    """A valid but not necessarily deterministic encoding of x (definite lengths)."""
    if x is False or x is True or x is None:
        return {False: b"\xf4", True: b"\xf5", None: b"\xf6"}[x]
    if type(x) is int:
        return _loose_head(draw, 0, x) if x >= 0 else _loose_head(draw, 1, -1 - x)
    if type(x) is float:
        return _loose_float(draw, x)
    if type(x) is bytes:
        return _loose_head(draw, 2, len(x)) + x
    if type(x) is str:
        raw = x.encode("utf-8")
        return _loose_head(draw, 3, len(raw)) + raw
    if isinstance(x, (list, tuple)):
        return _loose_head(draw, 4, len(x)) + b"".join(loose_encode(draw, v) for v in x)
    items = draw(st.permutations(list(x.items())))
    return _loose_head(draw, 5, len(x)) + b"".join(
        loose_encode(draw, k) + loose_encode(draw, v) for k, v in items
    )


def encoded_map_keys(data):
    """The encoded keys of the map at the start of data, in wire order."""
    assert data[0] >> 5 == 5
    n, pos = _head_count(data)
    out = []
    for _ in range(n):
        _, end = cbor.decode_prefix(data, pos)
        out.append(data[pos:end])
        _, pos = cbor.decode_prefix(data, end)
    return out


def _head_count(data):
    ai = data[0] & 0x1F
    if ai < 24:
        return ai, 1
    width = {24: 1, 25: 2, 26: 4, 27: 8}[ai]
    return int.from_bytes(data[1:1 + width], "big"), 1 + width


# ---------------------------------------------------------------- encoding


@given(values)
def test_encoding_equals_cbor2_canonical(x):
    assert cbor.dumps(x) == cbor2.dumps(x, canonical=True)


@given(ints | boundary_ints)
def test_integer_encoding_equals_cbor2(n):
    assert cbor.dumps(n) == cbor2.dumps(n, canonical=True)


@given(st.one_of(st.integers(2**64, 2**80), st.integers(-(2**80), -(2**64) - 1)))
def test_integers_outside_64_bits_raise_cbor_error(n):
    with pytest.raises(CBORError):
        cbor.dumps(n)


@given(blobs)
def test_bytearray_and_memoryview_encode_like_bytes(b):
    expected = cbor2.dumps(b, canonical=True)
    assert cbor.dumps(bytearray(b)) == expected
    assert cbor.dumps(memoryview(b)) == expected


@given(st.dictionaries(keys, small_ints, max_size=12))
def test_map_key_order_matches_cbor2_for_mixed_keys(d):
    assert cbor.dumps(d) == cbor2.dumps(d, canonical=True)


@given(st.dictionaries(keys, small_ints, min_size=2, max_size=12), st.randoms())
def test_map_keys_are_sorted_length_first_then_bytewise_whatever_the_insertion_order(d, rnd):
    items = list(d.items())
    rnd.shuffle(items)
    data = cbor.dumps(dict(items))
    assert data == cbor.dumps(d)
    wire_keys = encoded_map_keys(data)
    assert wire_keys == sorted(wire_keys, key=lambda k: (len(k), k))
    assert len(set(wire_keys)) == len(wire_keys)


@pytest.mark.parametrize("bad", [{1.5: 0}, {True: 0}, {None: 0}, {(1, 2): 0}, {1: 0, "a": 0, 2.0: 0}])
def test_map_keys_other_than_int_str_bytes_raise_cbor_error(bad):
    with pytest.raises(CBORError):
        cbor.dumps(bad)


@pytest.mark.parametrize("bad", [set(), frozenset(), object(), 1j, [1, {2}], {"a": object()}])
def test_unsupported_values_raise_cbor_error(bad):
    with pytest.raises(CBORError):
        cbor.dumps(bad)


def test_text_with_lone_surrogate_raises_cbor_error():
    with pytest.raises(CBORError):
        cbor.dumps("a\ud800")


# ---------------------------------------------------------------- floats


@pytest.mark.parametrize("source", ["f16", "f32", "f64"])
@given(data=st.data())
def test_float_shortest_form_matches_cbor2_for_random_bit_patterns(source, data):
    x = data.draw({"f16": f16_values, "f32": f32_values, "f64": f64_values}[source])
    ours = cbor.dumps(x)
    assert ours == cbor2.dumps(x, canonical=True)
    if not math.isnan(x):
        # a value that came from a narrower format never takes more room than it
        assert len(ours) <= {"f16": 3, "f32": 5, "f64": 9}[source]


@given(st.integers(0, 2**16 - 1))
def test_every_half_precision_value_round_trips_bit_exactly(bits):
    x = struct.unpack(">e", bits.to_bytes(2, "big"))[0]
    data = cbor.dumps(x)
    back = cbor.loads(data)
    assert same(back, x)
    if not math.isnan(x):
        assert data == b"\xf9" + bits.to_bytes(2, "big")


def test_all_half_precision_bit_patterns_decode_like_struct():
    for bits in range(2**16):
        raw = bits.to_bytes(2, "big")
        expected = struct.unpack(">e", raw)[0]
        assert same(cbor.loads(b"\xf9" + raw), expected), hex(bits)


@given(f32_values)
def test_single_precision_values_decode_bit_exactly(x):
    assert same(cbor.loads(b"\xfa" + struct.pack(">f", x)), x)


def test_half_bits_matches_struct_for_all_exact_halves():
    for bits in range(2**16):
        x = struct.unpack(">e", bits.to_bytes(2, "big"))[0]
        f32 = int.from_bytes(struct.pack(">f", x), "big")
        h = cbor_float.half_bits(f32)
        if math.isnan(x):
            assert h == 0x7E00
        else:
            assert h == bits, (hex(bits), hex(h))


# ---------------------------------------------------------------- decoding


@given(values)
def test_decode_inverts_encode(x):
    assert same(decode(cbor.dumps(x)), normalized(x))


@given(values)
def test_decoder_agrees_with_cbor2_on_canonical_encodings(x):
    data = cbor2.dumps(x, canonical=True)
    assert same(decode(data), cbor2.loads(data))


@given(values)
def test_decoding_cbor2_non_canonical_encoding_gives_the_same_value(x):
    data = cbor2.dumps(x)  # f64 floats, insertion-ordered maps
    assert same(decode(data), normalized(x))


@given(data=st.data())
def test_decoding_any_definite_length_encoding_gives_the_same_value(data):
    x = data.draw(values)
    encoded = loose_encode(data.draw, x)
    assert same(cbor2.loads(encoded), normalized(x))  # the test's encoding is valid CBOR
    assert same(decode(encoded), normalized(x))


@settings(max_examples=100)
@given(values)
def test_decode_prefix_reads_one_item_and_reports_its_end(x):
    item = cbor.dumps(x)
    data = b"\xff" + item + b"\x00\x01"
    value, end = cbor.decode_prefix(data, 1, max_depth=200)
    assert same(value, normalized(x))
    assert end == 1 + len(item)


@settings(max_examples=100)
@given(values)
def test_decode_accepts_memoryview_slices(x):
    item = cbor.dumps(x)
    view = memoryview(b"\x00\x00" + item + b"\x00")[2:-1]
    assert same(decode(view), normalized(x))


@given(st.binary(max_size=60))
def test_bad_utf8_is_rejected_exactly_when_python_rejects_it(raw):
    try:
        raw.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    data = cbor2.dumps(raw)
    data = bytes([data[0] + 0x20]) + data[1:]  # same head, major type 3
    if valid:
        assert cbor.loads(data) == raw.decode("utf-8")
    else:
        with pytest.raises(CBORError):
            cbor.loads(data)


@given(st.binary(max_size=24) | st.text(max_size=8).map(lambda s: s.encode("utf-8")))
def test_portable_utf8_check_agrees_with_python(raw):
    # the byte-by-byte check used on runtimes whose decode() is lax (MicroPython)
    try:
        raw.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert cbor_utf8.valid(raw) is valid


@pytest.mark.parametrize("raw", [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\xaf", b"\xc1\xbf",
                                 b"\xe0\x80\xaf", b"\xe0\x9f\xbf", b"\xf0\x80\x80\xaf",
                                 b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
                                 b"\xf8\x88\x80\x80\x80", b"a\xe6\xb0", b"\xe6\xb0a"])
def test_portable_utf8_check_rejects_surrogates_overlongs_and_out_of_range(raw):
    assert cbor_utf8.valid(raw) is False


@pytest.mark.parametrize("raw", ["\u007f", "\u0080", "\u07ff", "\u0800", "\ud7ff", "\ue000",
                                 "\uffff", "\U00010000", "\U0010ffff"])
def test_portable_utf8_check_accepts_boundary_code_points(raw):
    assert cbor_utf8.valid(raw.encode("utf-8")) is True


def test_lax_runtime_path_rejects_what_python_decode_lets_through(monkeypatch):
    # Force the MicroPython path on CPython: the result must not change.
    monkeypatch.setattr(cbor, "_LAX_UTF8", True)
    assert cbor.loads(b"\x63\xe6\xb0\xb4") == "\u6c34"
    with pytest.raises(CBORError):
        cbor.loads(b"\x63\xed\xa0\x80")


# ---------------------------------------------------------------- limits


def nested(kind, n):
    """n containers nested inside each other around the integer 0."""
    x = 0
    for i in range(n):
        x = [x] if kind == "list" or (kind == "mixed" and i % 2) else {i: x}
    return x


@pytest.mark.parametrize("kind", ["list", "dict", "mixed"])
@given(limit=st.integers(1, 60))
def test_max_depth_boundary(kind, limit):
    ok = cbor.dumps(nested(kind, limit))
    assert same(cbor.loads(ok, max_depth=limit), nested(kind, limit))
    with pytest.raises(CBORError):
        cbor.loads(cbor.dumps(nested(kind, limit + 1)), max_depth=limit)


def test_default_max_depth_is_16():
    assert cbor.loads(cbor.dumps(nested("list", cbor.MAX_DEPTH))) == nested("list", 16)
    with pytest.raises(CBORError):
        cbor.loads(cbor.dumps(nested("list", cbor.MAX_DEPTH + 1)))


def test_nesting_deeper_than_the_stack_raises_cbor_error():
    data = b"\x81" * 100000 + b"\x00"
    with pytest.raises(CBORError):
        cbor.loads(data, max_depth=10**9)


@pytest.mark.parametrize("kind", ["bytes", "str", "list", "dict"])
@given(limit=st.integers(0, 300))
def test_max_items_boundary(kind, limit):
    def make(n):
        return {"bytes": lambda: b"x" * n, "str": lambda: "\u00fc" * (n // 2) + "y" * (n % 2),
                "list": lambda: [0] * n, "dict": lambda: {i: 0 for i in range(n)}}[kind]()

    at_limit = make(limit)
    assert cbor.loads(cbor.dumps(at_limit), max_items=limit) == at_limit
    with pytest.raises(CBORError):
        cbor.loads(cbor.dumps(make(limit + 1)), max_items=limit)


def test_text_limit_counts_utf8_bytes_not_characters():
    text = "\u6c34" * 3  # 3 characters, 9 bytes
    assert cbor.loads(cbor.dumps(text), max_items=9) == text
    with pytest.raises(CBORError):
        cbor.loads(cbor.dumps(text), max_items=8)


def test_default_max_items_is_4096():
    assert cbor.loads(cbor.dumps(b"\x00" * 4096)) == b"\x00" * 4096
    with pytest.raises(CBORError):
        cbor.loads(cbor.dumps(b"\x00" * 4097))
