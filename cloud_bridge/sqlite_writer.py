"""The SQLite store's telemetry writes in a process of their own (store option writer=process).

With the default (writer=thread) the store's worker thread runs every
transaction, telemetry too, in the bridge's process: its Python (the
parameters' packing and binding, the scripts) competes for the GIL with the
event loop's thread. With writer=process the telemetry transactions
(add_telemetry_frames: the history rows and the latest values) run in a child
process, `python -m <this module> <path> <timeout>`, on its own connection to
the same file; everything else still runs on the store's thread in the bridge.

- One writer at a time: the store's thread hands a transaction's frames to the
  child and waits (the GIL released) for its answer, so the file still has one
  writer at a time in the order the calls came; a registration or a command
  waits at most one telemetry transaction, as before.
- Stored = acknowledged: the child answers after its COMMIT returned (WAL,
  synchronous=FULL); only then does the ingest answer the devices.
- One message each way per transaction: the frames' rows as the ingest made
  them (marshal, pickle for other types; a 4-byte length before each message),
  and back the refused flags (or the error, by its class and text).
- The child dies, e.g. kill -9: the transaction in flight fails
  (StoreUnavailable: its devices get an error and send again; if it had
  committed, the frames sent again are taken as retransmissions), the bridge
  logs it as an error and starts a new child. SQLite rolls back what the dead
  process had not committed.
- No orphan: the child reads its requests from a pipe and exits at its EOF
  (the bridge closed the store, or died); it ignores SIGINT and SIGTERM, which
  a terminal or a service manager also sends to the bridge, so that the
  bridge's own shutdown still finishes the transactions it waits for.
"""
import logging
import marshal
import os
import pickle
import signal
import struct
import subprocess
import sys

from .store import StoreError, StoreUnavailable, StoreCorrupt, InvalidValue, UnknownDevice

log = logging.getLogger("spot.bridge.store")

_HEAD = struct.Struct("<I")
_ERRORS = {c.__name__: c for c in (StoreError, StoreUnavailable, StoreCorrupt, InvalidValue)}


def encode(obj):
    """obj as one message's bytes: marshal (about half pickle's time for the frames'
    tuples of str, int and float: docs/benchmarks.md), pickle for what marshal does not
    take (a value of another type), a byte saying which."""
    try:
        return b"m" + marshal.dumps(obj)
    except ValueError:
        return b"p" + pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


def decode(data):
    return marshal.loads(data[1:]) if data[:1] == b"m" else pickle.loads(data[1:])


def send(fd, obj):
    """Write obj to fd as one message (encoded, its length first)."""
    data = encode(obj)
    view = memoryview(_HEAD.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read(fd, n):
    parts = []
    while n:
        b = os.read(fd, n)
        if not b:
            raise EOFError("pipe closed")
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def recv(fd):
    """The next message on fd; EOFError when the other end closed it."""
    return decode(_read(fd, _HEAD.unpack(_read(fd, _HEAD.size))[0]))


def error_of(e):
    """An exception as data the other process rebuilds (error_from)."""
    if isinstance(e, UnknownDevice):
        return ("UnknownDevice", e.devices)
    name = type(e).__name__ if type(e).__name__ in _ERRORS else "StoreError"
    text = str(e) if name != "StoreError" or isinstance(e, StoreError) else \
        "sqlite writer: %s: %s" % (type(e).__name__, e)
    return (name, text)


def error_from(data):
    name, arg = data
    return UnknownDevice(arg) if name == "UnknownDevice" else _ERRORS[name](arg)


class WriterProcess:
    """The bridge's handle on its writer process; used on the store's one thread."""

    def __init__(self, path, timeout):
        self.path = path
        self.timeout = timeout
        self.proc = None
        self.started = 0     # children started (the first, then one per death)

    def start(self):
        """Start the child and wait for it to say it is connected."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, self.path, repr(float(self.timeout))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.started += 1
        try:
            ok, value = recv(self.proc.stdout.fileno())
        except (EOFError, OSError) as e:
            self._reap()
            raise StoreUnavailable("the SQLite writer process did not start (%s)" % e)
        if not ok:
            self._reap()
            raise error_from(value)
        log.info("sqlite writer process %d started for %s", self.proc.pid, self.path)

    def frames(self, frames):
        """add_telemetry_frames' transaction run by the child: the refused flags, once
        it committed. StoreUnavailable if the child died (a new one is started)."""
        if self.proc is None:
            self.start()
        try:
            send(self.proc.stdin.fileno(), frames)
            ok, value = recv(self.proc.stdout.fileno())
        except (EOFError, OSError) as e:
            pid, code = self.proc.pid, self._reap()
            log.error("sqlite writer process %d died (exit status %s, %s): the %d frames of "
                      "its transaction are not acknowledged; starting a new one",
                      pid, code, e, len(frames))
            try:
                self.start()
            except StoreError:
                log.exception("sqlite writer process: no new one (tried again at the "
                              "next transaction)")
            raise StoreUnavailable("the SQLite writer process died; telemetry not stored")
        if ok:
            return value
        raise error_from(value)

    def _reap(self):
        """Close the pipes, kill and wait for the child; its exit status."""
        p, self.proc = self.proc, None
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass
        if p.poll() is None:
            p.kill()
        return p.wait()

    def stop(self, timeout=10.0):
        """Close the child's pipe (it exits at EOF); killed if it does not in time."""
        p, self.proc = self.proc, None
        if p is None:
            return
        p.stdin.close()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("sqlite writer process %d did not exit: killed", p.pid)
            p.kill()
            p.wait()
        p.stdout.close()


def main(argv):
    """The child: connect, say so, then run each request's transaction until EOF."""
    from .serving import tune_for_serving
    from .store_sqlite import SqliteStore, connect
    tune_for_serving()   # the bridge's collector settings: few young collections
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    rfd, wfd = os.dup(0), os.dup(1)
    os.dup2(2, 1)   # a stray print goes to the log, not into the answers
    store = SqliteStore(argv[0], float(argv[1]))
    try:
        store._conn = connect(store.path, store.timeout)
    except Exception as e:
        send(wfd, (False, error_of(e)))
        return 1
    send(wfd, (True, os.getpid()))
    while True:
        try:
            frames = recv(rfd)
        except EOFError:
            break
        try:
            reply = (True, store._drive(lambda: store._s_frames(frames), True))
        except Exception as e:
            reply = (False, error_of(e))
        try:
            send(wfd, reply)
        except BrokenPipeError:   # the bridge is gone
            break
    store._disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
