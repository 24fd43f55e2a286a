"""Calls that arrive together run as one batch: a write-behind queue per store method.

    claim = Coalesced(lambda devices: store.claim_many(devices, ...))
    cmd = await claim(device)      # answered after the batch holding it committed

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
idle.
"""
import asyncio


class Coalesced:
    """One item in, its outcome out; run_many(items) -> [outcome per item]."""

    def __init__(self, run_many, max_batch=2000):
        self.run_many = run_many
        self.max_batch = max_batch
        self._waiting = []       # [(item, future)]
        self._flusher = None
        self.batches = 0         # batches run (metrics, tests)

    async def __call__(self, item):
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append((item, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await fut

    async def _flush(self):
        await asyncio.sleep(0)   # one tick: what arrives with this item joins it
        while self._waiting:
            batch = self._waiting[:self.max_batch]
            del self._waiting[:len(batch)]
            batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            self.batches += 1
            try:
                outcomes = await self.run_many([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, fut in batch + self._waiting:
                    fut.cancel()
                self._waiting = []
                raise
            except Exception as e:   # nothing of the batch is stored: all callers learn
                outcomes = [e] * len(batch)
            for (_, fut), outcome in zip(batch, outcomes):
                if fut.done():
                    continue
                if isinstance(outcome, BaseException):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)

    async def close(self):
        """Wait for what is waiting to be written."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])
