"""Telemetry ingest: NOTIFY frames -> store rows, group-committed, acknowledged after commit.

A transport awaits `add(rows)`. Group commit: while one transaction is being
committed, the rows of every caller that arrives meanwhile wait together and go
to the store in the next transaction, started as soon as the previous one
ended (an idle ingest starts one at the next loop turn, so frames read in the
same turn share it). Batches grow with the load; under load a transaction
starts at most every `interval` seconds (5 ms: at most 200 commits a second,
each one fsync), so the batches are bigger still and an idle frame waits on
no timer. Each caller resumes only when the transaction holding its rows
committed, so a device (CoAP ACK, MQTT PUBACK) is answered only for telemetry
that is durable; when it fails, every caller of that transaction gets the error
and nothing of it is acknowledged. The store answers each caller's frame on its
own (Store.add_telemetry_frames): a frame that gives a time already stored for
its device other values is refused (TimeTaken), nothing of it stored, while the
rest of the transaction commits.

A store that takes_frames_late (SQLite) is given the next transaction while
the one before still commits: the store's thread takes what waits when it
begins it, so it goes from commit to commit without waiting for the event loop
to hand it the next batch (the loop only answers the callers of the last one),
and the loop's decoding of new frames overlaps the store's work on the other
core. The interval is then kept on the store's thread, before it takes.
"""
import asyncio
import logging
import threading
import time
from math import isfinite

from .store import prepare_telemetry, InvalidValue

MAX_SKEW = 86400          # a NOTIFY time further ahead than this is refused

log = logging.getLogger("spot.bridge.ingest")


def settle(fut, value, error):
    """Give fut value, or error when there is one (nothing if it is already done)."""
    if not fut.done():
        if error is None:
            fut.set_result(value)
        else:
            fut.set_exception(error)


class TimeTaken(ValueError):
    """A NOTIFY whose (device, service, object, time) is stored with other values."""


def notify_rows(device, frame_body, sid, now):
    """[(device, service, object, t, value)] from a NOTIFY body [time, {oid: value}]."""
    if type(frame_body) is not list or len(frame_body) != 2 or type(frame_body[1]) is not dict:
        raise ValueError("NOTIFY body must be [time, {object: value}]")
    t = frame_body[0]
    if t is None:
        t = int(now)
    elif type(t) is not int or t < 0:
        raise ValueError("NOTIFY time must be Unix seconds or null")
    elif t > now + MAX_SKEW:
        raise ValueError("NOTIFY time %d is more than a day ahead of the bridge" % t)
    values = frame_body[1]
    rows = [(device, sid, oid, t, value) for oid, value in values.items()]
    if not _plain(values):
        try:
            prepare_telemetry(rows)  # the store's own checks: what it refuses fails this frame
        except InvalidValue as e:
            raise ValueError(str(e))
    return rows


def _plain(values):
    """True when the store takes every {object: value} as it is (object ids in range,
    values integers or finite floats), so only other frames need its full check.
    Whole key and value sets are looked at with C-speed builtins."""
    if not values:
        return True
    if (not set(map(type, values)) <= _INT or min(values) < 0
            or max(values) > 0x7FFFFFFF):
        return False
    kinds = set(map(type, values.values()))
    if kinds <= _INT:
        return True
    return kinds <= _NUMBERS and all(map(isfinite, values.values()))


def _rows_taken(waiters, refused):
    """The rows of a committed transaction's callers (done, rows) that were not refused."""
    return sum(len(rows) for (_, rows), no in zip(waiters, refused) if not no)


_INT = frozenset((int,))
_NUMBERS = frozenset((int, float))


class Ingest:
    def __init__(self, store, max_batch=20000, interval=0.005):
        self.store = store
        self.max_batch = max_batch   # rows a transaction takes at most (whole callers)
        self.interval = interval     # seconds from one transaction's start to the next's, at least
        self._waiters = []           # (done callback, its rows), in arrival order
        self._waiting = 0            # rows in _waiters
        self._committing = None      # the task committing batch after batch
        self.stored = 0
        self.transactions = 0
        # a store taking its batch itself (takes_frames_late): _waiters is shared with
        # its thread under _lock; _queued: a transaction is queued that will take them
        self._late = getattr(store, "takes_frames_late", False)
        self._lock = threading.Lock()
        self._queued = False
        self._in_flight = set()      # tasks of queued and running transactions
        self._began = 0.0            # time.monotonic() of the last transaction's take

    async def add(self, rows):
        """Store rows (one frame's, as notify_rows makes them); returns after the
        transaction holding them committed. TimeTaken: refused, nothing stored."""
        if rows:
            fut = asyncio.get_running_loop().create_future()
            self.submit(rows, lambda error: settle(fut, None, error))
            await fut

    def submit(self, rows, done):
        """add() without a coroutine or a future: done(error) is called once the
        transaction holding the rows (not empty) ended, error None when it committed,
        TimeTaken or the store's error when not (called from the commit, in the loop,
        for every frame of it in turn: a transport answers a burst without a loop
        turn per frame)."""
        if self._late:
            with self._lock:
                self._waiters.append((done, rows))
                self._waiting += len(rows)
                if self._queued:
                    return
                self._queued = True
            self._queue_taken()
            return
        self._waiters.append((done, rows))
        self._waiting += len(rows)
        if self._committing is None:
            self._committing = asyncio.ensure_future(self._commit_all())

    async def _commit_all(self):
        try:
            loop = asyncio.get_running_loop()
            await asyncio.sleep(0)   # the frames of this loop turn join the first batch
            while self._waiters:
                began = loop.time()
                await self._commit(self._take())
                rest = self.interval - (loop.time() - began)
                if rest > 0 and self._waiters and self._waiting < self.max_batch:
                    await asyncio.sleep(rest)   # let the next batch grow: fewer commits
        finally:
            self._committing = None

    def _take(self):
        """The next batch: whole callers, up to max_batch rows (at least one caller)."""
        waiters = self._waiters
        if self._waiting <= self.max_batch:   # the usual case: everything waiting
            self._waiters, self._waiting = [], 0
            return waiters
        n = k = 0
        while k < len(waiters) and (k == 0 or n + len(waiters[k][1]) <= self.max_batch):
            n += len(waiters[k][1])
            k += 1
        batch, self._waiters = waiters[:k], waiters[k:]
        self._waiting -= n
        return batch

    async def _commit(self, waiters):
        error = ConnectionError("telemetry not stored")
        refused = ()
        try:
            refused = await self.store.add_telemetry_frames([rows for _, rows in waiters])
            error = None
            self.stored += _rows_taken(waiters, refused)
            self.transactions += 1
        except Exception as e:  # every waiter learns; nothing was acknowledged
            error = e
        finally:  # even when cancelled: no waiter is left hanging
            self._answer(waiters, refused, error)

    def _queue_taken(self):
        task = asyncio.ensure_future(self._commit_taken())
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _take_now(self, claim):
        """On the store's thread, as its transaction begins: the batch's frames (the
        batch in claim[0]); [] if the loop gave the claim up (claim[0] False)."""
        rest = self.interval - (time.monotonic() - self._began)
        if rest > 0 and self._waiting < self.max_batch:
            time.sleep(rest)   # let the batch grow: fewer commits (the GIL is released)
        with self._lock:
            if claim[0] is False:
                return []
            self._began = time.monotonic()
            claim[0] = batch = self._take()
            self._queued = False   # what arrives now needs the next transaction
        return [rows for _, rows in batch]

    async def _commit_taken(self):
        """One transaction of a store that takes its batch (takes_frames_late); its
        callers answered once it ended, as _commit does."""
        claim = [None]
        error = ConnectionError("telemetry not stored")
        refused = ()
        try:
            refused = await self.store.add_telemetry_frames(lambda: self._take_now(claim))
            error = None
        except Exception as e:   # every caller of it learns; nothing was acknowledged
            error = e
        finally:   # even when cancelled: no caller is left hanging
            with self._lock:
                waiters = claim[0]
                if waiters is None:   # never taken (the store failed or closed first):
                    claim[0] = False  # what waits was this transaction's; it fails
                    waiters = self._take()
                    self._queued = False
                again = bool(self._waiters) and not self._queued
                self._queued = self._queued or again
            if error is None and waiters:
                self.stored += _rows_taken(waiters, refused)
                self.transactions += 1
            self._answer(waiters, refused, error)
            if again:   # more than max_batch waited: the rest goes next
                self._queue_taken()

    def _answer(self, waiters, refused, error):
        """Call each waiter's done with its outcome (error None: committed)."""
        for k, (done, rows) in enumerate(waiters):
            if error is None and refused[k]:
                outcome = TimeTaken("time %s already stored with other values" % (rows[0][3],))
            else:
                outcome = error
            try:
                done(outcome)
            except Exception:   # one caller's bug: the others are still answered
                log.exception("telemetry caller")

    async def close(self):
        """Commit what is waiting (callers already answered are not touched)."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))
        if self._committing is not None:
            await asyncio.shield(self._committing)
        while self._waiters:
            await self._commit(self._take())
