"""Where one bridge process spends its CPU on the CoAP ingest path (sampled).

    pip install py-spy
    python3 bench/bridge_profile.py                 # 1 000 devices, SQLite, 20 s
    python3 bench/bridge_profile.py 1000 30 postgresql
    python3 bench/bridge_profile.py --stacks=stacks.txt   # keep py-spy's raw stacks
    python3 bench/bridge_profile.py 1000 20 sqlite mqtt   # the MQTT ingest path (mosquitto)
    python3 bench/bridge_profile.py 1000 20 sqlite mqtt --baseline=../spot-before   # another tree

Runs `spot bridge` and the CoAP load generator of bench/bridge_ingest.py
(21-value heat pump NOTIFY frames, closed loop), and while the load runs
samples the bridge with py-spy (every thread, idle time excluded, the
process is not paused: --nonblocking). Each sample is charged to the
innermost frame of its stack that belongs to one of the parts below (so a
SPOT decode called from aiocoap's callback counts as SPOT decode); the
table gives each part's share of the samples, i.e. of bridge CPU; a second table
splits the samples by thread (the event loop, the store's worker, paho's network
thread in trees that have one).

Then, in the same run, the frame decode alone: core/frame.py's decode (pure
Python) against the bridge's (cloud_bridge/frame_decode.py: cbor2's C
decoder with core's strictness), microseconds per frame of the same NOTIFY.
"""
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bridge_ingest as B  # noqa: E402

# (part, pattern on a frame's file path), innermost matching frame wins
PARTS = (
    ("store (SQLite/PostgreSQL driver and SQL)", re.compile(
        r"cloud_bridge/store|/sqlite3/|/psycopg|/psycopg_pool")),
    ("SPOT frame decode (core/frame.py, core/cbor.py, cloud_bridge/frame_decode.py)",
     re.compile(r"/core/(cbor|frame)\.py|/cloud_bridge/frame_decode\.py")),
    ("SPOT CoAP endpoint (core/coap*.py, cloud_bridge/coap_fast.py: the coap:// path)",
     re.compile(r"/core/coap[a-z_]*\.py|/cloud_bridge/coap_fast\.py")),
    ("SPOT MQTT session (core/mqtt*.py, cloud_bridge/mqtt_session.py: packets in, PUBACKs out)",
     re.compile(r"/core/mqtt[a-z_]*\.py|/cloud_bridge/mqtt_session\.py")),
    ("bridge ingest (cloud_bridge/: service, ingest, coap_link, metrics, events; "
     "ports/cpython/ CoAP adapter)", re.compile(r"/cloud_bridge/|/ports/cpython/")),
    ("aiocoap (message parsing, exchange state, transports)", re.compile(r"/aiocoap/")),
    ("paho-mqtt (its network thread, in trees before the MQTT session)", re.compile(r"/paho/")),
    ("asyncio event loop and selectors", re.compile(r"/asyncio/|/selectors\.py")),
    ("thread-pool hand-off (concurrent.futures: the store's worker thread waking)",
     re.compile(r"/concurrent/futures/")),
)
THREADS = (   # (thread, a function only its stacks hold)
    ("event loop", "run_forever"),
    ("store's worker thread", "/concurrent/futures/thread.py"),
    ("paho's network thread", "/paho/"),
)


def thread_of(stack):
    for name, mark in THREADS:
        if mark in stack:
            return name
    return "other threads"


FRAME = re.compile(r"\(([^():]+):\d+\)$")


def classify(stack):
    frames = stack.split(";")
    for f in reversed(frames):               # innermost first
        m = FRAME.search(f)
        path = m.group(1) if m else ""
        for name, pat in PARTS:
            if pat.search(path):
                return name
    return "other (interpreter, logging, C code outside these)"


def decode_times(number=20000):
    """(core us, bridge us) per decode of the load generator's 21-value NOTIFY."""
    from spot.cloud_bridge import frame_decode
    from spot.core import frame as F
    frame = B.notify_template()(B.T0)
    assert frame_decode.decode(frame, 65536) == F.decode(frame, 65536)
    return tuple(1e6 * min(timeit.repeat(lambda: dec(frame, 65536), number=number, repeat=3))
                 / number for dec in (F.decode, frame_decode.decode))


def main(argv):
    keep = [a.split("=", 1)[1] for a in argv if a.startswith("--stacks=")]
    baseline = [a.split("=", 1)[1] for a in argv if a.startswith("--baseline=")]
    argv = [a for a in argv if not a.startswith(("--stacks=", "--baseline="))]
    n = int(argv[0]) if argv else 1000
    seconds = float(argv[1]) if len(argv) > 1 else 20.0
    store_kind = argv[2] if len(argv) > 2 else "sqlite"
    transport = argv[3] if len(argv) > 3 else "coap"
    spy_bin = shutil.which("py-spy")
    if spy_bin is None:
        raise SystemExit("needs py-spy (pip install py-spy)")
    B.raise_fd_limit()
    tmp = tempfile.mkdtemp(prefix="spot-profile-")
    pg = broker = None
    gen = None
    try:
        store = None
        if store_kind == "postgresql":
            sys.path.insert(0, os.path.join(B.ROOT, "tests"))
            import postgres
            pg = postgres.PostgresServer(durable=True).start()
            store = pg.create_database("profile")
        if transport == "mqtt":
            broker = B.fresh_broker(tmp)
        bridge = B.BridgeProcess(os.path.join(tmp, "bridge"), store=store,
                                 code=B.baseline_path(baseline[0], tmp) if baseline else None,
                                 mqtt="mqtt://127.0.0.1:%d" % broker.port if broker else None)
        bridge.start()
        try:
            if broker is None:
                gen = B.LoadGen("coap", n, "127.0.0.1", bridge.coap_port, seconds, B.WINDOW, 0)
                gen.read()
            else:   # enough frames to keep the bridge busy for the sampled seconds
                frames = int(B.MQTT_GUESS[store_kind] * seconds * 2)
                gen = B.LoadGen("mqtt", n, "127.0.0.1", broker.port, frames, B.WINDOW, 0)
                gen.read()
                B.wait_until(lambda: bridge.get("/api/v1/health")["devices"] >= n, 300)
            B.settle(bridge.pid)
            out = os.path.join(tmp, "stacks.txt")
            spy = subprocess.Popen([spy_bin, "record", "-p", str(bridge.pid), "-r", "200",
                                    "-f", "raw", "--nonblocking", "--full-filenames", "-d", str(int(seconds)),
                                    "-o", out], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            gen.go()
            if broker is not None:
                rows0 = bridge.metric("spot_bridge_telemetry_rows_total")
                t0 = B.time.monotonic()
                spy.wait(seconds + 60)
                done = bridge.metric("spot_bridge_telemetry_rows_total") - rows0
                st = {"acked": done / B.ROWS_PER_FRAME, "seconds": B.time.monotonic() - t0}
                gen.read()
            else:
                st = gen.read()
            spy.wait(seconds + 60)
        finally:
            if gen is not None and gen.proc.poll() is None:
                gen.proc.kill()
            bridge.stop()
            if broker is not None:
                broker.stop()
        counts = collections.Counter()
        threads = collections.Counter()
        with open(out) as f:
            for line in f:
                stack, _, k = line.rstrip("\n").rpartition(" ")
                if stack:
                    counts[classify(stack)] += int(k)
                    threads[thread_of(stack)] += int(k)
        if keep:
            shutil.copy(out, keep[0])
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(counts.values())
    print("Bridge CPU on the %s ingest path, %d devices, %s, %.0f frames/s stored "
          "during the sampled run; %d samples (py-spy, 200 Hz, all threads, idle excluded)"
          % ("MQTT" if transport == "mqtt" else "CoAP", n,
             "SQLite" if store_kind == "sqlite" else "PostgreSQL",
             st["acked"] / st["seconds"], total))
    print()
    print("| part | share of bridge CPU |")
    print("|---|---:|")
    for name, k in counts.most_common():
        print("| %s | %.0f %% |" % (name, 100.0 * k / total))
    print()
    print("| thread | share of bridge CPU |")
    print("|---|---:|")
    for name, k in threads.most_common():
        print("| %s | %.0f %% |" % (name, 100.0 * k / total))
    core_us, bridge_us = decode_times()
    print()
    print("Frame decode, %d-byte NOTIFY: core/frame.py %.1f us, bridge (cbor2 C decoder, "
          "core's strictness) %.1f us: %.2fx" % (len(B.notify_template()(B.T0)), core_us,
                                                 bridge_us, core_us / bridge_us))


if __name__ == "__main__":
    main(sys.argv[1:])
