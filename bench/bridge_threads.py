"""CPU of the `spot bridge` process by thread during one CoAP ingest cell.

    python3 bench/bridge_threads.py                                  # this tree
    python3 bench/bridge_threads.py --baseline=../spot-before --repeat=2

Runs bench/bridge_ingest.py's CoAP cell (1 000 devices, SQLite, 21-value
NOTIFY, 128 in flight; the bridge and the load generator in their own
processes) and reads each of the bridge's threads' user and system CPU
(/proc/<pid>/task/<tid>/stat) at the start and the end of the load window.
The event-loop thread is the process's main thread (tid = pid); the others
are the SQLite worker and idle helpers. Printed per cell: frames/s, the
bridge's CPU, and each busy thread's CPU microseconds per frame acknowledged,
user and system (system: the socket calls on the loop thread, the WAL writes
and fsyncs on the store's). With --baseline the cell runs again with the
bridge of another tree, alternating.
"""
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bridge_ingest as B  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """{tid: (user s, system s)} of a process's threads."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except OSError:   # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (int(fields[11]) / TICK, int(fields[12]) / TICK)
    return out


class ThreadWindow(B.CpuWindow):
    """bridge_ingest's CPU window, also by thread of the bridge."""
    last = None

    def start(self):
        self.threads = thread_cpu(self.pids["bridge"])
        return super().start()

    def stop(self):
        out = super().stop()
        end = thread_cpu(self.pids["bridge"])
        ThreadWindow.last = (self.pids["bridge"], {
            tid: (u - self.threads[tid][0], s - self.threads[tid][1])
            for tid, (u, s) in end.items() if tid in self.threads})
        return out


def cell(tmp, code):
    B.CpuWindow = ThreadWindow
    r = B.run_cell(tmp, "coap", "sqlite", 1000, None, code=code)
    return r, ThreadWindow.last


def main(argv):
    repeat = int(B.option(argv, "repeat", 1))
    base = B.option(argv, "baseline")
    B.raise_fd_limit()
    print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    print()
    print("| variant | frames/s | bridge CPU % | machine CPU % | loop thread us per frame "
          "(user / system) | other threads us per frame (user / system) |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        variants = [("this tree", None)]
        if base:
            variants.append(("baseline", B.baseline_path(base, tmp)))
        for _ in range(repeat):
            for name, code in variants:
                r, (main_tid, threads) = cell(tmp, code)   # main thread: tid = pid
                n = r["acked"]
                loop = threads[main_tid]
                rest = [sum(v[i] for t, v in threads.items() if t != main_tid) for i in (0, 1)]
                print("| %s | %.0f | %.0f | %.0f | %.1f / %.1f | %.1f / %.1f |" % (
                    name, r["fps"], r["cpu"]["bridge"], r["cpu"]["machine"],
                    1e6 * loop[0] / n, 1e6 * loop[1] / n, 1e6 * rest[0] / n,
                    1e6 * rest[1] / n))
    print()
    print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main(sys.argv[1:])
