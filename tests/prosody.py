"""A real Prosody XMPP server for the XMPP tests.

Every server gets its own config, data, certificates and log in a fresh
directory the `prosody` user can read and write (pytest's tmp_path is private
to the test user), listens for c2s on a free 127.0.0.1 port with STARTTLS
required (a CA and a server certificate for `localhost` made here), and runs
as the `prosody` user through `runuser` when the tests run as root. It never
starts the system configuration: both `prosody` and `prosodyctl` always get
`--config`. stop() ends it; a safety `timeout` ends it anyway if the test
process dies without stopping it.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from mosquitto import make_ca_and_server_cert
from netutil import free_tcp_port

DOMAIN = "localhost"
WAIT = 10.0       # seconds, upper bound of any single wait
LIFETIME = 1800   # seconds: an orphaned server stops by itself after this

CONFIG = """\
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{dir}/prosody.log" }} }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "presence", "message", "iq" }}
modules_disabled = {{ "s2s" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
storage = "internal"
VirtualHost "{domain}"
    ssl = {{ certificate = "{cert}", key = "{key}" }}
"""


def missing_tools():
    """The Prosody programs not installed (Debian package prosody)."""
    return [t for t in ("prosody", "prosodyctl") if not shutil.which(t)]


def _as_prosody(argv):
    """argv run as the prosody user when we are root (prosody refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "prosody", "--"] + argv
    return argv


class Prosody:
    """One Prosody with its own directory and port; start(), register(), restart(), stop()."""

    def __init__(self, domain=DOMAIN):
        missing = missing_tools()
        if missing:  # a failure, not a skip: Prosody is the proof of interop
            raise AssertionError("not installed: %s (Debian package prosody)" % ", ".join(missing))
        self.domain = domain
        self.dir = tempfile.mkdtemp(prefix="spot-prosody-")
        os.chmod(self.dir, 0o755)
        os.makedirs(os.path.join(self.dir, "data"))
        os.makedirs(os.path.join(self.dir, "certs"))
        self.tls = make_ca_and_server_cert(os.path.join(self.dir, "certs"))
        self.ca = self.tls["ca"]
        self.port = free_tcp_port()
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        self.log = os.path.join(self.dir, "prosody.log")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(dir=self.dir, port=self.port, domain=domain,
                                  cert=self.tls["cert"], key=self.tls["key"]))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "prosody", "prosody")
            for root, dirs, files in os.walk(self.dir):
                for name in dirs + files:
                    shutil.chown(os.path.join(root, name), "prosody", "prosody")
        self.proc = None

    def register(self, user, password):
        """An account user@domain (prosodyctl, works whether the server runs or not)."""
        r = subprocess.run(_as_prosody(["prosodyctl", "--config", self.config, "register",
                                        user, self.domain, password]),
                           capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 0, "prosodyctl register %s failed: %s" % (user, r.stderr)
        return "%s@%s" % (user, self.domain)

    def start(self):
        argv = _as_prosody(["timeout", "--kill-after=5", str(LIFETIME),
                            "prosody", "--config", self.config, "-F"])
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prosody exited: %s" % self.log_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("prosody did not listen within %.0f s: %s" % (WAIT, self.log_text()))

    def stop(self):
        """SIGTERM the server's process group (runuser, timeout, prosody), SIGKILL if slow."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(WAIT)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""
