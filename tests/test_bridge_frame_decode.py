"""The bridge's frame decoder (cbor2's C decoder where it gives core's answer) agrees
with core/frame.py's strict decoder: same value for every frame core accepts,
same SpotError (code and detail) for every frame core refuses."""
import pytest
from hypothesis import given, strategies as st

from cbor_same import same
from test_cbor_fuzz import FUZZ, mutated, random_items, valid_headers, values
from spot.cloud_bridge import frame_decode as D
from spot.core import cbor, frame as F
from spot.core.errors import SpotError

pytestmark = pytest.mark.skipif(D._c_loads is None, reason="cbor2's C decoder not installed")

MAX = 65536


def outcome(decode, data):
    try:
        return "ok", decode(data, MAX)
    except SpotError as e:
        return "error", (e.code, e.detail)


def assert_same_outcome(data):
    ours, core = outcome(D.decode, data), outcome(F.decode, data)
    assert ours[0] == core[0], (data.hex(), ours, core)
    if core[0] == "ok":
        assert ours[1][:3] == core[1][:3] and same(ours[1][3], core[1][3]), data.hex()
    else:
        assert ours[1] == core[1], data.hex()


@FUZZ
@given(valid_headers, values)
def test_valid_frames_decode_to_the_same_value_as_core(header, value):
    assert_same_outcome(header + cbor.dumps(value))


@FUZZ
@given(valid_headers, mutated())
def test_mutated_frames_get_cores_value_or_cores_error(header, body):
    assert_same_outcome(header + body)


@FUZZ
@given(valid_headers, random_items)
def test_random_item_streams_get_cores_value_or_cores_error(header, body):
    assert_same_outcome(header + body)


ints = st.integers(-(2**63), 2**63 - 1)
int_bodies = st.recursive(ints, lambda c: st.lists(c, max_size=5)
                          | st.dictionaries(st.integers(0, 2**31), c, max_size=8), max_leaves=30)


@FUZZ
@given(int_bodies.filter(lambda v: v is not None))
def test_frames_of_integers_take_the_cbor2_path(value):
    body = cbor.dumps(value)
    assert same(D.fast_body(body), value)


NOTIFY = F.encode(F.NOTIFY, 0x10, 7, [1700000000, {1: 1114, 2: -80}])[:4]


@pytest.mark.parametrize("body, why", [
    (bytes.fromhex("a2 01 01 01 02"), "duplicate map key"),
    (bytes.fromhex("9f 01 02 ff"), "indefinite-length array"),
    (bytes.fromhex("bf 01 02 ff"), "indefinite-length map"),
    (bytes.fromhex("5f 41 00 ff"), "indefinite-length byte string"),
    (bytes.fromhex("c2 41 01"), "tag 2 (bignum 1, a plain int to cbor2)"),
    (bytes.fromhex("d9 d9f7 01"), "tag 55799 (self-describe)"),
    (bytes.fromhex("c0 74") + b"2013-03-21T20:04:00Z", "tag 0 (date/time)"),
    (bytes.fromhex("d8 1c 81 01"), "tag 28 (shareable)"),
    (bytes.fromhex("f7"), "undefined"),
    (bytes.fromhex("f0"), "simple value 16"),
    (bytes.fromhex("f8 20"), "simple value 32"),
    (bytes.fromhex("01 02"), "trailing bytes"),
    (bytes.fromhex("a1 f5 01"), "bool map key"),
    (bytes.fromhex("a1 f9 3c00 01"), "float map key"),
    (bytes.fromhex("a1 81 01 01"), "array map key"),
    (bytes.fromhex("81" * 17 + "01"), "nesting deeper than 16"),
    (bytes.fromhex("81" * 14 + "82 01 83 01 02 03"), "a list of integers nested 16 deep"),
    (bytes.fromhex("81" * 15 + "82 01 83 01 02 03"), "a list of integers nested 17 deep"),
    (bytes.fromhex("82 01 79 044c") + b"a" * 1100, "text of 1100 characters in a list"),
    (bytes.fromhex("59 1001") + b"a" * 4097, "text over 4096 bytes"),
    (bytes.fromhex("79 0800") + "é".encode() * 1024, "text of 1024 characters, 2048 bytes"),
    (bytes.fromhex("7a 00001002") + "é".encode() * 2049, "text of 2049 characters, 4098 bytes"),
    (bytes.fromhex("62 eda0"), "invalid UTF-8 (surrogate)"),
    (bytes.fromhex("1b 0000000000000001"), "non-shortest head (core accepts it)"),
    (bytes.fromhex("a2 02 01 01 02"), "keys out of canonical order (core accepts them)"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_what_core_refuses_or_reads_its_own_way_gets_cores_answer(body, why):
    assert_same_outcome(NOTIFY + body)


def test_a_refused_frame_keeps_cores_error_code_and_detail():
    with pytest.raises(SpotError) as ours:
        D.decode(NOTIFY + bytes.fromhex("a2 01 01 01 02"), MAX)
    with pytest.raises(SpotError) as core:
        F.decode(NOTIFY + bytes.fromhex("a2 01 01 01 02"), MAX)
    assert (ours.value.code, ours.value.detail) == (core.value.code, core.value.detail)
    assert ours.value.detail == "duplicate map key"


@FUZZ
@given(st.integers(-(2**64) - 1, 2**64), st.integers(-(2**64) - 1, 2**64),
       st.integers(0, 0xFFFF))
def test_a_body_of_one_integer_pair_is_encoded_as_core_does(key, value, mid):
    try:
        core = F.encode(F.RESULT, 0, mid, {key: value})
    except cbor.CBORError:
        with pytest.raises(cbor.CBORError):
            D.encode(F.RESULT, 0, mid, {key: value})
    else:
        assert D.encode(F.RESULT, 0, mid, {key: value}) == core


@pytest.mark.parametrize("body", [None, {}, {1: 2, 0: 3}, {"a": 1}, {1: "a"}, {1: 1.5},
                                  {1: True}, [1, 2]])
def test_other_bodies_are_encoded_by_core(body):
    assert D.encode(F.RESULT, 3, 258, body) == F.encode(F.RESULT, 3, 258, body)
