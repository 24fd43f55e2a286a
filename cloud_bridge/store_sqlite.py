"""The store on SQLite: one file, one connection on one dedicated worker thread.

Every call runs its transaction script on the store's own thread, so the
event loop never waits on disk. The database is in WAL mode with
synchronous=FULL: a method returns only after its transaction is on disk.
Write transactions begin IMMEDIATE, so several store objects (or processes)
on one file serialise their writes: a claim is never handed out twice.
Fine for one bridge instance; several instances share PostgreSQL instead.

Group commit: write scripts that arrive while another write is on disk wait
and then run together in ONE transaction, each inside its own savepoint. A
script that raises is rolled back to its savepoint alone and its caller gets
the error; the others commit with one fsync, and each caller's call returns
only after that commit. A thousand concurrent command deliveries thus cost a
few fsyncs instead of three thousand. Reads issued while writes wait queue
behind them, so every call sees the calls issued before it; a call cancelled
before its batch starts is not run; close() first finishes what waits.

Telemetry history is one row per frame (schema 2, sqlite_frames): a NOTIFY's
values in one row keyed (device, service, t), read through the view
`telemetry` one row per value; a schema-1 database is migrated when opened.
Latest values are one row per device and service (schema 3, sqlite_latest),
read through the view `latest`; the fleet figures read `latest_fleet`.
"""
import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

from . import sqlite_frames, sqlite_latest
from .store import (Store, Many, Q, Result, StoreError, StoreUnavailable, StoreCorrupt,
                    UnknownDevice, check_device, check_time, encode_telemetry, s_conflicts,
                    value_text)

# errors that say the database cannot be used now, not that a statement is wrong
_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN",
                "SQLITE_FULL", "SQLITE_READONLY", "SQLITE_NOTADB", "SQLITE_CORRUPT")
_CORRUPT = ("SQLITE_NOTADB", "SQLITE_CORRUPT")   # the file is damaged

MAX_BATCH = 64   # write scripts per group commit: fewer fsyncs, yet no bursts of work
PAGE_SIZE = 8192          # bytes a page, for a new database (SQLite's default: 4 096)
WAL_BYTES = 40 << 20      # WAL that starts a checkpoint (SQLite's default: 1 000 pages)

DDL = (
    """CREATE TABLE IF NOT EXISTS schema_version (
        version INTEGER NOT NULL,
        applied_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY,
        services TEXT NOT NULL,
        consumes TEXT NOT NULL,
        flags INTEGER NOT NULL,
        credential_ref TEXT,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        presence TEXT NOT NULL,
        presence_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS device_groups (
        device TEXT NOT NULL REFERENCES devices (id),
        grp TEXT NOT NULL,
        PRIMARY KEY (device, grp)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS device_groups_grp ON device_groups (grp, device)",
    # no foreign key: add_telemetry checks the batch's devices once. History one row
    # per frame, read through the view `telemetry` (sqlite_frames; schema 2)
    sqlite_frames.FRAME_TABLE,
    # latest values one row per (device, service), read through the view `latest`;
    # the fleet figures' objects also one row per value (sqlite_latest; schema 3)
    *sqlite_latest.TABLES,
    """CREATE TABLE IF NOT EXISTS commands (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device TEXT NOT NULL REFERENCES devices (id),
        service INTEGER NOT NULL,
        op INTEGER NOT NULL,
        body TEXT NOT NULL,
        actor TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        timeout REAL,
        claimed_by TEXT,
        claimed_at REAL,
        mid INTEGER,
        sent_at REAL,
        completed_at REAL,
        result TEXT)""",
    "CREATE INDEX IF NOT EXISTS commands_queue ON commands (device, status, id)",
    "CREATE INDEX IF NOT EXISTS commands_status ON commands (status, id)",
    "CREATE INDEX IF NOT EXISTS commands_sent ON commands (device, mid) WHERE status = 'sent'",
    """CREATE TABLE IF NOT EXISTS plans (
        device TEXT NOT NULL REFERENCES devices (id),
        plan_id INTEGER NOT NULL,
        start REAL NOT NULL,
        expiry REAL NOT NULL,
        primacy INTEGER NOT NULL,
        entries TEXT NOT NULL,
        actor TEXT NOT NULL,
        status TEXT NOT NULL,
        command_id INTEGER REFERENCES commands (id),
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (device, plan_id))""",
    "CREATE INDEX IF NOT EXISTS plans_command ON plans (command_id)",
    """CREATE TABLE IF NOT EXISTS pairings (
        device TEXT NOT NULL REFERENCES devices (id),
        controller TEXT NOT NULL,
        role TEXT NOT NULL,
        credential TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (device, controller))""",
    # a controller's devices, in id order (device listing for a non-operator)
    "CREATE INDEX IF NOT EXISTS pairings_controller ON pairings (controller, device)",
    """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_target ON audit (target, id)",
    # fleet view (store_fleet): counts by presence, one object across the fleet,
    # plans in force, and the sampled power-by-profile series
    "CREATE INDEX IF NOT EXISTS devices_presence ON devices (presence, id)",
    "CREATE INDEX IF NOT EXISTS plans_expiry ON plans (expiry)",
    """CREATE TABLE IF NOT EXISTS fleet_power (
        t REAL NOT NULL,
        service INTEGER NOT NULL,
        watts REAL NOT NULL,
        devices INTEGER NOT NULL,
        PRIMARY KEY (t, service)) WITHOUT ROWID""",
)


# Telemetry goes in as multi-row INSERTs of prebuilt parameters (sqlite_frames.s_insert,
# the statements in sqlite_frames and sqlite_latest): one statement runs SQLite's C
# code for many rows with the GIL released once, where executemany binds and steps
# row by row and takes the GIL back for each row (with the event loop's thread
# busy, each take waits for it).


def _bindable(rows):
    """True when checked telemetry rows (device, service, object, t, value) can be bound
    as they are: every value an integer SQLite holds, which the columns' affinity
    stores as prepare_telemetry would (t REAL; value TEXT: an integer as its decimal
    digits). Else False (rows with floats, text, ... are encoded)."""
    values = [r[4] for r in rows]
    return set(map(type, values)) <= _INT and (not values or (
        min(values) >= -0x8000000000000000 and max(values) <= 0x7FFFFFFFFFFFFFFF))


_INT = frozenset((int,))


def _s_history(rows):
    """History of checked stored-form rows, one row per frame (sqlite_frames): those
    of a stored (device, service, object, t) ignored, the first one if twice; then
    their latest values (sqlite_latest: as frames when each key came once). How many
    were new (a script step)."""
    by, twice = sqlite_frames.grouped(rows)
    flat = None if twice else sqlite_frames.flat_of(by)
    yield Q("SAVEPOINT history", ())
    if flat is not None and (yield from sqlite_frames.s_insert(
            sqlite_frames.INSERT, flat)) == len(by):
        new = len(rows)
    else:   # a frame's time stored already: its values merged into the stored frame
        yield Q("ROLLBACK TO history", ())
        new = yield from sqlite_frames.s_add_values(by)
    yield Q("RELEASE history", ())
    if flat is None:
        yield from sqlite_latest.s_rows(rows)
    else:
        keys = [sqlite_frames.keys_text(tuple(vals)) for vals in by.values()]
        yield from sqlite_latest.s_frames(flat, keys, rows)
    return new


def _steps(c, script):
    """Execute a transaction script's statements on connection c; its return value."""
    gen = script()
    try:
        stmt = next(gen)
        while True:
            if type(stmt) is Many:
                cur = c.executemany(stmt.sql, stmt.seq)
                res = Result([], cur.rowcount)
            else:
                cur = c.execute(stmt.sql, stmt.params)
                res = Result(cur.fetchall() if cur.description else [], cur.rowcount)
            stmt = gen.send(res)
    except StopIteration as stop:
        return stop.value


def _settle(batch, outcomes):
    """Give each waiting caller of a batch its script's value or error."""
    for (_, done), (ok, value) in zip(batch, outcomes):
        if not done.done():
            if ok:
                done.set_result(value)
            else:
                done.set_exception(value)


class SqliteStore(Store):
    """Store on one SQLite file. timeout: seconds to wait for another writer."""

    dialect = "sqlite"
    schema = sqlite_latest.SCHEMA
    history_table = "telemetry_frame"   # delete_device deletes a device's history there
    fleet_latest = "latest_fleet"   # the latest values store_fleet reads (sqlite_latest)
    takes_frames_late = True   # add_telemetry_frames takes a function of the frames

    def __init__(self, path, timeout=10.0):
        self.path = path
        self.timeout = timeout
        self._executor = None
        self._conn = None
        self._writes = []      # [(script, future)] waiting for the next write batch
        self._writer = None    # the task that hands them to the worker thread

    # -- worker thread

    async def _call(self, fn, *args):
        ex = self._executor
        if ex is None:
            raise StoreUnavailable("store is closed")
        return await asyncio.get_running_loop().run_in_executor(ex, fn, *args)

    async def _run(self, script, write=True):
        if not write and not self._writes and (self._writer is None or self._writer.done()):
            return await self._call(self._drive, script, False)
        # writes, and reads issued while writes wait, go in arrival order: a read
        # always sees the writes its caller asked for before it
        done = asyncio.get_running_loop().create_future()
        self._writes.append((script, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_batches())
        return await done

    async def _write_batches(self):
        """Hand the waiting scripts to the worker thread, batch after batch. A script
        whose caller was cancelled before its batch started is dropped, not run."""
        while self._writes:
            batch, self._writes = self._writes[:MAX_BATCH], self._writes[MAX_BATCH:]
            batch = [(script, done) for script, done in batch if not done.cancelled()]
            if not batch:
                continue
            try:
                outcomes = await self._call(self._drive_batch, [script for script, _ in batch])
            except asyncio.CancelledError:
                for _, done in batch + self._writes:
                    done.cancel()
                raise
            except BaseException as e:   # the commit failed or the store closed: all fail
                outcomes = [(False, e)] * len(batch)
                if not isinstance(e, Exception):
                    _settle(batch, outcomes)
                    raise
            _settle(batch, outcomes)

    def _drive(self, script, write):
        """Run one transaction script on the worker thread."""
        return self._in_transaction("BEGIN IMMEDIATE" if write else "BEGIN",
                                    lambda c: _steps(c, script))

    def _drive_batch(self, scripts):
        """Run write scripts in one transaction, one savepoint each, on the worker thread:
        [(True, value) or (False, exception)] in order. Raises if the commit fails."""
        if len(scripts) == 1:
            try:
                return [(True, self._drive(scripts[0], True))]
            except Exception as e:
                return [(False, e)]
        return self._in_transaction("BEGIN IMMEDIATE",
                                    lambda c: [self._in_savepoint(c, s) for s in scripts])

    def _in_transaction(self, begin, work):
        """work(connection) between `begin` and COMMIT, rolled back if it raises."""
        c = self._conn
        if c is None:
            raise StoreUnavailable("store is closed")
        try:
            c.execute(begin)
            try:
                value = work(c)
                c.execute("COMMIT")
                return value
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise self._store_error(e) from e

    def _in_savepoint(self, c, script):
        """(True, value) of a script run in a savepoint, or (False, error) rolled back."""
        c.execute("SAVEPOINT one")
        try:
            outcome = (True, _steps(c, script))
        except Exception as e:
            c.execute("ROLLBACK TO one")
            outcome = (False, self._store_error(e) if isinstance(e, sqlite3.Error) else e)
        c.execute("RELEASE one")
        return outcome

    def _store_error(self, e):
        """The StoreError (or StoreUnavailable) that a sqlite3 error means."""
        if isinstance(e, sqlite3.ProgrammingError) and self._conn is None:
            return StoreUnavailable("store is closed")
        name = getattr(e, "sqlite_errorname", "")
        if name.startswith(_CORRUPT):
            return StoreCorrupt("sqlite database %r is damaged: %s (%s)" % (self.path, e, name))
        if name.startswith(_UNAVAILABLE):
            return StoreUnavailable("sqlite: %s (%s)" % (e, name))
        return StoreError("sqlite: %s" % e)

    def _connect(self):
        try:
            c = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            # a new database gets PAGE_SIZE pages (an existing one keeps its own): a
            # telemetry commit writes fewer, larger pages to the WAL
            c.execute("PRAGMA page_size = %d" % PAGE_SIZE)
            mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            c.execute("PRAGMA synchronous = FULL")
            # a checkpoint every WAL_BYTES of WAL instead of SQLite's 1 000 pages: a page
            # written by many commits is copied to the database once (under telemetry
            # load each commit writes hundreds of pages)
            page = c.execute("PRAGMA page_size").fetchone()[0]
            c.execute("PRAGMA wal_autocheckpoint = %d" % max(1000, WAL_BYTES // page))
            c.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as e:
            if getattr(e, "sqlite_errorname", "").startswith(_CORRUPT):
                raise StoreCorrupt("sqlite database %r is damaged: %s" % (self.path, e)) from e
            raise StoreUnavailable("cannot open sqlite database %r: %s" % (self.path, e)) from e
        if mode.lower() != "wal":
            c.close()
            raise StoreUnavailable("sqlite database %r cannot use WAL mode" % self.path)
        self._conn = c
        self._drive(lambda: self._s_schema(DDL, time.time()), True)

    def _disconnect(self):
        c, self._conn = self._conn, None
        if c is not None:
            c.close()

    # -- telemetry (the same tables and rules as Store.add_telemetry, in fewer statements)

    async def add_telemetry(self, rows):
        if type(rows) not in (list, tuple):
            rows = list(rows)
        if not rows:
            return 0
        out = encode_telemetry(rows)
        ids = sorted({r[0] for r in out})
        for dev in ids:
            check_device(dev)

        def script():
            unknown = yield from self._s_unknown_devices(ids)
            if unknown:
                raise UnknownDevice(unknown)
            return (yield from _s_history(out))
        return await self._run(script)

    async def add_telemetry_frames(self, frames):
        """Store.add_telemetry_frames in one transaction, refusing conflicting frames.

        The rows are taken as checked (ingest.notify_rows); the store thread only
        encodes them, and not even that when all values are integers (_bindable). When every row is new (the usual case) that is all; when some
        key (device, service, object, t) is already stored, or twice in the batch,
        the inserts are rolled back and done again without the frames that give such
        a key another value than the one stored (or than an earlier frame of the
        batch): those are refused, nothing of them stored; a frame repeating stored
        values (a retransmission) is taken and stored once.

        frames may also be a function returning them (takes_frames_late): it is
        called on the store's thread just before the transaction begins, not on the
        event loop, so a caller (the ingest) queues the next transaction while the
        one before still runs, and it takes what arrived until then: the store's
        thread goes from one commit to the next without a round trip through the
        loop. [] from it stores nothing; it is not called if the store closed first.
        """
        if callable(frames):
            def work():
                taken = frames()
                return self._drive(lambda: self._s_frames(taken), True) if taken else []
            return await self._call(work)
        return await self._run(lambda: self._s_frames(frames))

    def _s_frames(self, frames):
        """add_telemetry_frames' transaction script."""
        ids = sorted({rows[0][0] for rows in frames if rows})
        unknown = yield from self._s_unknown_devices(ids)
        if unknown:
            raise UnknownDevice(unknown)
        rows = list(chain.from_iterable(frames))
        ints = _bindable(rows)
        # one history row per frame (sqlite_frames), its values as stored text; its
        # `vals` is the latest values' row too (sqlite_latest)
        keys = []
        packed = sqlite_frames.pack(frames, None if ints else value_text, keys)
        refused = [False] * len(frames)
        yield Q("SAVEPOINT telemetry", ())
        if packed is None or (yield from sqlite_frames.s_insert(
                sqlite_frames.INSERT, packed)) != len(packed) // 4:
            yield Q("ROLLBACK TO telemetry", ())
            enc = [[(d, s, o, float(t), value_text(v)) for d, s, o, t, v in fr] for fr in frames]
            refused = yield from s_conflicts(enc)
            rows = [r for k, fr in enumerate(enc) if not refused[k] for r in fr]
            yield from sqlite_frames.s_add_values(sqlite_frames.grouped(rows)[0])
            yield from sqlite_latest.s_rows(rows)
        else:
            if not ints:
                rows = [(d, s, o, float(t), value_text(v)) for d, s, o, t, v in rows]
            yield from sqlite_latest.s_frames(packed, keys, rows)
        yield Q("RELEASE telemetry", ())
        return refused

    def _s_schema(self, ddl, now):
        """Store._s_schema, then a schema-1 database's history moved to frames
        (sqlite_frames) and the view `telemetry` made, a schema-2 database's latest
        values moved to one row per device and service (sqlite_latest) and the view
        `latest` made."""
        v = yield from super()._s_schema(ddl, now)
        for layout in (sqlite_frames, sqlite_latest):   # schema 1 -> 2, 2 -> 3
            if v < layout.SCHEMA:
                yield from layout.s_migrate()
                yield Q("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                        (layout.SCHEMA, float(now)))
                v = layout.SCHEMA
            for stmt in layout.VIEW:
                yield Q(stmt, ())
        yield from sqlite_latest.s_rules()
        return v

    async def prune_telemetry(self, before_t):
        """Store.prune_telemetry: the frames older than before_t deleted, the values
        they held counted."""
        check_time(before_t, "before_t")
        return await self._run(lambda: sqlite_frames.s_prune(float(before_t)))

    # -- lifecycle

    async def open(self):
        if self._executor is not None:
            return self
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="spot-store-sqlite")
        try:
            await self._call(self._connect)
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self):
        writer = self._writer
        if writer is not None and not writer.done() and self._executor is not None:
            await asyncio.wait([writer])   # what callers are already waiting for is done first
        ex, self._executor = self._executor, None
        if ex is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(ex, self._disconnect)
        finally:
            ex.shutdown(wait=True)
