"""`spot bridge` as a real process for tests: its own data dir and free 127.0.0.1
ports, started until it says it runs, killed (SIGKILL) or stopped, its HTTP API
called; the `bridges` fixture makes them and kills them after the test."""
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from netutil import free_tcp_port, free_udp_port


class BridgeProcess:
    """`spot bridge` in a subprocess: its own data dir, free 127.0.0.1 ports kept
    across restarts (so devices find it again)."""

    def __init__(self, data, offline_after=60, command_timeout=5, mqtt=None, toml=""):
        self.data = str(data)
        self.mqtt = mqtt
        self.proc = None
        self.new_ports()
        os.makedirs(self.data, exist_ok=True)
        self.config = os.path.join(self.data, "bridge.toml")
        with open(self.config, "w") as f:
            f.write("[bridge]\noffline_after = %s\ncommand_timeout = %s\n%s"
                    % (offline_after, command_timeout, toml))

    def new_ports(self):
        self.http_port = free_tcp_port()
        self.coap_port = free_udp_port()
        self.url = "http://127.0.0.1:%d" % self.http_port

    @property
    def coap(self):
        return ("127.0.0.1", self.coap_port)

    @property
    def store_url(self):
        return "sqlite:///" + os.path.join(self.data, "bridge.db")

    def start(self, timeout=30):
        self.log = open(os.path.join(self.data, "bridge.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spot.cli", "bridge", "--config", self.config,
             "--data", self.data, "--http", "127.0.0.1:%d" % self.http_port,
             "--coap", "127.0.0.1:%d" % self.coap_port, "--log-level", "warning"]
            + (["--mqtt", self.mqtt] if self.mqtt else []),
            stdout=subprocess.PIPE, stderr=self.log)
        deadline = time.monotonic() + timeout
        line = b""
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                chunk = os.read(fd, 1)
                if not chunk:
                    break
                line += chunk
        if b"SPOT bridge running" not in line:
            self.kill()
            log = os.path.join(self.data, "bridge.log")
            with open(log, "rb") as f:
                said = f.read()[-2000:]
            # kept apart, so that the log of the run that starts is that run's alone
            # (bridges() tries again when a probed port was taken meanwhile)
            with open(log + ".failed-starts", "ab") as f, open(log, "rb") as g:
                f.write(g.read())
            os.remove(log)
            raise AssertionError("spot bridge did not start: %r %s" % (line, said))
        return self

    def kill(self):
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close()

    def _close(self):
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
            self.proc.stdout = None
        if getattr(self, "log", None) is not None:
            self.log.close()
            self.log = None

    # -- HTTP, blocking (call through asyncio.to_thread while devices run)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                raw = r.read()
                return r.status, json.loads(raw) if path.startswith("/api/") else raw.decode()
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def metric(self, name, **labels):
        want = "spot_bridge_" + name
        if labels:
            want += "{" + ",".join('%s="%s"' % kv for kv in sorted(labels.items())) + "}"
        _, text = self.call("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0


@pytest.fixture
def bridges(tmp_path):
    made = []

    def make(**kw):
        b = BridgeProcess(tmp_path / ("data%d" % len(made)), **kw)
        made.append(b)
        for attempt in range(3):   # a probed port may be taken before the bridge binds it
            try:
                return b.start()
            except AssertionError:
                if attempt == 2:
                    raise
                b.new_ports()
    yield make
    for b in made:
        b.kill()
