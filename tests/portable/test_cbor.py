"""Deterministic CBOR codec: RFC 8949 Appendix A vectors and one test per rejection class.

Portable: plain asserts, no pytest, runs under CPython and MicroPython.
Every vector is checked both ways (encode gives the bytes, decode gives the value).
"""
import struct

from spot.core import cbor
from spot.core.cbor import CBORError

NAN = float("nan")
INF = float("inf")


def _h(text):
    return bytes.fromhex(text)


def _same(a, b):
    """Equal values of equal types; NaN equals NaN, -0.0 differs from 0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if a != a:
            return b != b
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(k in b and _same(a[k], b[k]) for k in a)
    return a == b


def _both_ways(value, hexbytes):
    data = _h(hexbytes)
    assert cbor.dumps(value) == data, (value, cbor.dumps(value).hex(), hexbytes)
    assert _same(cbor.loads(data), value), (hexbytes, cbor.loads(data), value)


def _rejects(data, **limits):
    try:
        value = cbor.loads(data, **limits)
    except CBORError:
        return
    raise AssertionError("accepted %s as %r" % (bytes(data).hex(), value))


# ------------------------------------------------------------ RFC 8949 Appendix A


def test_unsigned_integers():
    for value, hexbytes in (
        (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"),
        (100, "1864"), (1000, "1903e8"), (1000000, "1a000f4240"),
        (1000000000000, "1b000000e8d4a51000"),
        (18446744073709551615, "1bffffffffffffffff"),
    ):
        _both_ways(value, hexbytes)


def test_negative_integers():
    for value, hexbytes in (
        (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
        (-18446744073709551616, "3bffffffffffffffff"),
    ):
        _both_ways(value, hexbytes)


def test_integers_beyond_64_bits_are_not_encoded():
    for value in (18446744073709551616, -18446744073709551617):
        try:
            cbor.dumps(value)
        except CBORError:
            continue
        raise AssertionError("encoded %d" % value)


def test_floats():
    for value, hexbytes in (
        (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"), (1.1, "fb3ff199999999999a"),
        (1.5, "f93e00"), (65504.0, "f97bff"), (100000.0, "fa47c35000"),
        (3.4028234663852886e+38, "fa7f7fffff"), (1.0e+300, "fb7e37e43c8800759c"),
        (5.960464477539063e-8, "f90001"), (0.00006103515625, "f90400"),
        (-4.0, "f9c400"), (-4.1, "fbc010666666666666"),
    ):
        _both_ways(value, hexbytes)


def test_float_infinities_and_nan():
    _both_ways(INF, "f97c00")
    _both_ways(NAN, "f97e00")
    _both_ways(-INF, "f9fc00")


def test_wider_float_forms_of_infinities_and_nan_decode():
    for hexbytes, value in (
        ("fa7f800000", INF), ("fa7fc00000", NAN), ("faff800000", -INF),
        ("fb7ff0000000000000", INF), ("fb7ff8000000000000", NAN),
        ("fbfff0000000000000", -INF),
    ):
        assert _same(cbor.loads(_h(hexbytes)), value), hexbytes


def test_simple_values_false_true_null():
    _both_ways(False, "f4")
    _both_ways(True, "f5")
    _both_ways(None, "f6")


def test_byte_strings():
    _both_ways(b"", "40")
    _both_ways(b"\x01\x02\x03\x04", "4401020304")


def test_bytearray_and_memoryview_encode_as_byte_strings():
    assert cbor.dumps(bytearray(b"\x01\x02")) == _h("420102")
    assert cbor.dumps(memoryview(b"\x01\x02")) == _h("420102")


def test_text_strings():
    for value, hexbytes in (
        ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\"\\", "62225c"),
        ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"), ("\U00010151", "64f0908591"),
    ):
        _both_ways(value, hexbytes)


def test_arrays():
    _both_ways([], "80")
    _both_ways([1, 2, 3], "83010203")
    _both_ways([1, [2, 3], [4, 5]], "8301820203820405")
    _both_ways(list(range(1, 26)),
               "98190102030405060708090a0b0c0d0e0f101112131415161718181819")


def test_tuples_encode_as_arrays_and_decode_as_lists():
    assert cbor.dumps((1, (2, 3))) == _h("8201820203")
    assert cbor.loads(_h("8201820203")) == [1, [2, 3]]


def test_maps():
    _both_ways({}, "a0")
    _both_ways({1: 2, 3: 4}, "a201020304")
    _both_ways({"a": 1, "b": [2, 3]}, "a26161016162820203")
    _both_ways(["a", {"b": "c"}], "826161a161626163")
    _both_ways({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
               "a56161614161626142616361436164614461656145")


def test_map_keys_sort_length_first_then_bytewise():
    value = {"aa": 0, b"a": 1, 100: 2, -1: 3, 10: 4, "b": 5}
    #                 10      -1      100       b"a"      "b"       "aa"
    _both_ways(value, "a6" "0a04" "2003" "186402" "416101" "616205" "62616100")


def test_telemetry_body():
    body = [1700000000, {1: 1234, 3: 2301, 4: 523, 11: -52, 21: 123456}]
    _both_ways(body, "821a6553f100a5011904d2031908fd0419020b0b3833151a0001e240")


def test_non_shortest_heads_decode_to_the_same_value():
    assert cbor.loads(_h("1801")) == 1
    assert cbor.loads(_h("1b0000000000000001")) == 1
    assert cbor.loads(_h("5800")) == b""
    assert cbor.loads(_h("9a0000000101")) == [1]
    assert _same(cbor.loads(_h("fb3ff8000000000000")), 1.5)


def test_decode_accepts_memoryview_and_bytearray():
    assert cbor.loads(memoryview(_h("00830102031817"))[1:5]) == [1, 2, 3]
    assert cbor.loads(bytearray(_h("6161"))) == "a"


def test_decode_prefix_returns_the_end_position():
    data = _h("ff8201026161")
    assert cbor.decode_prefix(data, 1) == ([1, 2], 4)
    assert cbor.decode_prefix(data, 4) == ("a", 6)


# ------------------------------------------------------------ one rejection per class


def test_rejects_empty_input():
    _rejects(b"")


def test_rejects_truncated_head():
    _rejects(_h("19 01".replace(" ", "")))
    _rejects(_h("1b00000000000000"))
    _rejects(_h("fa7f80"))


def test_rejects_truncated_string():
    _rejects(_h("62 61".replace(" ", "")))
    _rejects(_h("44010203"))


def test_rejects_truncated_container():
    _rejects(_h("8201"))
    _rejects(_h("a2010203"))


def test_rejects_additional_info_28_to_30():
    for major in range(8):
        for ai in (28, 29, 30):
            _rejects(bytes([(major << 5) | ai]) + bytes(8))


def test_rejects_indefinite_lengths():
    for hexbytes in ("5f42010243030405ff", "7f657374726561646d696e67ff", "9fff",
                     "bf6346756ef563416d7421ff"):
        _rejects(_h(hexbytes))


def test_rejects_lone_break():
    _rejects(_h("ff"))
    _rejects(_h("81ff"))


def test_rejects_tags():
    _rejects(_h("c074323031332d30332d32315432303a30343a30305a"))
    _rejects(_h("c11a514b67b0"))
    _rejects(_h("c249010000000000000000"))  # bignum
    _rejects(_h("d9d9f700"))  # self-describe tag 55799


def test_rejects_simple_values_other_than_false_true_null():
    for hexbytes in ("e0", "f0", "f3", "f7", "f800", "f814", "f818", "f8ff"):
        _rejects(_h(hexbytes))


def test_rejects_duplicate_map_keys():
    _rejects(_h("a2010001f5"))
    _rejects(_h("a2616100616101"))
    _rejects(_h("a20100180100"))  # same key, the second with a longer head


def test_rejects_map_keys_not_int_str_or_bytes():
    for hexbytes in ("a18000", "a1a000", "a1f400", "a1f600", "a1f93c0000"):
        _rejects(_h(hexbytes))


def test_rejects_nesting_deeper_than_the_limit():
    _rejects(b"\x81" * 17 + b"\x00")
    assert cbor.loads(b"\x81" * 16 + b"\x00") is not None
    _rejects(_h("a101a101a10100"), max_depth=2)
    assert cbor.loads(_h("a101a10100"), max_depth=2) == {1: {1: 0}}


def test_rejects_lengths_over_the_limit():
    _rejects(_h("43010203"), max_items=2)
    _rejects(_h("63616263"), max_items=2)
    _rejects(_h("83010203"), max_items=2)
    _rejects(_h("a3010203040506"), max_items=2)
    assert cbor.loads(_h("820102"), max_items=2) == [1, 2]


def test_rejects_huge_declared_lengths_at_once():
    _rejects(_h("9bffffffffffffffff"), max_items=1 << 70)
    _rejects(_h("5bffffffffffffffff00"), max_items=1 << 70)
    _rejects(_h("bb7fffffffffffffff0000"), max_items=1 << 70)


def test_rejects_invalid_utf8():
    for hexbytes in (
        "61ff",      # never valid
        "6180",      # lone continuation byte
        "62c328",    # lead byte without continuation
        "62e6b0",    # truncated sequence
        "62c0af",    # overlong "/"
        "63e080af",  # overlong "/"
        "63eda080",  # surrogate U+D800
        "64f4908080",  # past U+10FFFF
        "64f8888080",  # five-byte form
    ):
        _rejects(_h(hexbytes))


def test_rejects_trailing_bytes():
    _rejects(_h("0000"))
    _rejects(_h("80ff"))


def test_encode_rejects_unsupported_values():
    for value in (set(), {1.5: 0}, {(1,): 0}, {True: 0}, {None: 0}, object()):
        try:
            cbor.dumps(value)
        except CBORError:
            continue
        raise AssertionError("encoded %r" % (value,))


def test_errors_are_value_errors():
    try:
        cbor.loads(b"")
    except ValueError as e:
        assert isinstance(e, CBORError)
    else:
        raise AssertionError("empty input accepted")
