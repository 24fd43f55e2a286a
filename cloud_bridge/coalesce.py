"""Calls that arrive together run as one batch: a write-behind queue per store method.

    send = Coalesced(lambda sends: store.claim_and_send_many(sends, ...))
    cmd = await send((device, mid))   # answered after the batch holding it committed

A fleet-wide burst (a group command to ten thousand devices, a reconnect
storm of ANNOUNCEs) makes thousands of small store writes at once. Each
caller of a Coalesced hands in one item and waits; the items that arrive in
the same event-loop tick, and those that arrive while the previous batch is
being written, go to ONE call of `run_many(items)`, one transaction. The
caller gets its own item's outcome only after that call returned (its
transaction committed): an outcome that is an exception instance is raised
to that caller alone; an exception from run_many itself (the transaction
failed: nothing of it is stored) is raised to every caller of the batch.

At most one batch of a Coalesced is in flight at a time, so a batch is as
large as what waited: few transactions under load, one tick of delay when
idle. With in_flight=k, up to k batches run at once, what waits split evenly
among the ones that may still start: the caller's loop works on one batch's
answers while the store writes another (each batch is still its own
transaction, its callers answered only after it). min_split=m keeps batches
from getting small for that: another batch starts beside a running one only
for at least m waiting items, and what waits is split only into batches of at
least m (fewer wait for the running batch, or go in one batch).

A caller without a coroutine (a transport answering a burst from its socket's
callback) hands in its item with a callback instead: `put(item, Callback(fn))`
calls fn(outcome, None) or fn(None, error) when the batch ends, with no future
and no task of its own.
"""
import asyncio
import logging

log = logging.getLogger("spot.bridge.coalesce")


class Coalesced:
    """One item in, its outcome out; run_many(items) -> [outcome per item]."""

    def __init__(self, run_many, max_batch=2000, in_flight=1, min_split=1):
        self.run_many = run_many
        self.max_batch = max_batch
        self.in_flight = in_flight   # batches run at once (their items split evenly)
        self.min_split = min_split   # items a batch beside a running one holds at least
        self._waiting = []       # [(item, future)]
        self._flushers = set()   # tasks running batches (close() waits for them)
        self._running = 0        # of them, those not ended yet (a task's callback is late)
        self._busy = 0           # batches in run_many now
        self._starting = False   # a flusher will take what waits, once this tick ends
        self.batches = 0         # batches run (metrics, tests)

    async def __call__(self, item):
        fut = asyncio.get_running_loop().create_future()
        self.put(item, fut)
        return await fut

    def put(self, item, sink):
        """Hand in item; sink (a future, or a Callback) gets its outcome."""
        self._waiting.append((item, sink))
        if not self._starting and self._may_start():
            self._start()

    def _may_start(self):
        """Whether another batch may start now: none runs, or one more may run and
        enough items wait for it (min_split)."""
        return self._running == 0 or (self._running < self.in_flight
                                      and len(self._waiting) >= self.min_split)

    def _start(self):
        self._starting = True
        self._running += 1
        task = asyncio.ensure_future(self._flush())
        self._flushers.add(task)
        task.add_done_callback(self._flushers.discard)

    def _take(self):
        """The next batch: what waits, shared evenly among the batches that may still
        start (in_flight > 1: the loop works on one while the store writes another)."""
        free = max(1, self.in_flight - self._busy)
        # into as many batches as may start, each of min_split at least: 2m-1 waiting
        # is one batch, not m now and m-1 left waiting for it
        parts = max(1, min(free, len(self._waiting) // self.min_split))
        size = min(self.max_batch, -(-len(self._waiting) // parts))
        batch = self._waiting[:size]
        del self._waiting[:size]
        return [(item, fut) for item, fut in batch if not fut.cancelled()]

    async def _flush(self):
        try:
            await self._flush_waiting()
        finally:
            self._running -= 1

    async def _flush_waiting(self):
        try:
            await asyncio.sleep(0)   # one tick: what arrives with this item joins it
        finally:
            self._starting = False
        while self._waiting:
            batch = self._take()
            if not batch:
                continue
            if self._waiting and self._may_start():
                self._start()    # the rest goes in another batch at once
            self.batches += 1
            self._busy += 1
            try:
                outcomes = await self.run_many([item for item, _ in batch])
            except asyncio.CancelledError:
                # a Callback's fn may hand in another item as it is cancelled (the
                # Registrar's next ANNOUNCE of the same device): cancelled in turn
                doomed, self._waiting = batch + self._waiting, []
                while doomed:
                    for _, fut in doomed:
                        fut.cancel()
                    doomed, self._waiting = self._waiting, []
                raise
            except Exception as e:   # nothing of the batch is stored: all callers learn
                outcomes = [e] * len(batch)
            finally:
                self._busy -= 1
            for (_, fut), outcome in zip(batch, outcomes):
                if fut.done():
                    continue
                if isinstance(outcome, BaseException):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)

    async def close(self):
        """Wait for what is waiting to be written."""
        while self._flushers:
            await asyncio.wait(list(self._flushers))


class Callback:
    """The side of a future a Coalesced sets, calling fn(outcome, None) or fn(None, error)
    instead (a cancelled batch: fn(None, CancelledError()))."""

    __slots__ = ("fn", "_done")

    def __init__(self, fn):
        self.fn = fn
        self._done = False

    def done(self):
        return self._done

    def cancelled(self):
        return False

    def set_result(self, outcome):
        self._call(outcome, None)

    def set_exception(self, error):
        self._call(None, error)

    def _call(self, outcome, error):
        self._done = True
        try:   # a bug in one caller's callback must not keep the batch's others unanswered
            self.fn(outcome, error)
        except Exception:
            log.exception("callback of a batch's caller failed")

    def cancel(self):
        if not self._done:
            self.set_exception(asyncio.CancelledError())
