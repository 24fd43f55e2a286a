"""The wire-size goals hold: every SPOT payload at most 1.6x the packed-struct
floor and at most half of SenML-CBOR (bench/wire_size.py prints the table)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import wire_size  # noqa: E402

TABLE = wire_size.sizes()


@pytest.mark.parametrize("payload", wire_size.PAYLOADS)
def test_spot_is_within_1_6x_of_packed_struct(payload):
    spot = len(TABLE["SPOT frame"][payload])
    assert spot <= 1.6 * len(TABLE["packed struct (floor)"][payload])


@pytest.mark.parametrize("payload", wire_size.PAYLOADS)
def test_spot_is_at_most_half_of_senml_cbor(payload):
    spot = len(TABLE["SPOT frame"][payload])
    assert spot <= 0.5 * len(TABLE["SenML-CBOR"][payload])
    assert spot <= 0.5 * len(TABLE["SenML-CBOR, LwM2M paths"][payload])


def test_spot_frames_decode_to_the_payload_values():
    from spot.core import frame as F
    op, sid, mid, body = F.decode(TABLE["SPOT frame"]["telemetry"])
    assert body[0] == wire_size.T0 and len(body[1]) == len(wire_size.TELEMETRY)
