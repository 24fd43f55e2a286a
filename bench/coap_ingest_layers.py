"""The loop thread's cost of one coap:// NOTIFY, layer by layer, without the store.

    python3 bench/coap_ingest_layers.py
    python3 bench/coap_ingest_layers.py --baseline=../spot-before --repeat=2
    python3 bench/coap_ingest_layers.py --busy --repeat=2   # + a SQLite thread beside

A bridge (tests/adversarial_peers.bridge: real SQLite store, CoAP link) runs in this
process and one heat pump registers; then the ingest's hand-off (Ingest.submit) is
replaced by a list, so nothing is stored, and each layer of the NOTIFY path is
called 5 120 times, 128 at a time (the load generator's window), with the bench's
21-value NOTIFY: the answers of each 128 datagrams as the ingest gives them once
committed
(Ingest._answer: the bridge's, the link's and coap_fast's callbacks, the ACK made,
cached and handed to a socket stand-in), the datagram as the socket reader hands it over (coap_fast: byte-level recognition,
duplicate check, then all below), the CoAP link's frame_nowait (the sender's
device, then below), the bridge's device_frame_nowait (decode, checks, the rows),
the frame decode alone, notify_rows alone. Each layer's microseconds a call
(thread CPU time), the least and the median of 7 passes; a layer's own cost is
its figure less the next one's. Deterministic enough on a shared machine to
compare trees (the least of 7 passes is rarely disturbed), unlike a whole-run
CPU figure. With --baseline the same runs with `spot` imported from that tree,
alternating; with --busy this tree again with a second thread running SQLite
statements meanwhile (the GIL released inside SQLite, taken back between them, as
the store's thread does).
"""
import asyncio
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

VALUES = {i: 1000 + 7 * i for i in range(1, 22)}
CALLS, PASSES, WINDOW = 5120, 7, 128
LAYERS = ("answer after the commit (Ingest._answer: callbacks, ACK)",
          "datagram in (coap_fast, all below)", "CoAP link frame_nowait (all below)",
          "bridge device_frame_nowait (all below)", "frame decode", "notify_rows")


def sqlite_beside(stop, rows=64):
    """A second thread doing what the store's does to the loop: SQLite statements of
    `rows` rows, the GIL released inside SQLite and taken back between them."""
    import sqlite3
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE t (a, b)")
    params = [(i, "x" * 20) for i in range(rows)]
    while not stop.is_set():
        c.executemany("INSERT INTO t VALUES (?, ?)", params)
        c.execute("DELETE FROM t")


async def measure(busy=False):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from adversarial_peers import bridge, announce
    from spot.core import coap as M, frame as F
    from spot.core.coap_binding import CF_SPOT
    from spot.cloud_bridge.service import decode_frame
    from spot.cloud_bridge.ingest import notify_rows

    with tempfile.TemporaryDirectory() as tmp:
        async with bridge(pathlib.Path(tmp)) as parts:
            try:   # the interpreter settings `spot bridge` applies once started
                from spot.cloud_bridge.serving import tune_for_serving
                tune_for_serving()
            except ImportError:   # a tree before them (a --baseline)
                pass
            driver = parts.coap.fast.driver
            sent = []
            driver.transport.sendto = lambda data, addr: sent.append(addr)
            options = [(M.URI_PATH, "s"), (M.CONTENT_FORMAT, CF_SPOT)]
            addr = ("127.0.0.1", 20000)
            driver.datagram_received(M.encode_message(M.CON, M.POST, 1, b"t1", options,
                                                      announce("hp-00000")), addr)
            while not sent:
                await asyncio.sleep(0.01)
            b = parts.bridge
            handed = []   # nothing stored; the datagram layer's callers kept to be answered
            b.ingest.submit = lambda rows, done: handed.append((done, rows))
            now = time.time()
            body = [int(now), VALUES]
            frame = F.encode(F.NOTIFY, 16, 5, body)
            datagrams = [M.encode_message(M.CON, M.POST, 100 + i, b"tk", options, frame)
                         for i in range(CALLS)]

            def answer(reply, error):
                pass
            calls = (
                lambda i: driver.datagram_received(datagrams[i], addr),
                lambda i: parts.coap.frame_nowait(frame, addr, answer),
                lambda i: b.device_frame_nowait("coap", "hp-00000", frame, answer),
                lambda i: decode_frame(frame, max_size=65536),
                lambda i: notify_rows("hp-00000", body, 16, now),
            )
            stop = threading.Event()
            if busy:
                threading.Thread(target=sqlite_beside, args=(stop,), daemon=True).start()
            spent = [[] for _ in range(len(calls) + 1)]
            sent.clear()
            for _ in range(PASSES):
                for k, call in enumerate(calls):
                    parts.coap.fast.endpoint._dedupe.clear()   # every datagram new
                    took = answering = 0.0
                    for first in range(0, CALLS, WINDOW):   # a window in flight at a time
                        handed.clear()
                        t = time.thread_time()
                        for i in range(first, first + WINDOW):
                            call(i)
                        took += time.thread_time() - t
                        if k == 0:   # the window committed: answered as the ingest does
                            t = time.thread_time()
                            b.ingest._answer(handed, [False] * len(handed), None)
                            answering += time.thread_time() - t
                    spent[k + 1].append(1e6 * took / CALLS)
                    if k == 0:
                        spent[0].append(1e6 * answering / CALLS)
                        assert len(sent) == CALLS
                        sent.clear()
            stop.set()
            return [(min(s), sorted(s)[PASSES // 2]) for s in spent]


def run_variant(code, busy=False):
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = code
    out = subprocess.run([sys.executable, __file__, "--child"] + ["--busy"] * busy,
                         capture_output=True,
                         text=True, env=env, timeout=600)
    if out.returncode:
        raise SystemExit(out.stderr)
    return eval(out.stdout.strip().splitlines()[-1])   # noqa: S307 (our own child's list)


def main(argv):
    if argv[:1] == ["--child"]:
        print(repr(asyncio.run(measure("--busy" in argv))))
        return
    from bridge_ingest import baseline_path, option
    repeat = int(option(argv, "repeat", 1))
    base = option(argv, "baseline")
    with tempfile.TemporaryDirectory() as tmp:
        variants = [("this tree", None, False)]
        if base:
            variants.append(("baseline", baseline_path(base, tmp), False))
        if "--busy" in argv:
            variants.append(("this tree, SQLite thread beside", None, True))
        print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
        print()
        print("| variant | " + " | ".join(LAYERS) + " |")
        print("|---|" + "---:|" * len(LAYERS))
        for _ in range(repeat):
            for name, code, busy in variants:
                r = run_variant(code, busy)
                print("| %s | %s |" % (name, " | ".join("%.1f (%.1f)" % x for x in r)))
        print()
        print("us a call: the least of %d passes of %d calls (their median)" % (PASSES, CALLS))
        print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main(sys.argv[1:])
