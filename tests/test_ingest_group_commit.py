"""Group commit (cloud_bridge/ingest.py): telemetry arriving while a transaction commits
goes to the store together in the next one; each caller resumes only after the commit
that holds its rows, and a failed commit answers all its callers with the error.

FakeStore is a test double: add_telemetry_frames records each batch and waits until the test
lets it commit (or fail).
"""
import asyncio

import pytest

from spot.cloud_bridge.ingest import Ingest
from spot.cloud_bridge.store import StoreError


class FakeStore:
    """Test double: each add_telemetry_frames(frames) is a transaction the test ends by hand."""

    def __init__(self):
        self.batches = []
        self.gates = []

    async def add_telemetry_frames(self, frames):
        gate = asyncio.get_running_loop().create_future()
        self.batches.append([r for rows in frames for r in rows])
        self.gates.append(gate)
        await gate
        return [False] * len(frames)

    def commit(self, k=-1, error=None):
        gate = self.gates[k]
        if error is None:
            gate.set_result(None)
        else:
            gate.set_exception(error)


def rows(device, n=2):
    return [(device, 16, o, 1700000000, 1.0) for o in range(n)]


async def turns(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_frames_of_one_loop_turn_share_one_transaction():
    async def main():
        store = FakeStore()
        ingest = Ingest(store, interval=0)
        calls = [asyncio.ensure_future(ingest.add(rows("hp-%d" % i))) for i in range(3)]
        await turns()
        assert [len(b) for b in store.batches] == [6]
        assert not any(c.done() for c in calls)     # nothing answered before the commit
        store.commit()
        await asyncio.gather(*calls)
        assert ingest.stored == 6 and ingest.transactions == 1
    run(main())


def test_frames_arriving_during_a_commit_go_together_in_the_next_one():
    async def main():
        store = FakeStore()
        ingest = Ingest(store, interval=0)
        first = asyncio.ensure_future(ingest.add(rows("hp-0")))
        await turns()
        later = [asyncio.ensure_future(ingest.add(rows("hp-%d" % i))) for i in (1, 2, 3)]
        await turns()
        assert len(store.batches) == 1               # one transaction at a time
        store.commit(0)
        await first
        await turns()
        assert [len(b) for b in store.batches] == [2, 6]
        assert not any(c.done() for c in later)
        store.commit(1)
        await asyncio.gather(*later)
        assert ingest.transactions == 2
    run(main())


def test_a_failed_commit_fails_every_caller_of_it_and_no_other():
    async def main():
        store = FakeStore()
        ingest = Ingest(store, interval=0)
        doomed = [asyncio.ensure_future(ingest.add(rows("hp-%d" % i))) for i in (1, 2)]
        await turns()
        spared = asyncio.ensure_future(ingest.add(rows("hp-3")))
        store.commit(0, StoreError("disk full (test)"))
        for call in doomed:
            with pytest.raises(StoreError):
                await call
        await turns()
        store.commit(1)
        await spared
        assert ingest.stored == 2
    run(main())


def test_a_batch_holds_whole_callers_up_to_max_batch_rows():
    async def main():
        store = FakeStore()
        ingest = Ingest(store, max_batch=5, interval=0)
        calls = [asyncio.ensure_future(ingest.add(rows("hp-%d" % i))) for i in range(3)]
        await turns()
        store.commit(0)
        await turns()
        assert [len(b) for b in store.batches] == [4, 2]   # 2 + 2, then the third caller
        store.commit(1)
        await asyncio.gather(*calls)
    run(main())


def test_close_commits_what_is_waiting():
    async def main():
        store = FakeStore()
        ingest = Ingest(store, interval=0)
        call = asyncio.ensure_future(ingest.add(rows("hp-1")))
        await turns()
        closing = asyncio.ensure_future(ingest.close())
        await turns()
        store.commit(0)
        await closing
        await call
        assert ingest.stored == 2
    run(main())


def test_under_load_the_next_transaction_starts_an_interval_after_the_last_began():
    async def main():
        loop = asyncio.get_running_loop()
        store = FakeStore()
        ingest = Ingest(store, interval=0.2)
        first = asyncio.ensure_future(ingest.add(rows("hp-0")))
        await turns()
        began = loop.time()
        later = asyncio.ensure_future(ingest.add(rows("hp-1")))
        store.commit(0)
        await first
        while len(store.batches) < 2:
            await asyncio.sleep(0.01)
        assert loop.time() - began >= 0.19
        store.commit(1)
        await later
    run(main())
