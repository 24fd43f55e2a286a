"""The names a board interns on its heap, by module, on the real MicroPython (the 32-bit
unix port, tests/mp_real.py): what decides how many qstr pools a device loading its
code from a ROMFS image or as .mpy files allocates.

    python3 bench/mp_names.py [--profile heat_pump] [--transport coap] [--top 60]
    python3 bench/mp_names.py --scenario [--trials 2]

A module loaded from a ROMFS image or as a .mpy file interns every distinct name of its
qstr table the firmware does not hold (identifiers, short string literals) and the
importer's three (dotted name, short name as its package's attribute, `__file__`); the
pools they go to are heap, each new one twice the last (20, 40, 80, 160, 320, 640
entries: full at 20, 60, 140, 300, 620, 1260 names).

Two views:
  first use   the modules of deploy.preload_order (examples/unix_heat_pump.py as main)
              imported one by one on the ROMFS build, micropython.qstr_info(1) after each:
              the names each module interns first, and the running count
  use         each module's .mpy qstr table read directly, less the names the firmware
              holds (static, or in its frozen pool: those the first-use run did not
              intern): for every name, how many of the modules use it; the names used by
              one module only, by module
  --scenario  the whole run instead: bench/footprint.py's scenario (its driver as main,
              the bundle's preload, registration with the real bridge, telemetry, a WRITE
              and a plan) from a ROMFS image in a roomy heap, --trials times; the names
              interned after boot and at the end (the driver prints
              micropython.qstr_info() with each retained-heap reading), with the names'
              pools; the driver's own names (its path, its MICROPYPATH entries) count too
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, HERE)

import mp_real  # noqa: E402
from mp_import_heap import import_order  # noqa: E402

PROBE = """\
import micropython
micropython.qstr_info(1)
print('SPOT-NAMES start')
for n in open('modules.txt').read().split():
    __import__(n)
    micropython.qstr_info(1)
    print('SPOT-NAMES', n)
"""


def varuint(data, i):
    v = 0
    while True:
        b = data[i]
        i += 1
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            return v, i


def mpy_names(path):
    """The non-static names of a .mpy file's qstr table (its static ones, by index, are
    the firmware's own)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[0] != ord("M"):
        raise SystemExit("%s: not a .mpy file" % path)
    n_qstr, i = varuint(data, 4)
    _, i = varuint(data, i)
    names = []
    for _ in range(n_qstr):
        ln, i = varuint(data, i)
        if ln & 1:
            continue
        ln >>= 1
        names.append(data[i:i + ln].decode())
        i += ln + 1
    return names


def dumps(text):
    """[(module or 'start', set of names in the non-static pools then)]."""
    out, cur = [], set()
    for line in text.splitlines():
        if line.startswith("Q(") and line.endswith(")"):
            cur.add(line[2:-1])
        elif line.startswith("SPOT-NAMES "):
            out.append((line.split()[1], cur))
            cur = set()
    return out


def first_use(order, image):
    with tempfile.TemporaryDirectory(prefix="spot-names-") as d:
        with open(os.path.join(d, "modules.txt"), "w") as f:
            f.write("\n".join(order))
        with open(os.path.join(d, "probe.py"), "w") as f:
            f.write(PROBE)
        r = subprocess.run([mp_real.romfs_interpreter(), "-X", "heapsize=512k", "probe.py"],
                           cwd=d, capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, MICROPYPATH="/rom/lib:.frozen",
                                    SPOT_ROMFS=image))
    got = dumps(r.stdout)
    if len(got) != len(order) + 1:
        raise SystemExit("the probe failed: %s" % (r.stdout + r.stderr)[-800:])
    return got


def pools(text):
    """[(n_qstr, n_pool)] of the "qstr pool:" lines in a run's output."""
    got = []
    for line in text.splitlines():
        if line.startswith("qstr pool:"):
            f = dict(kv.split("=") for kv in line[len("qstr pool:"):].replace(",", " ").split())
            got.append((int(f["n_qstr"]), int(f["n_pool"])))
    return got


def scenario(profile, transport, trials):
    import shutil
    import footprint as F
    tmp = tempfile.mkdtemp(prefix="spot-names-run-")
    rig = F.Rig(tmp)
    try:
        for _ in range(trials):
            outputs = []
            ok = F.trial(rig, "romfs", profile, transport, 128, outputs)
            got = pools(outputs[0])
            print("%s: names after boot %s, at the end %s (pools: %s)" % (
                "served" if ok else "FAILED", got[0][0] if got else "-",
                got[-1][0] if got else "-", got[-1][1] if got else "-"))
    finally:
        rig.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="heat_pump")
    ap.add_argument("--transport", default="coap")
    ap.add_argument("--top", type=int, default=60, help="how many shared names to list")
    ap.add_argument("--scenario", action="store_true",
                    help="the names interned in footprint's scenario, after boot and at the end")
    ap.add_argument("--trials", type=int, default=2)
    args = ap.parse_args()
    if args.scenario:
        return scenario(args.profile, args.transport, args.trials)
    order = import_order(args.profile, args.transport)
    with tempfile.TemporaryDirectory(prefix="spot-names-lib-") as d:
        lib = mp_real.mpy_lib(os.path.join(d, "src", "lib"))
        image = mp_real.romfs_image(os.path.dirname(lib), os.path.join(d, "spot.romfs"))
        got = first_use(order, image)
        files = {}
        for n in order:
            parts = n.split(".")
            rel = (parts[1:] if parts[0] == "spot" else parts)
            for cand in (os.path.join(lib, "spot", *rel) + ".mpy",
                         os.path.join(lib, "spot", *rel, "__init__.mpy"),
                         os.path.join(lib, *parts) + ".mpy"):
                if os.path.isfile(cand):
                    files[n] = mpy_names(cand)
                    break
    start = got[0][1]
    print("names in the non-static pools before SPOT: %d (asyncio's frozen pool and "
          "the start's)" % len(start))
    print()
    print("| module (first use, load order) | names it interns first | running count |")
    print("|---|---:|---:|")
    seen = set(start)
    for n, names in got[1:]:
        new = names - seen
        seen |= names
        print("| %s | %d | %d |" % (n, len(new), len(seen) - len(start)))
    print()
    users = {}      # the names interned (the rest of a table's are the firmware's)
    for n, names in files.items():
        for q in set(names) & (seen - start):
            users.setdefault(q, []).append(n)
    by_count = {}
    for q, ms in users.items():
        by_count[len(ms)] = by_count.get(len(ms), 0) + 1
    print("names of the modules' qstr tables not in the firmware: %d; by how many modules "
          "use each: %s" % (len(users), ", ".join("%d: %d" % (k, by_count[k])
                                                   for k in sorted(by_count))))
    print("interned at run time besides (importer's names, strings made into names): %d"
          % (len(seen - start) - len(users)))
    print()
    print("used by one module only:")
    for n in order:
        own = sorted(q for q in set(files.get(n, ())) if len(users.get(q, ())) == 1)
        print("  %s (%d): %s" % (n, len(own), " ".join(own)))
    print()
    print("most shared: %s" % ", ".join("%s %d" % (q, len(ms)) for q, ms in sorted(
        users.items(), key=lambda kv: -len(kv[1]))[:args.top]))


if __name__ == "__main__":
    main()
