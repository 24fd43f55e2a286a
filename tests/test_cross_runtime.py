"""A frame encoded on MicroPython decodes identically on CPython, and back."""
from mp_harness import run_micropython, spot_files
from spot.core import frame as F
from spot.core.node import Node
from spot.profiles import heat_pump

# Python literals, evaluated on both runtimes: (op, service, mid, body)
FRAMES_SOURCE = """[
    (2, 0x10, 42, {7: 215}),
    (6, 0x10, 7, [1700000000, {1: 1234, 2: -80, 3: 2301, 8: 352, 11: -52}]),
    (6, 0x05, 0, [1700000000, {1: [1700000000, 900, [853, 791, None, -120, 65535, 70000]]}]),
    (3, 0x04, 44, [1, [7, 1700000000, 1700007200, 10, {16: {6: 3, 17: [1700000000, 3600, [1500, 3000]]}}]]),
    (8, 0x10, 1, {1: 21.5, 2: 0.1, 3: -4.1, 4: 1e300, 5: 65504.0, 6: 100000.0, 7: -0.0}),
    (8, 0x01, 2, {1: "Acme \u00fcber \u6c34", 2: b"\\x00\\xff serial", 3: True, 4: False, 5: None}),
    (7, 0x00, 0, {0: "hp-1", 1: [[2, 1, 0], [4, 1, 0], [16, 1, 0]], 3: 1}),
    (9, 0x10, 43, [4, 7]),
    (8, 0x10, 3, {"text key": 1, b"bytes key": 2, 24: 3, -1: 4, 0: [18446744073709551615, -18446744073709551616]}),
]"""

MP_ENCODE = """
from spot.core import frame as F
for op, sid, mid, body in eval(%r):
    print(F.encode(op, sid, mid, body).hex())
"""

MP_DECODE = """
from spot.core import frame as F
expected = eval(%r)
for i, line in enumerate(%r):
    raw = bytes.fromhex(line)
    op, sid, mid, body = F.decode(raw)
    assert (op, sid, mid, body) == expected[i], (i, body)
    print(F.encode(op, sid, mid, body).hex())
"""


def _frames():
    return eval(FRAMES_SOURCE)


def test_frames_encoded_on_micropython_decode_identically_on_cpython():
    out = run_micropython(MP_ENCODE % FRAMES_SOURCE, spot_files()).stdout.split()
    assert len(out) == len(_frames())
    for line, (op, sid, mid, body) in zip(out, _frames()):
        raw = bytes.fromhex(line)
        assert F.decode(raw) == (op, sid, mid, body)
        assert raw == F.encode(op, sid, mid, body)  # byte-identical, not just equal


def test_frames_encoded_on_cpython_decode_identically_on_micropython():
    ours = [F.encode(*f).hex() for f in _frames()]
    out = run_micropython(MP_DECODE % (FRAMES_SOURCE, ours), spot_files()).stdout.split()
    assert out == ours


def test_node_on_micropython_answers_like_node_on_cpython():
    requests = [F.encode(F.WRITE, 0x10, 1, {7: 215, 99: 1}).hex(),
                F.encode(F.SUBSCRIBE, 0x10, 2, {8: {0: 0}}).hex(),
                F.encode(F.READ, 0x10, 3, None).hex(),
                F.encode(F.INVOKE, 0x04, 4, [1, [9, 100, 4000, 3, {16: {6: 1}}]]).hex(),
                "1210", "12100005a107"]
    script = """
from spot.core.node import Node
from spot.profiles import heat_pump
node = Node([heat_pump], "hp-1")
node.set(0x10, 8, 35.2)
for i, h in enumerate(%r):
    r = node.receive(bytes.fromhex(h), 100 + i, "ctl")
    print(r.hex() if r else "-")
node.set(0x10, 8, 36.0)
for peer, frame in node.step(200):
    print(peer, frame.hex())
""" % requests
    mp_lines = run_micropython(script, spot_files()).stdout.split("\n")
    node = Node([heat_pump], "hp-1")
    node.set(0x10, 8, 35.2)
    lines = []
    for i, h in enumerate(requests):
        r = node.receive(bytes.fromhex(h), 100 + i, "ctl")
        lines.append(r.hex() if r else "-")
    node.set(0x10, 8, 36.0)
    for peer, frame in node.step(200):
        lines.append("%s %s" % (peer, frame.hex()))
    assert [x for x in mp_lines if x] == lines
