"""Heap each module of a board's bundle holds once imported, on the real MicroPython (the
32-bit unix port with SPOT frozen, tests/mp_real.py): bytes, functions (module level),
classes, their methods, and globals, per module.

    python3 bench/mp_import_heap.py [--profile heat_pump] [--transport coap]
                                    [--binary PATH[=TREE]]...
    python3 bench/mp_import_heap.py --modes [--profile heat_pump] [--transport coap]

The modules a device loads at boot (ports/cpython/deploy.preload_order, with
examples/unix_heat_pump.py as main: what the preload of `spot bundle` imports) are
imported one by one in that order, each after the modules it imports, so a module's
figure is its own: gc.mem_alloc() after gc.collect() around its import. What only a
rare path imports inside a function (OSCORE, sleep, telemetry at once, Observe, blocks,
CBOR floats, the strict UTF-8 check, the numbers by name) is not among them: what is
listed is what a device serving its profile holds. Default binary: this tree's frozen
interpreter. `--binary PATH=TREE` measures another build, its module list taken from the
checkout TREE (e.g. the tree before a change, `git archive main`, built with its own
tests/mp_real.py), so that two builds are compared in one run.
`--modes`: the same modules' total on this tree's three builds, frozen, from a ROMFS
image and as .mpy files, and the names each interns on the heap (micropython.qstr_info():
frozen names are in flash; from ROMFS or .mpy every distinct name is interned, in
pools each twice the size of the last); run it in each tree to compare two.
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import mp_real  # noqa: E402
from spot.ports.cpython import deploy as D  # noqa: E402

PROBE = """\
import gc
import sys
import asyncio
names = open('modules.txt').read().split()
FUNCTION = type(lambda: 0)


def heap():
    gc.collect()
    gc.collect()
    return gc.mem_alloc()


sizes = []
for n in names:
    a = heap()
    __import__(n)
    sizes.append(heap() - a)
seen = set()
for i in range(len(names)):
    d = sys.modules[names[i]].__dict__
    fn = cl = meth = 0
    for k in d:
        v = d[k]
        if id(v) in seen:
            continue
        seen.add(id(v))
        if type(v) is FUNCTION:
            fn += 1
        elif isinstance(v, type):
            cl += 1
            for m in v.__dict__:
                if type(v.__dict__[m]) is FUNCTION:
                    meth += 1
    print('SPOT-IMPORT', names[i], sizes[i], fn, cl, meth, len(d))
import micropython
micropython.qstr_info()     # "qstr pool: n_pool=.., n_qstr=.., ...": the names interned
"""


def import_order(profile, transport, tree=REPO):
    """The bundle's steady-state modules of the checkout `tree`, each after its imports:
    the preload `spot bundle` writes (deploy.preload_order), then the example."""
    saved = D.REPO
    D.REPO = tree     # module_file() resolves the package's modules under D.REPO
    try:
        return D.preload_order(profile, transport, main=os.path.join(
            tree, "examples", "unix_heat_pump.py")) + ["unix_heat_pump"]
    finally:
        D.REPO = saved


def measure(binary, names, path=".frozen", env=None):
    """{module: (bytes, functions, classes, methods, globals)} on binary, the modules
    found on MICROPYPATH path (extra environment env); with "names": (names interned
    at run time, their pools)."""
    with tempfile.TemporaryDirectory(prefix="spot-import-heap-") as d:
        with open(os.path.join(d, "modules.txt"), "w") as f:
            f.write("\n".join(names))   # a long argv crashes the unix port (uncaught NLR)
        with open(os.path.join(d, "probe.py"), "w") as f:
            f.write(PROBE)
        r = subprocess.run([binary, "-X", "heapsize=256k", "probe.py"], cwd=d,
                           env=dict(os.environ, MICROPYPATH=path, **(env or {})),
                           capture_output=True, text=True, timeout=60)
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("SPOT-IMPORT "):
            f = line.split()
            out[f[1]] = tuple(int(x) for x in f[2:])
        elif line.startswith("qstr pool:"):
            f = dict(kv.split("=") for kv in line[len("qstr pool:"):].replace(",", " ").split())
            out["names"] = (int(f["n_qstr"]), int(f["n_pool"]))
    if not out:
        raise SystemExit("the probe failed on %s: %s" % (binary, (r.stdout + r.stderr)[-800:]))
    return out


def modes(profile, transport):
    """[(way of holding the code, bytes, names interned, their pools)] for this tree's
    builds: SPOT frozen, the same modules as .mpy in a ROMFS image held outside the heap,
    and as .mpy files on the file system (tests/mp_real.py builds all three)."""
    order = import_order(profile, transport)
    with tempfile.TemporaryDirectory(prefix="spot-import-modes-") as d:
        lib = mp_real.mpy_lib(os.path.join(d, "src", "lib"))
        image = mp_real.romfs_image(os.path.dirname(lib), os.path.join(d, "spot.romfs"))
        rows = []
        for mode, binary, path in (("frozen", mp_real.frozen_interpreter(), ".frozen"),
                                   ("ROMFS image", mp_real.romfs_interpreter(),
                                    "/rom/lib:.frozen"),
                                   (".mpy files", mp_real.interpreter(), lib + ":.frozen")):
            got = measure(binary, order, path, {"SPOT_ROMFS": image})
            names = got.pop("names", (None, None))
            rows.append((mode, sum(v[0] for v in got.values())) + names)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="heat_pump")
    ap.add_argument("--transport", default="coap")
    ap.add_argument("--binary", action="append", metavar="PATH[=TREE]",
                    help="a frozen interpreter (default: this tree's), its modules from TREE")
    ap.add_argument("--modes", action="store_true",
                    help="only the totals of this tree's modules frozen, from a ROMFS image "
                         "and as .mpy files, with the names each interns on the heap")
    args = ap.parse_args()
    if args.modes:
        print("| %s over %s, imports only | bytes | names interned (pools) |"
              % (args.profile.replace("_", " "), args.transport))
        print("|---|---:|---:|")
        for mode, size, names, pools in modes(args.profile, args.transport):
            print("| %s | %d | %s (%s) |" % (mode, size, names, pools))
        return
    runs = []
    for spec in args.binary or [mp_real.frozen_interpreter()]:
        binary, _, tree = spec.partition("=")
        order = import_order(args.profile, args.transport, os.path.abspath(tree or REPO))
        runs.append((binary, order, measure(binary, order)))
    names = []
    for _, order, got in runs:
        got.pop("names", None)
        names.extend(n for n in order if n not in names)
    cols = " | ".join("bytes, functions, classes, methods, globals" for _ in runs)
    print("| module | %s |" % cols)
    print("|---|%s" % ("---:|" * len(runs)))
    for n in names:
        cells = []
        for _, _, got in runs:
            v = got.get(n)
            cells.append("-" if v is None else "%d, %d, %d, %d, %d" % v)
        print("| %s | %s |" % (n, " | ".join(cells)))
    print("| total | %s |" % " | ".join(
        "%d, %d, %d, %d, %d" % tuple(sum(v[i] for v in got.values()) for i in range(5))
        for _, _, got in runs))


if __name__ == "__main__":
    main()
