"""Extract the checked examples from docs/spec.md.

`python3 tests/spec_examples.py --write` regenerates
tests/portable/spec_vectors.json (read by the portable tests, which run under
MicroPython too); tests/test_spec_examples.py fails if it is out of date.
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "docs", "spec.md")
VECTORS = os.path.join(ROOT, "tests", "portable", "spec_vectors.json")

_BLOCK = re.compile(r"```(spot-frame|spot-exchange)\n(.*?)```", re.S)


def examples(text=None):
    """[{kind, name, ...fields}] in document order."""
    if text is None:
        with open(SPEC, encoding="utf-8") as f:
            text = f.read()
    out = []
    for kind, body in _BLOCK.findall(text):
        ex = {"kind": kind}
        for line in body.strip().splitlines():
            key, _, value = line.partition(":")
            ex[key.strip()] = value.strip()
        out.append(ex)
    return out


def vectors():
    """The JSON-able form the portable tests read: hex strings and ints only."""
    out = []
    for ex in examples():
        if ex["kind"] == "spot-frame":
            out.append({"kind": "frame", "name": ex["name"], "op": ex["op"],
                        "service": int(ex["service"], 16), "mid": int(ex["mid"]),
                        "hex": ex["hex"].replace(" ", "")})
        else:
            out.append({"kind": "exchange", "name": ex["name"], "node": ex["node"],
                        "request": ex["request"].replace(" ", ""),
                        "reply": None if ex["reply"] == "none" else ex["reply"].replace(" ", "")})
    return out


def render():
    return json.dumps(vectors(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    if "--write" in sys.argv:
        with open(VECTORS, "w", encoding="utf-8") as f:
            f.write(render())
    else:
        sys.stdout.write(render())
