"""The bridge's event-loop thread on the coap:// NOTIFY path, in one process.

    python3 bench/coap_ingest_loop.py                          # this tree
    python3 bench/coap_ingest_loop.py --baseline=../spot-before --repeat=3
    python3 bench/coap_ingest_loop.py --baseline=../spot-before --seconds=6   # + closed loop

A bridge (tests/adversarial_peers.bridge: real SQLite store, CoAP link, HTTP)
runs in this process; 1 000 devices register, then rounds of 128 NOTIFY
datagrams (21 values, confirmable POSTs to /s, one per device in turn) are
handed straight to coap_fast's driver, as its socket reader would, and each
round waits for its 128 answers (they are caught before the socket). No
network, no load generator: what is measured is the bridge's own work, with
the interpreter settings `spot bridge` applies (cloud_bridge/serving.py, in a
tree that has it).

Printed per variant: CPU microseconds per frame of the loop thread and of the
whole process (loop + SQLite worker thread); for this tree the store thread's
part by statement (the store's statement runner wrapped); then, in a pass under
cProfile (deterministic: it does not depend on the machine's load), the Python
function calls per frame made on the loop thread, and the loop thread's time by
stage of a NOTIFY's path (STAGES: datagram in and CoAP parse, CBOR decode,
frame checks, hand-off to the store, the answer after the commit). With
--seconds, also a closed loop: 128 frames in flight, each answer sends the next frame, for that long
after a 2 s warm-up: frames/s, CPU per frame, how many cores the process
kept busy (above 1: the store's thread and the loop's ran at the same time)
and the frames a transaction held on average.
With --baseline each variant runs in its own process, alternating, `spot`
imported from that tree.
"""
import asyncio
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

DEVICES, WINDOW = 1000, 128
VALUES = {i: 1000 + 7 * i for i in range(1, 22)}


async def measure(rounds, profile, seconds=0):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from adversarial_peers import bridge, announce
    from spot.core import coap as M, frame as F
    from spot.core.coap_binding import CF_SPOT

    with tempfile.TemporaryDirectory() as tmp:
        async with bridge(__import__("pathlib").Path(tmp), reg_total_burst=10 ** 6,
                          reg_max_plain=10 ** 6, reg_source_burst=10 ** 6) as parts:
            try:   # the interpreter settings `spot bridge` applies once started
                from spot.cloud_bridge.serving import tune_for_serving
                tune_for_serving()
            except ImportError:   # a tree before them (a --baseline)
                pass
            driver = parts.coap.fast.driver
            statements = time_statements(parts.store)
            answered, waiting = [], [None]

            def sendto(data, addr):   # the answers, caught before the socket
                answered.append(addr)
                if waiting[0] is not None and len(answered) >= WINDOW \
                        and not waiting[0].done():
                    waiting[0].set_result(None)
            driver.transport.sendto = sendto
            options = [(M.URI_PATH, "s"), (M.CONTENT_FORMAT, CF_SPOT)]
            addrs = [("127.0.0.1", 20000 + i) for i in range(DEVICES)]
            mid = [1]

            def datagram(frame):
                mid[0] = (mid[0] + 1) & 0xFFFF
                return M.encode_message(M.CON, M.POST, mid[0], b"t%d" % mid[0], options, frame)
            for i, a in enumerate(addrs):
                driver.datagram_received(datagram(announce("hp-%05d" % i)), a)
                await asyncio.sleep(0)
            while len(answered) < DEVICES:
                await asyncio.sleep(0.01)
            t0 = int(time.time()) - 80000
            frames, profiler = {}, cProfile.Profile()

            def frame_of(k):
                t = t0 + k // DEVICES
                if t not in frames:
                    frames[t] = F.encode(F.NOTIFY, 16, 5, [t, VALUES])
                return datagram(frames[t]), addrs[k % DEVICES]
            if seconds:   # closed loop: each answer sends the next frame (WINDOW in flight)
                loop, sent = asyncio.get_running_loop(), [0]

                def send_next():
                    sent[0] += 1
                    driver.datagram_received(*frame_of(sent[0]))

                def sendto_next(data, addr):
                    answered.append(addr)
                    loop.call_soon(send_next)
                driver.transport.sendto = sendto_next
                answered.clear()
                for _ in range(WINDOW):
                    send_next()
                await asyncio.sleep(2.0)   # warm-up
                ingest = parts.bridge.ingest
                n0, wall0, tx0 = len(answered), time.perf_counter(), ingest.transactions
                loop0, proc0 = time.thread_time(), time.process_time()
                await asyncio.sleep(seconds)
                n = len(answered) - n0
                wall = time.perf_counter() - wall0
                return {"fps": n / wall, "loop_us": 1e6 * (time.thread_time() - loop0) / n,
                        "process_us": 1e6 * (time.process_time() - proc0) / n,
                        "cores": (time.process_time() - proc0) / wall,
                        "per_tx": n / max(1, ingest.transactions - tx0)}

            async def run(n, first, profile=False):
                for r in range(n):
                    answered.clear()
                    waiting[0] = asyncio.get_running_loop().create_future()
                    batch = []
                    for j in range(WINDOW):
                        k = first + r * WINDOW + j
                        t = t0 + k // DEVICES
                        if t not in frames:
                            frames[t] = F.encode(F.NOTIFY, 16, 5, [t, VALUES])
                        batch.append((datagram(frames[t]), addrs[k % DEVICES]))
                    if profile:
                        profiler.enable()
                    for data, addr in batch:
                        driver.datagram_received(data, addr)
                    await waiting[0]
                    if profile:
                        profiler.disable()
            await run(20, 0)   # warm-up
            statements.clear()
            loop0, proc0 = time.thread_time(), time.process_time()
            await run(rounds, 20 * WINDOW, profile)
            n = rounds * WINDOW
            out = {"loop_us": 1e6 * (time.thread_time() - loop0) / n,
                   "process_us": 1e6 * (time.process_time() - proc0) / n}
            if profile:
                stats = pstats.Stats(profiler)
                out["calls"] = stats.total_calls / n
                out["stages"] = stages(stats)
            out["store_us"] = {k: 1e6 * v / n for k, v in statements.items()}
            return out


# The loop thread's path of a NOTIFY, by stage: (stage, {file name: functions or "*"});
# functions of both trees (before and after the coap_fast NOTIFY path) are listed, a
# name:line where a file has two of that name (core/coap_server.py: Request, Response)
STAGES = (
    ("datagram in, CoAP parse, duplicate check", {
        "coap_fast.py": {"datagram_received", "_bus_post", "_remember", "_run", "_schedule",
                         "is_closing", "_handle", "_read"},
        "coap.py": {"decode", "_check_options", "get", "get_uint", "get_block", "decode_uint",
                    "__init__", "_read_ext"},
        "coap_server.py": {"on_request", "__init__:58", "__init__:59", "renew", "_strings",
                           "_pre_handle", "_call"},
        "coap_endpoint.py": {"receive", "_flush", "next_timeout", "events"},
        "coap_client.py": {"arm", "next_due"},
        "coap_transport.py": {"_run", "now", "_schedule", "_cancel"}}),
    ("CBOR decode (cbor2 C and core's strictness checks)", {"frame_decode.py": "*"}),
    ("frame checks: link, bridge, NOTIFY rows", {
        "coap_link.py": {"frame_nowait", "_where", "_context_owner", "_commissioned"},
        "service.py": {"device_frame_nowait", "_heard", "_store_telemetry"},
        "device_clock.py": "*", "ingest.py": {"notify_rows", "_plain", "<listcomp>"},
        "metrics.py": "*", "frame.py": {"peek"}}),
    ("hand to the store (group commit queue)", {"ingest.py": {"submit", "_queue_taken"}}),
    ("after the commit: callbacks, ACK encode and send", {
        "ingest.py": {"_answer", "_commit_taken", "<genexpr>"},
        "service.py": {"_stored", "_telemetry_stored", "<lambda>"},
        "events.py": {"listened"}, "coap_link.py": {"stored", "_stored"},
        "coap_fast.py": {"_reply", "_ack", "_send", "_flush_soon", "_flush", "<lambda>",
                         "sendto"},
        "coap_server.py": {"respond", "_answer", "_datagram", "__init__:106", "__init__:107"},
        "coap.py": {"put_header", "put_option", "put_payload", "_ext", "block_size",
                    "encode_message", "_uint_len"},
        "coap_endpoint.py": {"respond", "send", "step", "poke"},
        "coap_transport.py": {"reply_code", "poke"},
        "coap_ingest_loop.py": {"sendto"}}),
)
OTHER = "asyncio loop, futures, the rest"


def stage_of(func):
    """The STAGES name of a profiled function (file, line, name), None if none."""
    name = func[0].replace("\\", "/").rsplit("/", 1)[-1]
    for stage, files in STAGES:
        names = files.get(name)
        if names == "*" or (names and (func[2] in names or "%s:%d" % (func[2], func[1])
                                           in names)):
            return stage
    return None


def stages(stats):
    """Loop-thread seconds by stage from a cProfile run: each function's own time, a
    builtin's (cbor2, len, dict.get, ...) charged to its callers in proportion; the
    event loop's wait in epoll left out (it is not work)."""
    out = {}
    for func, (_, _, tt, _, callers) in stats.stats.items():
        if "poll" in func[2] and func[0] == "~":
            continue
        stage = stage_of(func)
        if stage is None and func[0] == "~" and callers:
            total = sum(c[2] for c in callers.values()) or 1.0
            for caller, c in callers.items():
                key = stage_of(caller) or OTHER
                out[key] = out.get(key, 0.0) + tt * c[2] / total
            continue
        out[stage or OTHER] = out.get(stage or OTHER, 0.0) + tt
    return out


def time_statements(store):
    """Store-thread CPU by part (a SQLite store of this tree: its _steps and
    _in_transaction, wrapped); {} for another store or tree."""
    try:
        from spot.cloud_bridge import store_sqlite as SS
        steps, in_transaction = SS._steps, store._in_transaction
    except (ImportError, AttributeError):
        return {}
    spent = {}

    def add(key, t):
        spent[key] = spent.get(key, 0.0) + time.thread_time() - t

    class Timed:
        def __init__(self, c):
            self.c = c

        def execute(self, sql, params=()):
            t = time.thread_time()
            try:
                return self.c.execute(sql, params)
            finally:
                add(" ".join(sql.split()[:3]), t)

        def executemany(self, sql, seq):
            t = time.thread_time()
            try:
                return self.c.executemany(sql, seq)
            finally:
                add(" ".join(sql.split()[:3]), t)

    def timed_steps(c, script):
        t = time.thread_time()
        try:
            return steps(Timed(c), script)
        finally:
            add("transaction scripts (statements and their Python)", t)

    def timed_transaction(begin, work):
        t = time.thread_time()
        try:
            return in_transaction(begin, work)
        finally:
            add("transactions (scripts, BEGIN, COMMIT)", t)
    SS._steps = timed_steps
    store._in_transaction = timed_transaction
    return spent


def child(argv):
    rounds, profile, seconds = int(argv[0]), argv[1] == "1", float(argv[2])
    print(repr(asyncio.run(measure(rounds, profile, seconds))))


def run_variant(code, rounds, profile, seconds=0):
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = code
    out = subprocess.run([sys.executable, __file__, "--child", str(rounds), str(int(profile)),
                          str(seconds)],
                         capture_output=True, text=True, env=env, timeout=600)
    if out.returncode:
        raise SystemExit(out.stderr)
    return eval(out.stdout.strip().splitlines()[-1])   # noqa: S307 (our own child's dict)


def main(argv):
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    from bridge_ingest import baseline_path, option
    repeat = int(option(argv, "repeat", 2))
    rounds = int(option(argv, "rounds", 150))
    seconds = float(option(argv, "seconds", 0))
    base = option(argv, "baseline")
    with tempfile.TemporaryDirectory() as tmp:
        variants = [("this tree", None)]
        if base:
            variants.append(("baseline", baseline_path(base, tmp)))
        print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
        print()
        print("| variant | loop thread CPU us per frame | process CPU us per frame |")
        print("|---|---:|---:|")
        for _ in range(repeat):
            for name, code in variants:
                r = run_variant(code, rounds, False)
                print("| %s | %.1f | %.1f |" % (name, r["loop_us"], r["process_us"]))
                if code is None:
                    r_this = r
        if seconds:
            print()
            print("Closed loop, %d in flight, %g s a variant (each answer sends the next "
                  "frame):" % (WINDOW, seconds))
            print()
            print("| variant | frames/s | loop thread CPU us per frame | process CPU us per "
                  "frame | cores busy (process CPU / wall) | frames per transaction |")
            print("|---|---:|---:|---:|---:|---:|")
            for _ in range(repeat):
                for name, code in variants:
                    r = run_variant(code, 0, False, seconds)
                    print("| %s | %.0f | %.1f | %.1f | %.2f | %.1f |" % (
                        name, r["fps"], r["loop_us"], r["process_us"], r["cores"],
                        r["per_tx"]))
        print()
        print("Store thread of this tree's last run, CPU us per frame by part:")
        print()
        for k, v in sorted(r_this["store_us"].items(), key=lambda kv: -kv[1])[:6]:
            print("- %s: %.1f" % (k, v))
        print()
        profiled = [(name, run_variant(code, 50, True)) for name, code in variants]
        print("| variant | Python calls per frame on the loop thread (cProfile) |")
        print("|---|---:|")
        for name, r in profiled:
            print("| %s | %.1f |" % (name, r["calls"]))
        print()
        print("The loop thread's work by stage (cProfile, shares of its time: the profiler "
              "inflates small functions, so shares only):")
        print()
        print("| stage | " + " | ".join(name for name, _ in profiled) + " |")
        print("|---|" + "---:|" * len(profiled))
        for stage in [st for st, _ in STAGES] + [OTHER]:
            print("| %s | %s |" % (stage, " | ".join(
                "%.0f %%" % (100.0 * r["stages"].get(stage, 0.0) / sum(r["stages"].values()))
                for _, r in profiled)))
        print()
        print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main(sys.argv[1:])
