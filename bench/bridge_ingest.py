"""Telemetry ingest of ONE whole bridge process: frames and rows stored per second.

    python3 bench/bridge_ingest.py            # markdown table for docs/benchmarks.md
    python3 bench/bridge_ingest.py --quick    # 100 and 1 000 devices, SQLite only
    python3 bench/bridge_ingest.py --target=HOST:PORT --devices=1000 --seconds=8
        # against a bridge already running (yours): see docs/benchmarks.md
    python3 bench/bridge_ingest.py --only=coap-sqlite-1000 --aiocoap --floor
        # one cell; with --aiocoap each CoAP cell runs again with coap:// on aiocoap
        # (coap_fast = false, the path before) and --floor adds the SQLite store alone
    mkdir ../spot-before && git archive main | tar -x -C ../spot-before
    python3 bench/bridge_ingest.py --only=coap-sqlite-1000 --baseline=../spot-before --repeat=3
        # each cell again with the bridge from another tree (e.g. before a change),
        # alternating, three times

Each cell runs `spot bridge` (the real service: store, CoAP link, MQTT link,
HTTP API) as its own process on a fresh store, and a load generator as a
second process: N simulated devices that speak the real protocol.

- CoAP: one UDP socket per device (the bridge knows a device by its source
  address). Each device POSTs its ANNOUNCE to the bridge's /s, then NOTIFY
  frames as confirmable POSTs to /s. The bridge answers 2.04 only after the
  frame's rows are committed (cloud_bridge/ingest.py), so the generator keeps
  a fixed window of requests in flight (closed loop, at most two per device,
  at most WINDOW in all), round robin over the devices, for LOAD_SECONDS: the
  rate is the bridge's sustained capacity, not an offered load.
- MQTT (mosquitto, a fresh broker per cell): one MQTT connection per device;
  each publishes its birth (ANNOUNCE, retained) and, once the bridge has
  registered every device, NOTIFY frames on spot/v1/<dev>/10/up at QoS 1. The
  broker acknowledges the device; the bridge acknowledges the broker only
  after commit (its MQTT session holds the PUBACK), so the generator publishes a fixed number
  of frames as fast as the broker takes them and the bench times how long
  the bridge takes to store them all (from the first publish to the last
  row counted in /metrics). The broker runs with unlimited queue and
  in-flight window toward the bridge (its defaults, 20 in flight and 1 000
  queued, drop messages: the last table shows it).

Every frame is the heat pump's NOTIFY of 21 values (81 bytes, as the
simulator sends), each with its own time (from a day ago on: within the
bridge's retention, which prunes older rows), so every frame stores 21 rows;
a second table repeats 1 000 devices with 250-value frames (about 1.2 kB,
the low end of IEC TR 61850-80-3's 1-5 kB per report). At the end the
bridge is stopped and the telemetry table is counted: stored rows must equal
acknowledged frames x values (CoAP: 2.04 received by the device; MQTT:
PUBACK from the broker).

CPU: the bridge process (all its threads: event loop, SQLite worker),
the load generator, and the whole machine (/proc/stat) over the timed
window; 100 % = one core. Registration (ANNOUNCE to stored) is timed too.

This module also holds what bench/bridge_fanout.py and bench/bridge_memory.py
reuse: BridgeProcess (a `spot bridge` subprocess) and CoapFleet (light CoAP
devices that register, send telemetry and answer commands).
"""
import asyncio
import collections
import json
import os
import platform
import random
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from netutil import free_tcp_port, free_udp_port  # noqa: E402  (tests/netutil.py)
from spot.core import coap as C  # noqa: E402
from spot.core import frame as F  # noqa: E402
from spot.core.coap_binding import CF_SPOT, BUS  # noqa: E402
from spot.core.node import A_ID, A_SERVICES, A_FLAGS, FLAG_CLOCK  # noqa: E402
from spot.core.services import HEAT_PUMP  # noqa: E402

T0 = int(time.time()) // 60 * 60 - 86400   # telemetry times: from a day ago (within retention)
# the heat pump simulator's telemetry values (21 objects)
VALUES = {1: 1114, 2: 223, 3: 2309, 4: 164, 5: 5000, 6: 2, 7: 350, 8: 253, 9: 500, 10: 453,
          11: 26, 12: 203, 13: 210, 14: 1066, 15: 4456, 16: 418, 17: 6000, 20: 821, 21: 0,
          22: 1, 23: 2}
ROWS_PER_FRAME = len(VALUES)
BIG_VALUES = 250            # the "bigger frames" table: 250 values, about 1.2 kB a frame
SERVICES = [[0, 1, 0], [2, 1, 0], [4, 1, 0], [HEAT_PUMP, 1, 0]]

SIZES = (100, 1000, 10000)
LOAD_SECONDS = 8.0          # CoAP: timed closed-loop window
WINDOW = 128                # CoAP: requests in flight at most (2 per device at most)
MQTT_SECONDS = 8.0          # MQTT: frames published ~ this many seconds of bridge work
MQTT_GUESS = {"sqlite": 1500, "postgresql": 1200}   # frames/s, sizes the MQTT batch

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ measuring processes

def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cluster_cpu_seconds(datadir):
    """CPU seconds so far of a PostgreSQL cluster's processes (its data directory): the
    postmaster's own and its ended children's, plus its live children's (backends, the
    WAL writer, the checkpointer). A backend's CPU moves to the postmaster's children
    count when it ends, so a difference of two readings holds every backend's."""
    with open(os.path.join(datadir, "postmaster.pid")) as f:
        pm = int(f.readline())
    with open("/proc/%d/stat" % pm) as f:
        ticks = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15])
    for pid in children(pm):
        try:
            ticks += cpu_seconds(pid) * CLK_TCK
        except OSError:   # ended meanwhile: counted by the postmaster once it reaps it
            pass
    return ticks / CLK_TCK


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_cpu():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class CpuWindow:
    """CPU of some processes and of the machine between start() and stop()."""

    def __init__(self, **pids):
        self.pids = pids

    def start(self):
        self.t = time.monotonic()
        self.cpu = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.machine = machine_cpu()
        return self

    def stop(self):
        wall = time.monotonic() - self.t
        out = {k: 100.0 * (cpu_seconds(p) - self.cpu[k]) / wall for k, p in self.pids.items()}
        busy, total = machine_cpu()
        cores = os.cpu_count() or 1
        out["machine"] = 100.0 * cores * (busy - self.machine[0]) / max(1, total - self.machine[1])
        out["wall"] = wall
        return out


def udp_rcvbuf_errors():
    """Datagrams the kernel dropped for a full socket receive buffer (all sockets)."""
    with open("/proc/net/snmp") as f:
        lines = [l.split() for l in f if l.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def children(ppid):
    """Pids of the direct children of ppid (e.g. PostgreSQL's backends)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        out.append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def settle(pid, also=(), below=10.0, every=0.5, timeout=180):
    """Wait until a process (and the processes `also` returns) use less than `below` %
    of a core: the bridge's backlog (e.g. one delivery check per registered device)
    is done; returns seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        pids = [pid] + list(also() if callable(also) else also)
        before = {}
        for p in pids:
            try:
                before[p] = cpu_seconds(p)
            except OSError:
                pass
        time.sleep(every)
        used = 0.0
        for p, c in before.items():
            try:
                used += cpu_seconds(p) - c
            except OSError:
                pass
        if 100.0 * used / every < below:
            break
    return time.monotonic() - t0


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


# ------------------------------------------------------------------ the bridge process

class BridgeProcess:
    """`spot bridge` as a subprocess on free 127.0.0.1 ports and its own data dir."""

    def __init__(self, data, store=None, mqtt=None, offline_after=3600, command_timeout=30,
                 http_port=None, coap_port=None, log_level="warning", coap_fast=True,
                 code=None, extra_args=()):
        self.data = data
        self.code = code             # a directory holding another `spot` package to run
        self.coap_fast = coap_fast   # False: coap:// on aiocoap (the path before coap_fast)
        self.extra_args = list(extra_args)   # more `spot bridge` flags (e.g. --instance)
        self.store = store
        self.mqtt = mqtt
        self.offline_after = offline_after
        self.command_timeout = command_timeout
        self.http_port = http_port or free_tcp_port()
        self.coap_port = coap_port or free_udp_port()
        self.log_level = log_level
        self.proc = None
        self.url = "http://127.0.0.1:%d" % self.http_port

    @property
    def coap(self):
        return ("127.0.0.1", self.coap_port)

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=30, attempts=3):
        """Start and wait for its ready line; probed ports taken meanwhile: new ones."""
        for attempt in range(attempts):
            try:
                return self._start(timeout)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                self.http_port, self.coap_port = free_tcp_port(), free_udp_port()
                self.url = "http://127.0.0.1:%d" % self.http_port

    def _start(self, timeout):
        os.makedirs(self.data, exist_ok=True)
        cfg = os.path.join(self.data, "bridge.toml")
        with open(cfg, "w") as f:
            f.write("[bridge]\noffline_after = %s\ncommand_timeout = %s\n"
                    % (self.offline_after, self.command_timeout))
            if not self.code:   # (other code may not know the setting)
                f.write("coap_fast = %s\n" % ("true" if self.coap_fast else "false"))
            # the fleets register all at once: measure the data path, not the admission limits
            f.write("[registration]\ntotal_burst = 1000000\nmax_plain = 1000000\n")
        argv = [sys.executable, "-m", "spot.cli", "bridge", "--config", cfg, "--data", self.data,
                "--http", "127.0.0.1:%d" % self.http_port,
                "--coap", "127.0.0.1:%d" % self.coap_port, "--log-level", self.log_level]
        if self.store:
            argv += ["--store", self.store]
        if self.mqtt:
            argv += ["--mqtt", self.mqtt]
        argv += self.extra_args
        self.log = open(os.path.join(self.data, "bridge.log"), "ab")
        env = dict(os.environ, PYTHONPATH=self.code) if self.code else None
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, env=env)
        line = self._readline(timeout)
        if "SPOT bridge running" not in line:
            self.kill()
            raise RuntimeError("spot bridge did not start: %r\n%s" % (line, self.log_tail()))
        return self

    def _readline(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while not buf.endswith(b"\n") and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
        return buf.decode("utf-8", "replace")

    def log_tail(self, n=3000):
        try:
            with open(os.path.join(self.data, "bridge.log"), "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def get(self, path, timeout=30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if path.startswith("/api/") else body.decode()

    def post(self, path, data, timeout=120):
        req = urllib.request.Request(self.url + path, data=json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())

    def metric(self, name, **labels):
        """A value from /metrics (0 if absent)."""
        want = name
        if labels:
            want += "{" + ",".join('%s="%s"' % kv for kv in sorted(labels.items())) + "}"
        for line in self.get("/metrics").splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def stop(self, timeout=30):
        """SIGTERM (a clean shutdown: pending ingest is flushed), then kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close()

    def kill(self):
        """SIGKILL: no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close()

    def _close(self):
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None


# ------------------------------------------------------------------ light CoAP devices

def values_of(count):
    """The telemetry values of a frame of `count` values (0: the heat pump's 21)."""
    return VALUES if not count else {oid: 1000 + oid for oid in range(1, count + 1)}


def notify_template(values=VALUES, sid=HEAT_PUMP):
    """A function t -> NOTIFY frame [t, values] (t patched into a pre-encoded frame)."""
    frame = F.encode(F.NOTIFY, sid, 0, [T0, values])
    mark = b"\x1a" + T0.to_bytes(4, "big")
    at = frame.index(mark) + 1
    head, tail = frame[:at], frame[at + 4:]
    return lambda t: head + t.to_bytes(4, "big") + tail


def announce_frame(device, mid, flags=FLAG_CLOCK):
    """The ANNOUNCE of a bench device: by default it takes its clock from the RESULT
    (spec 3.1, flag bit 1) as a CoAP device does; flags=0: one from before that."""
    body = {A_ID: device, A_SERVICES: SERVICES}
    if flags:
        body[A_FLAGS] = flags
    return F.encode(F.ANNOUNCE, 0, mid, body)


_POST_OPTS = C.encode_message(C.CON, C.POST, 0, b"\0\0\0\0",
                              [(C.URI_PATH, BUS.encode()),
                               (C.CONTENT_FORMAT, C.encode_uint(CF_SPOT))])[8:]


class _Pending:
    __slots__ = ("i", "mid", "token", "dgram", "deadline", "tries", "acked", "sent", "done")


class _Sock(asyncio.DatagramProtocol):
    def __init__(self, fleet, i):
        self.fleet = fleet
        self.i = i

    def datagram_received(self, data, addr):
        self.fleet._datagram(self.i, data)

    def error_received(self, exc):
        self.fleet.socket_errors += 1


class CoapFleet:
    """N light CoAP devices (ids <prefix>-00001 ...), one UDP socket each, in one process.

    They speak plain CoAP (RFC 7252: CON with retransmission, empty ACKs and
    separate responses) to the bridge's /s: register(), send telemetry with
    post(), and answer every request the bridge POSTs to them with a RESULT
    (recording when each device first received one: `commanded`).
    """

    ACK_TIMEOUT = 2.0
    MAX_RETRANSMIT = 4

    def __init__(self, n, bridge, prefix="hp"):
        self.n = n
        self.bridge = bridge
        self.ids = ["%s-%05d" % (prefix, i + 1) for i in range(n)]
        self.transports = [None] * n
        # random first message ids, as RFC 7252 4.4 asks of an endpoint that starts: a
        # run against a bridge already running reuses the ports of the one before, and
        # the same (address, message id) within 247 s would be taken for a duplicate
        self.mids = [random.getrandbits(16) for _ in range(n)]
        self.pending = {}        # token -> _Pending
        self.by_mid = {}         # (device index, mid) -> token
        self._token = 0
        self.socket_errors = 0
        self.retransmits = 0
        self.commanded = {}      # device index -> (first request time, frame)
        self.requests_served = 0
        self.flags = FLAG_CLOCK    # ANNOUNCE flags (0: old-style devices, a clock WRITE each)
        self._sweeper = None

    async def open(self, host="127.0.0.1"):
        loop = asyncio.get_running_loop()
        for i in range(self.n):
            tr, _ = await loop.create_datagram_endpoint(lambda i=i: _Sock(self, i),
                                                        local_addr=(host, 0))
            self.transports[i] = tr
        self._sweeper = asyncio.ensure_future(self._sweep())
        return self

    def close(self):
        if self._sweeper is not None:
            self._sweeper.cancel()
        for tr in self.transports:
            if tr is not None:
                tr.close()

    # -- client side

    def post(self, i, frame, done):
        """POST frame to the bridge's /s from device i; done(code, datagram) at the
        answer (code None after the last retransmission timed out)."""
        self.mids[i] = mid = (self.mids[i] + 1) & 0xFFFF
        self._token = (self._token + 1) & 0xFFFFFFFF
        token = self._token.to_bytes(4, "big")
        p = _Pending()
        p.i, p.mid, p.token, p.done = i, mid, token, done
        p.dgram = b"\x44\x02" + mid.to_bytes(2, "big") + token + _POST_OPTS + b"\xff" + frame
        p.tries = 0
        p.acked = False
        p.sent = time.monotonic()
        p.deadline = p.sent + self.ACK_TIMEOUT
        self.pending[token] = p
        self.by_mid[(i, mid)] = token
        self.transports[i].sendto(p.dgram, self.bridge)

    def _finish(self, token, code, data):
        p = self.pending.pop(token, None)
        if p is None:
            return
        self.by_mid.pop((p.i, p.mid), None)
        p.done(code, data)

    async def _sweep(self):
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for token, p in list(self.pending.items()):
                if now < p.deadline:
                    continue
                if not p.acked and p.tries < self.MAX_RETRANSMIT:
                    p.tries += 1
                    self.retransmits += 1
                    p.deadline = now + self.ACK_TIMEOUT * (2 ** p.tries)
                    self.transports[p.i].sendto(p.dgram, self.bridge)
                else:
                    self._finish(token, None, None)

    def _datagram(self, i, data):
        if len(data) < 4 or data[0] >> 6 != 1:
            return
        mtype = (data[0] >> 4) & 3
        tkl = data[0] & 15
        code = data[1]
        mid = data[2] << 8 | data[3]
        if 1 <= code < 32:
            return self._serve(i, data)
        if code == 0:
            token = self.by_mid.get((i, mid))
            p = self.pending.get(token)
            if p is not None and p.i == i:
                if mtype == C.ACK:      # empty ACK: the answer comes separately
                    p.acked = True
                    p.deadline = time.monotonic() + 60
                elif mtype == C.RST:
                    self._finish(token, None, None)
            return
        if mtype == C.CON:              # separate response: acknowledge it
            self.transports[i].sendto(bytes((0x60, 0, data[2], data[3])), self.bridge)
        token = data[4:4 + tkl]
        p = self.pending.get(token)
        if p is not None and p.i == i:
            self._finish(token, code, data)

    # -- server side: commands from the bridge

    def _serve(self, i, data):
        try:
            msg = C.decode(data)
        except C.CoapError:
            return
        reply = None
        try:
            op, sid, fmid, body = F.decode(msg.payload)
            if op in F.REQUESTS:
                reply = F.encode(F.RESULT, sid, fmid, None)
        except Exception:
            pass
        if i not in self.commanded:
            self.commanded[i] = (time.time(), msg.payload)
        self.requests_served += 1
        code = C.CHANGED if reply is not None else C.BAD_REQUEST
        opts = [(C.CONTENT_FORMAT, C.encode_uint(CF_SPOT))] if reply else []
        mtype = C.ACK if msg.mtype == C.CON else C.NON
        self.transports[i].sendto(C.encode_message(mtype, code, msg.mid, msg.token, opts,
                                                   reply or b""), self.bridge)

    # -- registration and load

    async def register(self, concurrency=64, timeout=600, indices=None):
        """ANNOUNCE every device (or those of `indices`), at most `concurrency` at a
        time, until each got its RESULT; returns seconds taken."""
        loop = asyncio.get_running_loop()
        left = collections.deque(range(self.n) if indices is None else indices)
        total = len(left)
        finished = loop.create_future()
        state = {"open": 0, "ok": 0}
        t0 = time.monotonic()

        def launch():
            while left and state["open"] < concurrency:
                i = left.popleft()
                state["open"] += 1
                mid = (self.mids[i] + 1) & 0xFFFF
                self.post(i, announce_frame(self.ids[i], mid, self.flags),
                          lambda code, data, i=i, mid=mid: answered(i, mid, code, data))

        def answered(i, mid, code, data):
            state["open"] -= 1
            ok = False
            if code is not None and code >> 5 == 2:
                frame = C.decode(data).payload
                ok = F.peek(frame) is not None and frame[0] & 0x0F == F.RESULT \
                    and F.message_id(frame) == mid
            if ok:
                state["ok"] += 1
            else:
                left.append(i)
            if state["ok"] == total and not finished.done():
                finished.set_result(None)
            else:
                launch()

        launch()
        await asyncio.wait_for(finished, timeout)
        return time.monotonic() - t0

    async def telemetry(self, seconds, window=WINDOW, per_device=2, frame_of=None):
        """Closed-loop NOTIFY POSTs for `seconds`; every device's frames carry
        times T0+1, T0+2, ...; returns counts and latencies."""
        loop = asyncio.get_running_loop()
        frame_of = frame_of or notify_template()
        seq = [0] * self.n
        ready = collections.deque()
        for _ in range(per_device):
            ready.extend(range(self.n))
        st = {"acked": 0, "failed": 0, "timeouts": 0, "open": 0, "lat": []}
        acked_per = [0] * self.n
        stopping = [False]
        drained = loop.create_future()

        def send():
            while ready and st["open"] < window and not stopping[0]:
                i = ready.popleft()
                seq[i] += 1
                st["open"] += 1
                self.post(i, frame_of(T0 + seq[i]),
                          lambda code, data, i=i, t=time.monotonic(): answered(i, t, code))

        def answered(i, t_sent, code):
            st["open"] -= 1
            if code is None:
                st["timeouts"] += 1
            elif code >> 5 == 2:
                st["acked"] += 1
                acked_per[i] += 1
                st["lat"].append(time.monotonic() - t_sent)
            else:
                st["failed"] += 1
            ready.append(i)
            if stopping[0]:
                if st["open"] == 0 and not drained.done():
                    drained.set_result(None)
            else:
                send()

        t0 = time.monotonic()
        send()
        await asyncio.sleep(seconds)
        stopping[0] = True
        sent_window = time.monotonic() - t0
        if st["open"]:
            try:
                await asyncio.wait_for(drained, 60)
            except asyncio.TimeoutError:
                pass
        elapsed = time.monotonic() - t0
        lat = st.pop("lat")
        st.update(seconds=elapsed, window_seconds=sent_window, sent=sum(seq),
                  p50_ms=1000 * percentile(lat, 50), p99_ms=1000 * percentile(lat, 99),
                  retransmits=self.retransmits, socket_errors=self.socket_errors,
                  acked_min=min(acked_per), acked_max=max(acked_per))
        return st


# ------------------------------------------------------------------ light MQTT devices

def _remaining(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _utf8(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def mqtt_connect(client_id, keepalive=0):
    var = _utf8("MQTT") + bytes((4, 0x02)) + keepalive.to_bytes(2, "big") + _utf8(client_id)
    return b"\x10" + _remaining(len(var)) + var


def mqtt_publish(topic, payload, pid, retain=False):
    var = _utf8(topic) + pid.to_bytes(2, "big") + payload
    return bytes((0x32 | (1 if retain else 0),)) + _remaining(len(var)) + var


class _MqttConn(asyncio.Protocol):
    def __init__(self, fleet, i):
        self.fleet = fleet
        self.i = i
        self.buf = b""
        self.transport = None
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(mqtt_connect(self.fleet.ids[self.i]))

    def data_received(self, data):
        buf = self.buf + data
        while len(buf) >= 2:
            n, mul, k = 0, 1, 1
            while True:
                if k >= len(buf):
                    self.buf = buf
                    return
                b = buf[k]
                n += (b & 0x7F) * mul
                mul <<= 7
                k += 1
                if not b & 0x80:
                    break
            if len(buf) < k + n:
                break
            kind, body = buf[0] >> 4, buf[k:k + n]
            buf = buf[k + n:]
            if kind == 2:
                if not self.connected.done():
                    if body[1:2] == b"\0":
                        self.connected.set_result(True)
                    else:
                        self.connected.set_exception(ConnectionError("CONNACK %r" % body))
            elif kind == 4:
                self.fleet._puback(self.i, int.from_bytes(body[:2], "big"))
        self.buf = buf

    def connection_lost(self, exc):
        self.fleet.lost += 1
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("connection lost"))


class MqttFleet:
    """N light MQTT devices, one connection each, publishing at QoS 1."""

    def __init__(self, n, host, port, prefix="hp"):
        self.n = n
        self.host = host
        self.port = port
        self.ids = ["%s-%05d" % (prefix, i + 1) for i in range(n)]
        self.conns = [None] * n
        self.pids = [0] * n
        self.waiting = {}     # (i, pid) -> callback
        self.lost = 0

    async def open(self, concurrency=200):
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(concurrency)

        async def one(i):
            async with sem:
                _, proto = await loop.create_connection(lambda: _MqttConn(self, i),
                                                        self.host, self.port)
                self.conns[i] = proto
                await asyncio.wait_for(proto.connected, 60)
        await asyncio.gather(*(one(i) for i in range(self.n)))
        return self

    def close(self):
        for c in self.conns:
            if c is not None and c.transport is not None:
                c.transport.write(b"\xe0\x00")
                c.transport.close()

    def publish(self, i, topic, payload, done, retain=False):
        self.pids[i] = pid = self.pids[i] % 65535 + 1
        self.waiting[(i, pid)] = done
        self.conns[i].transport.write(mqtt_publish(topic, payload, pid, retain))

    def _puback(self, i, pid):
        done = self.waiting.pop((i, pid), None)
        if done is not None:
            done()

    async def births(self):
        loop = asyncio.get_running_loop()
        left = [self.n]
        fut = loop.create_future()

        def one():
            left[0] -= 1
            if left[0] == 0:
                fut.set_result(None)
        for i, dev in enumerate(self.ids):
            self.publish(i, "spot/v1/%s/announce" % dev, announce_frame(dev, 0, 0), one,
                         retain=True)   # a birth: no flag bit 1 over MQTT (spec 9.2)
        await asyncio.wait_for(fut, 120)

    async def telemetry(self, frames, window=WINDOW, per_device=2, frame_of=None):
        """Publish `frames` NOTIFY frames (QoS 1, closed loop on the broker's PUBACK)."""
        loop = asyncio.get_running_loop()
        frame_of = frame_of or notify_template()
        topics = ["spot/v1/%s/%02x/up" % (d, HEAT_PUMP) for d in self.ids]
        seq = [0] * self.n
        ready = collections.deque()
        for _ in range(per_device):
            ready.extend(range(self.n))
        st = {"sent": 0, "acked": 0, "open": 0}
        fut = loop.create_future()

        def send():
            while ready and st["open"] < window and st["sent"] < frames:
                i = ready.popleft()
                seq[i] += 1
                st["open"] += 1
                st["sent"] += 1
                self.publish(i, topics[i], frame_of(T0 + seq[i]), lambda i=i: acked(i))

        def acked(i):
            st["open"] -= 1
            st["acked"] += 1
            ready.append(i)
            if st["acked"] == frames and not fut.done():
                fut.set_result(None)
            send()

        t0 = time.time()
        send()
        await asyncio.wait_for(fut, 300)
        st.update(first_publish=t0, last_puback=time.time())
        return st


# ------------------------------------------------------------------ the load generator process

def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _wait_go():
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit("load generator: stopped before go")


async def loadgen(args):
    """The separate process: `--loadgen coap|mqtt N HOST PORT SECONDS_OR_FRAMES`."""
    kind, n, host, port, amount = args[0], int(args[1]), args[2], int(args[3]), float(args[4])
    window = int(args[5]) if len(args) > 5 else WINDOW
    frame_of = notify_template(values_of(int(args[6]) if len(args) > 6 else 0))
    raise_fd_limit()
    loop = asyncio.get_running_loop()
    if kind == "coap":
        prefix = args[7] if len(args) > 7 else "hp"   # distinct ids for several generators
        fleet = await CoapFleet(n, (host, port), prefix=prefix).open()
        reg = await fleet.register()
        _emit({"registered": reg})
        await loop.run_in_executor(None, _wait_go)
        st = await fleet.telemetry(amount, window, frame_of=frame_of)
        fleet.close()
    else:
        fleet = await MqttFleet(n, host, port).open()
        t = time.monotonic()
        await fleet.births()
        _emit({"births": time.monotonic() - t})
        await loop.run_in_executor(None, _wait_go)
        st = await fleet.telemetry(int(amount), window, frame_of=frame_of)
        fleet.close()
    st["kind"] = kind
    _emit(st)


class LoadGen:
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--loadgen"]
                                     + [str(a) for a in args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    @property
    def pid(self):
        return self.proc.pid

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(30)
            raise RuntimeError("load generator exited with %s" % self.proc.returncode)
        return json.loads(line)

    def go(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self):
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# ------------------------------------------------------------------ the orchestrator

def count_rows(store_url):
    """(telemetry rows, devices) in the store, read directly."""
    if store_url.startswith("sqlite"):
        import sqlite3
        path = store_url.split("://", 1)[1]
        with sqlite3.connect(path) as db:
            return (db.execute("SELECT count(*) FROM telemetry").fetchone()[0],
                    db.execute("SELECT count(*) FROM devices").fetchone()[0])
    import psycopg
    with psycopg.connect(store_url) as db:
        return (db.execute("SELECT count(*) FROM telemetry").fetchone()[0],
                db.execute("SELECT count(*) FROM devices").fetchone()[0])


def wait_progress(value, target, stall=15.0, timeout=300, every=0.05):
    """Poll value() until it reaches target or stops growing for `stall` seconds;
    (reached, last value, time.time() when it last grew)."""
    deadline = time.monotonic() + timeout
    last, grew, grew_wall = value(), time.monotonic(), time.time()
    while last < target and time.monotonic() < deadline and time.monotonic() - grew < stall:
        time.sleep(every)
        v = value()
        if v > last:
            last, grew, grew_wall = v, time.monotonic(), time.time()
    return last >= target, last, grew_wall


def wait_until(cond, timeout, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    return cond()


def fresh_broker(tmp, defaults=False):
    from mosquitto import Broker
    d = tempfile.mkdtemp(dir=tmp, prefix="broker-")
    b = Broker(d)
    with open(b.conf) as f:
        conf = f.read().replace("log_type all", "log_type error")
    conf += "max_connections -1\n"
    if not defaults:
        conf += "max_inflight_messages 0\nmax_queued_messages 0\n"
    with open(b.conf, "w") as f:
        f.write(conf)
    b.start()
    return b


def run_cell(tmp, transport, store_kind, n, store_url, broker_defaults=False, db_pids=(),
             nvalues=0, coap_fast=True, code=None):
    rows_per_frame = len(values_of(nvalues))
    data = tempfile.mkdtemp(dir=tmp, prefix="bridge-")
    broker = fresh_broker(tmp, broker_defaults) if transport == "mqtt" else None
    bridge = BridgeProcess(data, store=store_url, coap_fast=coap_fast, code=code,
                           mqtt="mqtt://127.0.0.1:%d" % broker.port if broker else None)
    gen = None
    try:
        bridge.start()
        if transport == "coap":
            gen = LoadGen("coap", n, "127.0.0.1", bridge.coap_port, LOAD_SECONDS, WINDOW,
                          nvalues)
            reg = gen.read()["registered"]
            settled = settle(bridge.pid, db_pids)
            cpu = CpuWindow(bridge=bridge.pid, loadgen=gen.pid).start()
            drops = udp_rcvbuf_errors()
            gen.go()
            st = gen.read()
            usage = cpu.stop()
            st["udp_drops"] = udp_rcvbuf_errors() - drops
            acked, seconds = st["acked"], st["seconds"]
        else:
            # bigger frames cost more each, though far less than per row
            frames = int(MQTT_GUESS[store_kind] * MQTT_SECONDS
                         * (ROWS_PER_FRAME / rows_per_frame) ** 0.5)
            t = time.monotonic()
            gen = LoadGen("mqtt", n, "127.0.0.1", broker.port, frames, WINDOW, nvalues)
            gen.read()
            got = wait_until(lambda: bridge.get("/api/v1/health")["devices"] >= n, 300)
            reg = time.monotonic() - t
            if not got:
                raise RuntimeError("bridge registered %s of %d MQTT devices"
                                   % (bridge.get("/api/v1/health")["devices"], n))
            settled = settle(bridge.pid, db_pids)
            rows0 = bridge.metric("spot_bridge_telemetry_rows_total")
            cpu = CpuWindow(bridge=bridge.pid, loadgen=gen.pid, broker=broker.proc.pid).start()
            gen.go()
            want = rows0 + frames * rows_per_frame
            done, _, t_end = wait_progress(
                lambda: bridge.metric("spot_bridge_telemetry_rows_total"), want)
            usage = cpu.stop()
            st = gen.read()
            acked = st["acked"]
            seconds = t_end - st["first_publish"]
            if not done:
                st["incomplete"] = True
        gen.close()
        bridge.stop()
        stored, devices = count_rows(store_url or bridge_default_store(data))
        if (stored != acked * rows_per_frame or st.get("incomplete")) and not broker_defaults:
            keep = os.path.join(tempfile.gettempdir(), "spot-bench-%s-%s-%d-%d.log" % (
                transport, store_kind, n, os.getpid()))
            shutil.copy(os.path.join(data, "bridge.log"), keep)
            print("stored %d rows of %d acknowledged: bridge log kept in %s"
                  % (stored, acked * rows_per_frame, keep), file=sys.stderr)
        return {"transport": transport, "store": store_kind, "devices": n, "registered_s": reg,
                "coap": "fast" if coap_fast else "aiocoap", "code": "baseline" if code else "",
                "settled_s": settled,
                "acked": acked, "seconds": seconds, "fps": acked / seconds,
                "rows_s": stored / seconds, "stored_rows": stored,
                "acked_rows": acked * rows_per_frame, "stored_devices": devices,
                "rows_per_frame": rows_per_frame,
                "cpu": usage, "gen": st}
    finally:
        if gen is not None and gen.proc.poll() is None:
            gen.proc.kill()
        bridge.kill()
        if broker is not None:
            broker.stop()


def pg_backends(pg):
    """A function listing the PostgreSQL server's processes (for settle())."""
    with open(os.path.join(pg.datadir, "postmaster.pid")) as f:
        master = int(f.readline())
    return lambda: [master] + children(master)


def bridge_default_store(data):
    return "sqlite:///" + os.path.join(data, "bridge.db")


HEADER = ("| transport | store | devices | registration s | frames acked | frames/s "
          "| rows/s | stored = acked | ack ms p50 / p99 | bridge CPU % "
          "| bridge CPU ms per frame | load gen CPU % | machine CPU % |\n"
          "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")


def fmt_cell(r):
    c = r["cpu"]
    ok = "yes" if r["stored_rows"] == r["acked_rows"] else "NO (%d of %d)" % (
        r["stored_rows"], r["acked_rows"])
    lat = ("%.0f / %.0f" % (r["gen"]["p50_ms"], r["gen"]["p99_ms"])
           if r["transport"] == "coap" else "-")
    ms = 10.0 * c["bridge"] * c["wall"] / r["acked"] if r["acked"] else float("nan")
    return "| %s | %s | %d | %.1f | %d | %.0f | %.0f | %s | %s | %.0f | %.2f | %.0f | %.0f |" % (
        ("MQTT" if r["transport"] != "coap" else
         "CoAP" if r.get("coap", "fast") == "fast" or r.get("code") else "CoAP (aiocoap)")
        + (" (baseline)" if r.get("code") else ""),
        "SQLite" if r["store"] == "sqlite" else "PostgreSQL", r["devices"],
        r["registered_s"], r["acked"], r["fps"], r["rows_s"], ok, lat,
        c["bridge"], ms, c["loadgen"], c["machine"])


def ratio_lines(results):
    """Per cell with several variants: each one's median frames/s and CPU ms per frame,
    and its ratio to this tree's."""
    groups = collections.OrderedDict()
    for r in results:
        label = "baseline" if r.get("code") else "aiocoap" if r.get("coap") == "aiocoap" \
            else "this tree"
        groups.setdefault((r["transport"], r["store"], r["devices"]), {}).setdefault(
            label, []).append(r)
    out = []
    for (transport, store, n), by in groups.items():
        if len(by) < 2 or "this tree" not in by:
            continue

        def med(rs, f):
            return percentile([f(r) for r in rs], 50)
        fps = {k: med(v, lambda r: r["fps"]) for k, v in by.items()}
        ms = {k: med(v, lambda r: 10.0 * r["cpu"]["bridge"] * r["cpu"]["wall"] / r["acked"])
              for k, v in by.items()}
        out.append("%s %s %d devices, medians of %d runs each: " % (
            transport.upper() if transport == "mqtt" else "CoAP", store, n,
            len(by["this tree"])) + "; ".join(
            "%s %.0f frames/s, %.2f ms CPU/frame%s" % (
                k, fps[k], ms[k], "" if k == "this tree" else
                " (this tree: %.2fx the frames/s, %.2fx less CPU per frame)"
                % (fps["this tree"] / fps[k], ms[k] / ms["this tree"]))
            for k in by))
    return out


def baseline_path(source, tmp):
    """A PYTHONPATH under which `import spot` is the project tree at `source` (e.g. a
    `git archive` of the main branch), for --baseline=DIR."""
    if not os.path.isfile(os.path.join(source, "cli.py")):
        raise SystemExit("--baseline=%s: not a project tree (no cli.py at its top)" % source)
    d = tempfile.mkdtemp(dir=tmp, prefix="baseline-")
    os.symlink(os.path.abspath(source), os.path.join(d, "spot"))
    return d


def store_floor(tmp, devices=1000, batches=10):
    """Frames/s the SQLite store takes alone: the bench's own NOTIFY rows (21 values),
    one transaction per batch of one frame from each of `devices` (the largest batch
    group commit makes here), through Store.add_telemetry_frames as the bridge's ingest
    calls it (add_telemetry in a tree without it: a --baseline)."""
    from spot.cloud_bridge.store import open_store

    async def run():
        store = await open_store("sqlite:///" + os.path.join(tmp, "floor.db"))
        try:
            ids = ["hp-%05d" % i for i in range(devices)]
            await store.upsert_devices([(d, [[HEAT_PUMP, 1, 0]], [], 0) for d in ids], T0)
            taken = 0.0
            for k in range(batches + 1):
                frames = [[(d, HEAT_PUMP, o, T0 + k, v) for o, v in VALUES.items()]
                          for d in ids]
                began = time.perf_counter()
                if hasattr(store, "add_telemetry_frames"):
                    await store.add_telemetry_frames(frames)
                else:
                    await store.add_telemetry([r for f in frames for r in f])
                if k:   # the first one creates the latest-value rows: warm-up
                    taken += time.perf_counter() - began
            return devices * batches / taken
        finally:
            await store.close()
    return asyncio.run(run())


def option(argv, name, default=None):
    """The value of --name=value in argv (the last one), else default."""
    got = [a.split("=", 1)[1] for a in argv if a.startswith("--%s=" % name)]
    return got[-1] if got else default


async def register_against(fleet):
    """Register an opened fleet with a bridge already running (an operator's
    deployment); seconds it took. Not in time: exit saying what to check."""
    try:
        return await fleet.register(timeout=max(60.0, fleet.n / 50.0))
    except asyncio.TimeoutError:
        raise SystemExit("devices not registered in time: does the bridge's [registration] "
                         "plain policy admit this host (plain = \"open\", or allow = "
                         "[\"<this host's address>/32\"]) and are total_burst and "
                         "max_plain above %d?" % fleet.n)


async def against(host, port, n, seconds, prefix, bind):
    """The CoAP cell against a bridge already running (an operator's deployment)."""
    fleet = await CoapFleet(n, (host, port), prefix=prefix).open(bind)
    try:
        reg = await register_against(fleet)
        st = await fleet.telemetry(seconds)
    finally:
        fleet.close()
    return reg, st


def target_options(argv):
    """--target=HOST:PORT, --devices, --prefix and --bind (by default the loopback for a
    bridge on this host, else every address): host, port, n, prefix, bind."""
    host, port = option(argv, "target").rsplit(":", 1)
    host = host.strip("[]")
    local = host in ("127.0.0.1", "localhost", "::1")
    return (host, int(port), int(option(argv, "devices", "1000")),
            option(argv, "prefix", "bench"),
            option(argv, "bind", "127.0.0.1" if local else "0.0.0.0"))


def main_against(argv):
    host, port, n, prefix, bind = target_options(argv)
    seconds = float(option(argv, "seconds", str(LOAD_SECONDS)))
    raise_fd_limit()
    reg, st = asyncio.run(against(host, port, n, seconds, prefix, bind))
    print("CoAP ingest against %s:%s, %d devices (%s-00001 ...), closed loop of %d requests "
          "in flight for %.0f s; one frame = a %d-value heat pump NOTIFY (%d bytes)"
          % (host, port, n, prefix, WINDOW, seconds, ROWS_PER_FRAME,
             len(notify_template()(T0))))
    print()
    print("| devices | registration s | frames acked | frames/s | rows/s | refused (not 2.xx) "
          "| timed out | ack ms p50 / p99 | retransmissions |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("| %d | %.1f | %d | %.0f | %.0f | %d | %d | %.0f / %.0f | %d |" % (
        n, reg, st["acked"], st["acked"] / st["seconds"],
        st["acked"] * ROWS_PER_FRAME / st["seconds"], st["failed"], st["timeouts"],
        st["p50_ms"], st["p99_ms"], st["retransmits"]))


def main(argv):
    if argv[:1] == ["--loadgen"]:
        asyncio.run(loadgen(argv[1:]))
        return
    if option(argv, "target"):
        main_against(argv)
        return
    quick = "--quick" in argv
    only = [a.split("=", 1)[1] for a in argv if a.startswith("--only=")]
    global WINDOW
    for a in argv:
        if a.startswith("--window="):
            WINDOW = int(a.split("=", 1)[1])
    raise_fd_limit()
    began = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="spot-bridge-bench-")
    results = []
    pg = floor = None
    baseline = [a.split("=", 1)[1] for a in argv if a.startswith("--baseline=")]
    baseline = baseline_path(baseline[0], tmp) if baseline else None
    try:
        floor = store_floor(tmp) if "--floor" in argv else None
        sizes = SIZES[:2] if quick else SIZES
        stores = ["sqlite"] if quick else ["sqlite", "postgresql"]
        if "postgresql" in stores:
            import postgres
            pg = postgres.PostgresServer(durable=True).start()
        k = 0
        repeat = int(option(argv, "repeat", "1"))
        for transport in ("coap", "mqtt"):
            # this tree; with --baseline the other tree; with --aiocoap coap:// on aiocoap:
            # one after the other, --repeat times, so that their ratios come from one run
            variants = [{}] + ([{"code": baseline}] if baseline else []) + (
                [{"coap_fast": False}] if transport == "coap" and "--aiocoap" in argv else [])
            for store_kind in stores:
                for n in sizes:
                    if only and "%s-%s-%d" % (transport, store_kind, n) not in only:
                        continue
                    for _ in range(repeat):
                        for variant in variants:
                            k += 1
                            if store_kind == "sqlite":
                                url = "sqlite:///" + os.path.join(tmp, "cell-%d.db" % k)
                            else:
                                url = pg.create_database("cell_%d" % k)
                            r = run_cell(tmp, transport, store_kind, n, url, db_pids=pg_backends(
                                pg) if store_kind == "postgresql" else (), **variant)
                            results.append(r)
                            print(fmt_cell(r), file=sys.stderr, flush=True)
                            if store_kind == "postgresql":
                                pg.drop_database("cell_%d" % k)
        cap, big = None, []
        if not quick and not only:
            for transport in ("coap", "mqtt"):
                url = "sqlite:///" + os.path.join(tmp, "big-%s.db" % transport)
                big.append(run_cell(tmp, transport, "sqlite", 1000, url, nvalues=BIG_VALUES))
                print(fmt_cell(big[-1]), file=sys.stderr, flush=True)
            url = "sqlite:///" + os.path.join(tmp, "cap.db")
            cap = run_cell(tmp, "mqtt", "sqlite", 1000, url, broker_defaults=True)
    finally:
        if pg is not None:
            pg.stop()
        if "--keep" in argv:
            print("kept %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print("Telemetry ingest of one bridge process (`spot bridge`), load generator in a second "
          "process; one frame = a 21-value heat pump NOTIFY (81 bytes) = 21 rows")
    print()
    print(HEADER)
    for r in results:
        print(fmt_cell(r))
    if big:
        size = len(notify_template(values_of(BIG_VALUES))(T0))
        print()
        print("Bigger frames: %d values (%d bytes) per frame, 1 000 devices, SQLite:"
              % (BIG_VALUES, size))
        print()
        print(HEADER)
        for r in big:
            print(fmt_cell(r))
    if cap is not None:
        print()
        print("MQTT with mosquitto's default limits toward the bridge (20 messages in flight, "
              "1 000 queued), 1 000 devices, SQLite, the same burst of 21-value frames:")
        print()
        print("| frames the broker acknowledged to devices | frames the bridge stored "
              "| lost |")
        print("|---:|---:|---:|")
        kept = cap["stored_rows"] // cap["rows_per_frame"]
        print("| %d | %d | %d (%.0f %%) |" % (cap["acked"], kept, cap["acked"] - kept,
                                            100.0 * (cap["acked"] - kept) / cap["acked"]))
    ratios = ratio_lines(results)
    if ratios:
        print()
        for line in ratios:
            print(line)
    if floor is not None:
        print()
        print("SQLite store alone in the same run (store_floor(): these frames, one from "
              "each of 1 000 devices a transaction): %.0f frames/s (%.0f rows/s); CoAP SQLite "
              "cells of this tree against it: %s"
              % (floor, floor * ROWS_PER_FRAME, ", ".join(
                  "%d devices %.0f %%" % (r["devices"], 100.0 * r["fps"] / floor)
                  for r in results if r["transport"] == "coap" and r["store"] == "sqlite"
                  and r.get("coap") == "fast" and not r.get("code"))))
    print()
    print("CPython %s, %d cores; whole run %.0f s" % (platform.python_version(),
                                                    os.cpu_count(), time.perf_counter() - began))
    print(json.dumps(results), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
