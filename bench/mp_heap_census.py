"""What a device holds on the real MicroPython's heap, by kind of object: function
objects, classes and their method tables, modules and their globals tables, instances and
their attribute tables, containers, strings and buffers (the 32-bit unix port with SPOT
frozen, tests/mp_real.py).

    python3 bench/mp_heap_census.py [--transport coap|mqtt] [--heap 64]

The heat pump of examples/unix_heat_pump.py, in three steps from a heap holding asyncio
and this probe: the modules of the bundle's preload imported (deploy.preload_order, the
example last), the device made (not started), and after boot: registered with a real
`spot bridge` (over CoAP, or MQTT through a real mosquitto) and a telemetry period later,
between two exchanges (what bench/footprint.py calls "retained after boot").

Each figure comes from `micropython.mem_info(1)`'s map of the heap, one character a
16-byte block, read on a variant of the frozen interpreter whose map names more kinds:
py/gc.c is patched, in a copy of the source tree, to mark classes, instances, closures,
bound methods, cells and generators, and the table or array each object owns (a module's
globals, a class's methods, an instance's attributes, a dict's, list's, string's or
bytearray's storage), beside the kinds the map already names (functions, dicts, lists,
tuples, strings, bytearrays, modules). A figure is whole blocks: what the heap gives.
The variant is built once per set of frozen sources beside the frozen interpreter
(about a minute); the patch is refused, with a message, where the source differs.
"""
import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import mp_real  # noqa: E402
from bridge_process import BridgeProcess  # noqa: E402
from spot.ports.cpython import deploy as D  # noqa: E402

TELEMETRY_S = 10
KINDS = [       # (map character, what it is)
    ("B", "function objects (module functions, methods, lambdas)"),
    ("X", "closures"),
    ("b", "bound methods"),
    ("c", "cells (variables closed over)"),
    ("C", "classes"),
    ("K", "classes' method tables"),
    ("M", "modules"),
    ("G", "modules' globals tables"),
    ("I", "instances"),
    ("i", "instances' attribute tables"),
    ("D", "dicts (module, class and other dict objects)"),
    ("d", "other dicts' tables"),
    ("L", "lists"),
    ("l", "lists' arrays"),
    ("T", "tuples"),
    ("S", "strings and bytes"),
    ("s", "strings' and bytes' text"),
    ("A", "bytearrays and arrays"),
    ("a", "bytearrays' and arrays' storage"),
    ("Y", "generators (coroutines)"),
    ("F", "floats"),
    ("h", "other (raw blocks: interned names, bytecode, buffers...)"),
]

# py/gc.c, gc_dump_alloc_table(): before the function, a pass marking the blocks each
# object owns; in the function, that pass run per area and the marks and more object
# kinds printed where the map would print 'h'.
_OWNED = r'''
#include "py/objmodule.h"
#include "py/objlist.h"
#include "py/objarray.h"
#include "py/objstr.h"
#include "py/objtype.h"
extern const mp_obj_type_t mp_type_closure;
extern const mp_obj_type_t mp_type_cell;
static char census_owned[1 << 16];      // a mark per block of a heap up to 1 MiB
static void census_mark(mp_state_mem_area_t *area, const void *p, char c) {
    if (!VERIFY_PTR((void *)p)) {
        return;
    }
    size_t b = BLOCK_FROM_PTR(area, p);
    if (b < sizeof(census_owned) && ATB_GET_KIND(area, b) == AT_HEAD && !census_owned[b]) {
        census_owned[b] = c;
    }
}
static bool census_instance(void **ptr) {
    return VERIFY_PTR(*ptr) && *(void **)*ptr == &mp_type_type;
}
static void census_pass(mp_state_mem_area_t *area) {
    size_t n = area->gc_alloc_table_byte_len * BLOCKS_PER_ATB;
    if (n > sizeof(census_owned)) {
        n = sizeof(census_owned);
    }
    memset(census_owned, 0, n);
    for (int round = 0; round < 2; round++) {   // owners' dicts first, then any dict's
        for (size_t bl = 0; bl < n; bl++) {
            if (ATB_GET_KIND(area, bl) != AT_HEAD) {
                continue;
            }
            void **ptr = (void **)(area->gc_pool_start + bl * BYTES_PER_BLOCK);
            if (round == 0 && *ptr == &mp_type_module) {
                mp_obj_dict_t *d = ((mp_obj_module_t *)ptr)->globals;
                if (VERIFY_PTR((void *)d)) {
                    census_mark(area, d->map.table, 'G');
                }
            } else if (round == 0 && *ptr == &mp_type_type) {
                mp_obj_dict_t *d = (mp_obj_dict_t *)MP_OBJ_TYPE_GET_SLOT_OR_NULL(
                    (mp_obj_type_t *)ptr, locals_dict);
                if (d != NULL && VERIFY_PTR((void *)d)) {
                    census_mark(area, d->map.table, 'K');
                }
            } else if (round == 1 && *ptr == &mp_type_dict) {
                census_mark(area, ((mp_obj_dict_t *)ptr)->map.table, 'd');
            } else if (round == 1 && *ptr == &mp_type_list) {
                census_mark(area, ((mp_obj_list_t *)ptr)->items, 'l');
            } else if (round == 1 && (*ptr == &mp_type_bytearray || *ptr == &mp_type_array)) {
                census_mark(area, ((mp_obj_array_t *)ptr)->items, 'a');
            } else if (round == 1 && (*ptr == &mp_type_str || *ptr == &mp_type_bytes)) {
                census_mark(area, ((mp_obj_str_t *)ptr)->data, 's');
            } else if (round == 1 && census_instance(ptr)) {
                census_mark(area, ((mp_obj_instance_t *)ptr)->members.table, 'i');
            }
        }
    }
}

void gc_dump_alloc_table(const mp_print_t *print) {'''
_PATCHES = [
    ("void gc_dump_alloc_table(const mp_print_t *print) {", _OWNED),
    ("""        mp_printf(print, "GC memory layout; from %p:", area->gc_pool_start);
        #endif
""", """        mp_printf(print, "GC memory layout; from %p:", area->gc_pool_start);
        #endif
        census_pass(area);
"""),
    ("""                    } else if (*ptr == &mp_type_module) {
                        c = 'M';
                    } else {""", """                    } else if (*ptr == &mp_type_module) {
                        c = 'M';
                    } else if (bl < sizeof(census_owned) && census_owned[bl]) {
                        c = census_owned[bl];
                    } else if (*ptr == &mp_type_type) {
                        c = 'C';
                    } else if (*ptr == &mp_type_closure) {
                        c = 'X';
                    } else if (*ptr == &mp_type_bound_meth) {
                        c = 'b';
                    } else if (*ptr == &mp_type_gen_instance) {
                        c = 'Y';
                    } else if (*ptr == &mp_type_cell) {
                        c = 'c';
                    } else if (census_instance(ptr)) {
                        c = 'I';
                    } else {"""),
]
_CELL = ("py/objcell.c", "static MP_DEFINE_CONST_OBJ_TYPE(\n    // cell",
         "MP_DEFINE_CONST_OBJ_TYPE(\n    // cell")


def census_interpreter():
    """Path of the census variant of this tree's frozen interpreter (built once per set
    of frozen sources, from a patched copy of the source tree)."""
    frozen = mp_real.frozen_interpreter()
    key = os.path.basename(os.path.dirname(frozen))[len("build-frozen-"):]
    tree, home = mp_real.source()
    ctree = os.path.join(home, "census-tree")
    build = "build-census-" + key
    binary = os.path.join(ctree, "ports", "unix", build, "micropython")
    if os.path.isfile(binary):
        return binary
    with mp_real._locked(home):
        if os.path.isfile(binary):
            return binary
        if not os.path.isdir(ctree):
            mp_real.patched_copy(tree, ctree, [("py/gc.c", old, new) for old, new in _PATCHES]
                                 + [_CELL], "the census")
        manifest = os.path.join(home, "frozen-" + key, "manifest.py")
        mp_real._make(ctree, home, build, manifest, os.path.join(home, build + ".log"))
        for old in sorted(os.path.join(ctree, "ports", "unix", b) for b in os.listdir(
                os.path.join(ctree, "ports", "unix")) if b.startswith("build-census-")):
            if os.path.basename(old) != build:
                shutil.rmtree(old, ignore_errors=True)     # one variant kept
    return binary


PROBE = """\
import gc
import micropython
import sys
import asyncio


def census(step):
    gc.collect()
    gc.collect()
    print('CENSUS', step)
    micropython.mem_info(1)
    print('CENSUS-END')


async def after_boot(dev):
    while not dev.link.up():
        await asyncio.sleep_ms(20)
    await asyncio.sleep(%(telemetry)d + 1)
    for _ in range(200):
        if dev.link.idle(dev.clock()):
            break
        await asyncio.sleep_ms(10)
    census('boot')
    sys.exit(0)


def preload():
    with open('modules.txt') as f:
        for name in f.read().split():
            __import__(name)


async def main():
    census('base')
    preload()
    census('imports')
    import unix_heat_pump
    dev, _ = unix_heat_pump.main('spot.json')
    census('made')
    asyncio.create_task(after_boot(dev))
    await dev.run()

asyncio.run(main())
"""


def blocks(dump):
    """Counter {kind: bytes}, Counter {kind: objects} of one mem_info(1) heap map."""
    cells = []
    for line in dump.split("GC memory layout", 1)[1].splitlines()[1:]:
        free = re.match(r"\s*\((\d+) lines all free\)", line)
        if free:
            cells.append("." * 64 * int(free.group(1)))
        else:
            row = re.match(r"[0-9a-f]{8}: (.*)", line)
            if row:
                cells.append(row.group(1))
    size, count = collections.Counter(), collections.Counter()
    kind = None
    for c in "".join(cells):
        if c == "=":
            size[kind] += 16
        elif c == ".":
            kind = None
        else:
            kind = c
            size[c] += 16
            count[c] += 1
    return size, count


def run(transport, heap):
    """{step: (Counter bytes, Counter objects)} for base, imports, made and boot."""
    binary = census_interpreter()
    order = D.preload_order("heat_pump", transport, main=os.path.join(
        REPO, "examples", "unix_heat_pump.py"))
    with tempfile.TemporaryDirectory(prefix="spot-census-") as tmp:
        broker = None
        if transport == "mqtt":
            from mosquitto import Broker
            os.makedirs(os.path.join(tmp, "mosquitto"))
            broker = Broker(os.path.join(tmp, "mosquitto"))
            broker.start()
            uri = "mqtt://127.0.0.1:%d" % broker.port
        bridge = BridgeProcess(os.path.join(tmp, "bridge"), offline_after=60, command_timeout=5,
                               mqtt=uri if broker else None).start()
        try:
            if not broker:
                uri = "coap://127.0.0.1:%d" % bridge.coap_port
            with open(os.path.join(tmp, "spot.json"), "w") as f:
                json.dump({"id": "census-1", "profile": "heat_pump", "bridge": uri,
                           "telemetry": TELEMETRY_S, "wdt_ms": 0, "comm_timeout": 600,
                           "plan": {"heat_pump": {"sg_ready": 2}}}, f)
            with open(os.path.join(tmp, "modules.txt"), "w") as f:
                f.write("\n".join(m for m in order if m != "unix_heat_pump"))
            with open(os.path.join(tmp, "probe.py"), "w") as f:
                f.write(PROBE % {"telemetry": TELEMETRY_S})
            r = subprocess.run([binary, "-X", "heapsize=%dk" % heap, "probe.py"], cwd=tmp,
                               env=dict(os.environ, MICROPYPATH=".frozen"),
                               capture_output=True, text=True, timeout=TELEMETRY_S + 60)
        finally:
            bridge.stop()
            if broker:
                broker.stop()
    steps = dict(re.findall(r"CENSUS (\w+)\n(.*?)CENSUS-END", r.stdout, re.S))
    if set(steps) != {"base", "imports", "made", "boot"}:
        raise SystemExit("the probe did not finish: " + (r.stdout + r.stderr)[-800:])
    return {step: blocks(dump) for step, dump in steps.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transport", default="coap", choices=("coap", "mqtt"))
    ap.add_argument("--heap", type=int, default=64, help="-X heapsize in KB (default 64)")
    args = ap.parse_args()
    got = run(args.transport, args.heap)
    steps = ("imports", "made", "boot")
    prev = dict(zip(steps, ("base",) + steps[:-1]))
    print("| heat pump over %s, frozen, 32-bit: bytes (objects) | %s | after boot, in all |"
          % (args.transport, " | ".join("+ " + s for s in steps)))
    print("|---|" + "---:|" * (len(steps) + 1))
    base_size, base_count = got["base"]
    totals = [0] * (len(steps) + 1)
    for kind, what in KINDS:
        cells = []
        for i, s in enumerate(steps):
            size = got[s][0][kind] - got[prev[s]][0][kind]
            totals[i] += size
            cells.append("%d (%+d)" % (size, got[s][1][kind] - got[prev[s]][1][kind]))
        size = got["boot"][0][kind] - base_size[kind]
        totals[-1] += size
        cells.append("%d (%+d)" % (size, got["boot"][1][kind] - base_count[kind]))
        print("| %s `%s` | %s |" % (what, kind, " | ".join(cells)))
    print("| total | %s |" % " | ".join(str(t) for t in totals))


if __name__ == "__main__":
    main()
