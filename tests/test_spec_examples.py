"""docs/spec.md's examples hold byte for byte (CPython side, with diagnostic notation)."""
import pytest

import spec_examples
from spot.core import diag, frame as F
from spot.core.node import Node
from spot.profiles import heat_pump

FRAMES = [e for e in spec_examples.examples() if e["kind"] == "spot-frame"]
EXCHANGES = [e for e in spec_examples.examples() if e["kind"] == "spot-exchange"]
NOW = 1700000000


def _hex(s):
    return bytes.fromhex(s)


def test_spec_has_examples_of_every_operation():
    ops = {e["op"] for e in FRAMES}
    assert ops == set(F.OP_NAMES[1:])


def test_portable_vectors_match_the_spec():
    with open(spec_examples.VECTORS, encoding="utf-8") as f:
        assert f.read() == spec_examples.render(), "run: python3 tests/spec_examples.py --write"


@pytest.mark.parametrize("ex", FRAMES, ids=[e["name"] for e in FRAMES])
def test_frame_example_encodes_to_its_bytes(ex):
    op = F.OP_NAMES.index(ex["op"])
    body = diag.parse(ex["body"])
    assert F.encode(op, int(ex["service"], 16), int(ex["mid"]), body) == _hex(ex["hex"])


@pytest.mark.parametrize("ex", FRAMES, ids=[e["name"] for e in FRAMES])
def test_frame_example_decodes_to_its_fields(ex):
    op, sid, mid, body = F.decode(_hex(ex["hex"]))
    assert (F.OP_NAMES[op], sid, mid) == (ex["op"], int(ex["service"], 16), int(ex["mid"]))
    assert diag.format(body) == ex["body"]


@pytest.mark.parametrize("ex", EXCHANGES, ids=[e["name"] for e in EXCHANGES])
def test_exchange_example_gets_its_reply(ex):
    assert ex["node"] == "heat_pump"
    node = Node([heat_pump], "hp-1")
    reply = node.receive(_hex(ex["request"]), NOW)
    expected = None if ex["reply"] == "none" else _hex(ex["reply"])
    assert reply == expected
