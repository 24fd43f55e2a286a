"""A throwaway PostgreSQL server for tests and benchmarks.

    with PostgresServer() as pg:          # initdb + pg_ctl start, 127.0.0.1 only
        url = pg.create_database("t1")    # postgresql://spot@127.0.0.1:PORT/t1
        ...
                                          # pg_ctl stop, data directory removed

Finds initdb/pg_ctl under /usr/lib/postgresql/<version>/bin (Debian's
packages; the newest version wins), in $SPOT_PG_BINDIR, or on PATH. The
server listens on a free TCP port on 127.0.0.1 only (no Unix socket), trusts
local connections, and (unless durable=True, for benchmarks) runs with fsync
and synchronous commit off: it is for tests, not data.

PostgreSQL refuses to run as root. When we are root, initdb and postgres run
as an unprivileged user through `runuser -u`: `postgres` if it exists (Debian
creates it), else `nobody`, else a `spot-pg` system user created with
useradd. As a normal user everything runs as that user.
"""
import atexit
import glob
import os
import pwd
import re
import shutil
from netutil import free_tcp_port as free_port
import subprocess
import tempfile

SUPERUSER = "spot"          # the database superuser initdb creates
START_TIMEOUT = 60          # seconds for initdb, start and stop each


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir():
    """The directory holding initdb and pg_ctl, or raise PostgresUnavailable."""
    env = os.environ.get("SPOT_PG_BINDIR")
    if env:
        if os.path.exists(os.path.join(env, "initdb")):
            return env
        raise PostgresUnavailable("SPOT_PG_BINDIR=%s has no initdb" % env)

    def version(path):
        m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/", path)
        return (int(m.group(1)), int(m.group(2) or 0)) if m else (0, 0)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return os.path.dirname(found[-1])
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return os.path.dirname(on_path)
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (install Debian's `postgresql` package)")


def _server_user():
    """The unprivileged user to run the server as when we are root."""
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home",
                    "--shell", "/usr/sbin/nologin", "spot-pg"],
                   check=True, capture_output=True, timeout=START_TIMEOUT)
    return "spot-pg"


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; start() then stop()."""

    def __init__(self, durable=False, options=()):
        self.durable = durable
        self.options = tuple(options)   # more server settings, "name=value" each
        self.bindir = find_bindir()
        self.port = None
        self.tmp = None
        self.datadir = None
        self.logfile = None
        self.user = None        # OS user the server runs as (None: ourselves)
        self._running = False

    # -- process helpers

    def _cmd(self, name, *args):
        argv = [os.path.join(self.bindir, name)] + list(args)
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--"] + argv
        return argv

    def _run(self, name, *args):
        r = subprocess.run(self._cmd(name, *args), capture_output=True, text=True,
                           timeout=START_TIMEOUT, cwd=self.tmp)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s%s" % (
                name, r.returncode, r.stdout, r.stderr, self._log_tail()))
        return r

    def _log_tail(self):
        try:
            with open(self.logfile) as f:
                return "\n--- server log ---\n" + f.read()[-3000:]
        except (OSError, TypeError):
            return ""

    # -- lifecycle

    def start(self):
        if os.geteuid() == 0:
            self.user = _server_user()
        # directly under the system temp dir: the server user must reach it
        self.tmp = tempfile.mkdtemp(prefix="spot-pg-")
        self.datadir = os.path.join(self.tmp, "data")
        self.logfile = os.path.join(self.tmp, "server.log")
        os.mkdir(self.datadir, 0o700)
        open(self.logfile, "w").close()
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            for p in (self.tmp, self.datadir, self.logfile):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        try:
            self._run("initdb", "-D", self.datadir, "-U", SUPERUSER, "--auth=trust",
                      "--no-locale", "--encoding=UTF8", "--no-sync")
            last = None
            for _ in range(3):  # the free port may be taken before we bind it
                self.port = free_port()
                opts = ("-c listen_addresses=127.0.0.1 -c port=%d "
                        "-c unix_socket_directories='' -c max_connections=100"
                        % self.port)
                if not self.durable:
                    opts += (" -c fsync=off -c synchronous_commit=off"
                             " -c full_page_writes=off")
                opts += "".join(" -c " + o for o in self.options)
                try:
                    self._run("pg_ctl", "start", "-w", "-t", str(START_TIMEOUT),
                              "-D", self.datadir, "-l", self.logfile, "-o", opts)
                    self._running = True
                    break
                except RuntimeError as e:
                    last = e
            if not self._running:
                raise last
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def stop(self):
        """Stop the server (if running) and remove its directory. Idempotent."""
        if self._running:
            self._running = False
            try:
                self._run("pg_ctl", "stop", "-w", "-t", str(START_TIMEOUT),
                          "-m", "fast", "-D", self.datadir)
            except (RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "stop", "-m", "immediate", "-D", self.datadir)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- databases

    def url(self, dbname="postgres"):
        return "postgresql://%s@127.0.0.1:%d/%s" % (SUPERUSER, self.port, dbname)

    def _admin(self, sql):
        import psycopg
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def create_database(self, name):
        """Create an empty database `name`; return its URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError("database name must be a lower-case identifier")
        self._admin("CREATE DATABASE %s" % name)
        return self.url(name)

    def drop_database(self, name):
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError("database name must be a lower-case identifier")
        self._admin("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)

