"""docs/spec.md's byte examples, on whatever runtime runs this (MicroPython too)."""
import json

from _data import open_data
from spot.core import frame as F
from spot.core.node import Node
from spot.profiles import heat_pump

NOW = 1700000000


def _vectors(kind):
    with open_data("spec_vectors.json") as f:
        return [v for v in json.load(f) if v["kind"] == kind]


def test_spec_frames_decode_to_their_header_fields():
    for v in _vectors("frame"):
        op, sid, mid, body = F.decode(bytes.fromhex(v["hex"]))
        assert (F.OP_NAMES[op], sid, mid) == (v["op"], v["service"], v["mid"]), v["name"]


def test_spec_frames_reencode_byte_for_byte():
    for v in _vectors("frame"):
        raw = bytes.fromhex(v["hex"])
        op, sid, mid, body = F.decode(raw)
        assert F.encode(op, sid, mid, body) == raw, v["name"]


def test_spec_exchanges_get_their_replies():
    for v in _vectors("exchange"):
        node = Node([heat_pump], "hp-1")
        reply = node.receive(bytes.fromhex(v["request"]), NOW)
        if v["reply"] is None:
            assert reply is None, v["name"]
        else:
            assert reply == bytes.fromhex(v["reply"]), v["name"]
