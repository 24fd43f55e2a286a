"""Heap a SPOT node retains on MicroPython 1.27 (the WebAssembly build).

    npm ci --prefix tests/micropython && python3 bench/heap_micropython.py

Each row runs in a fresh interpreter: collect, read gc.mem_alloc(), run the
setup, collect, read again (tests/mp_harness.measure_heap). Modules are loaded
from source, so their bytecode is on the heap; frozen or .mpy builds differ.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from mp_harness import measure_heap  # noqa: E402

ROWS = (
    ("import spot.core.cbor", "from spot.core import cbor"),
    ("import spot.core.frame", "from spot.core import frame"),
    ("import spot.core.node (with model, plans, subscriptions, filter)", "from spot.core import node"),
    ("import spot.profiles.heat_pump", "from spot.profiles import heat_pump"),
    ("Node([heat_pump]) after start, imports included",
     "from spot.core.node import Node\nfrom spot.profiles import heat_pump\n"
     "n = Node([heat_pump], 'hp-1')\nn.step(0)"),
    ("the same node with 9 values set and one subscription",
     "from spot.core.node import Node\nfrom spot.core import frame as F\n"
     "from spot.profiles import heat_pump\n"
     "n = Node([heat_pump], 'hp-1')\n"
     "for oid, v in ((1, 1234), (2, -80), (3, 230.1), (4, 5.36), (8, 35.2), (10, 48.1), (11, -5.2), (12, 21.4), (15, 4520)):\n"
     "    n.set(0x10, oid, v)\n"
     "n.receive(F.encode(F.SUBSCRIBE, 0x10, 1, {8: {0: 10}, 11: {2: 5}}), 0, 'ctl')\n"
     "n.step(0)"),
)


def main():
    print("| retained on MicroPython 1.27 | bytes |")
    print("|---|---:|")
    for label, code in ROWS:
        print("| %s | %d |" % (label, measure_heap(code)))


if __name__ == "__main__":
    main()
