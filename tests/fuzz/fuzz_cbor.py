"""Coverage-guided fuzzing of spot.core.cbor.loads() and spot.core.frame.decode() (atheris).

Run:  python3 tests/fuzz/fuzz_cbor.py -runs=20000        (libFuzzer flags pass through)

Invariants checked on every input:
- loads() returns a value or raises CBORError, nothing else;
- a value loads() accepts is one cbor2 decodes to the same value, and it
  re-encodes to canonical bytes that decode to that value again (fixed point);
- frame.decode() returns (op, service, mid, body) or raises SpotError, nothing else.
When no corpus folder is given, a few valid SPOT bodies and frames are passed
as -seed_inputs (from a temporary folder removed after loading), so mutations
start from realistic inputs.
"""
import os
import shutil
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["spot"]):
    from spot.core import cbor, frame
    from spot.core.errors import SpotError

import cbor2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cbor_same import same  # noqa: E402

SEEDS = [
    cbor.dumps([1700000000, {1: 1234, 3: 2301, 4: 523, 8: 352, 10: 481, 11: -52,
                             12: 214, 15: 4520, 21: 123456}]),
    cbor.dumps({"a": [1.5, -0.0, float("nan"), 1e300], b"k": None, -5: True, 7: "\u6c34"}),
    cbor.dumps([[[[{}]]], 2**64 - 1, -(2**64), 100000.0, 3.4028234663852886e38]),
    frame.encode(frame.WRITE, 3, 0x1234, {1: 20.5, 2: [1, 2, 3]}),
    frame.encode(frame.NOTIFY, 1, 7, [1700000000, {1: 1, 2: "x"}]),
    frame.encode(frame.READ, 2, 1),
]




_seed_dir = []  # temporary seed folder, removed once libFuzzer has read it


def test_one_input(data):
    if _seed_dir:
        shutil.rmtree(_seed_dir.pop(), True)
    try:
        value = cbor.loads(data)
    except cbor.CBORError:
        pass
    else:
        reference = cbor2.loads(data)
        if not same(value, reference):
            raise AssertionError("cbor2 decodes %s differently: %r" % (data.hex(), reference))
        canonical = cbor.dumps(value)
        if not same(cbor.loads(canonical), value) or cbor.dumps(cbor.loads(canonical)) != canonical:
            raise AssertionError("re-encoding %s is not a fixed point" % data.hex())
    try:
        op, service, mid, body = frame.decode(data)
    except SpotError:
        pass
    else:
        if not (1 <= op <= frame.ERROR and 0 <= service <= 255 and 0 <= mid <= 0xFFFF):
            raise AssertionError("bad header fields from %s" % data.hex())


def main(argv):
    args = list(argv)
    if not any(not a.startswith("-") for a in args[1:]):  # no corpus folder given
        seed_dir = tempfile.mkdtemp(prefix="spot_cbor_seeds_")
        paths = []
        for i, seed in enumerate(SEEDS):
            paths.append(os.path.join(seed_dir, "seed%d" % i))
            with open(paths[-1], "wb") as f:
                f.write(seed)
        args.append("-seed_inputs=" + ",".join(paths))
        _seed_dir.append(seed_dir)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
