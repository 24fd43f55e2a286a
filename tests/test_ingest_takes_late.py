"""Group commit with a store that takes its batch itself (cloud_bridge/ingest.py and
SqliteStore.add_telemetry_frames given a function): the next transaction is queued
while the one before commits and takes, when it begins, every frame that arrived
until then; each caller is answered only after the commit holding its rows.

LateStore is a test double: a transaction begins (calls take()) and commits when the
test says so. The last tests run the real SQLite store.
"""
import asyncio
import threading

import pytest

from spot.cloud_bridge.ingest import Ingest, TimeTaken
from spot.cloud_bridge.store import StoreError, open_store

T = 1700000000


class LateStore:
    """Test double of a store that takes_frames_late: each add_telemetry_frames(take) is
    a transaction that begins (take()) and ends by hand."""

    takes_frames_late = True

    def __init__(self):
        self.calls = []     # [begin gate, commit gate, frames taken or None]

    async def add_telemetry_frames(self, take):
        call = [asyncio.get_running_loop().create_future(),
                asyncio.get_running_loop().create_future(), None]
        self.calls.append(call)
        await call[0]
        call[2] = take()
        await call[1]
        return [False] * len(call[2])

    def begin(self, k):
        self.calls[k][0].set_result(None)

    def commit(self, k, error=None):
        gate = self.calls[k][1]
        if error is None:
            gate.set_result(None)
        else:
            gate.set_exception(error)

    def taken(self, k):
        return [r[0] for rows in self.calls[k][2] for r in rows[:1]]


def rows(device, n=2, t=T):
    return [(device, 16, o, t, 1000 + o) for o in range(n)]


async def turns(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_the_next_transaction_is_queued_while_one_commits_and_takes_what_arrived_until_it_begins():
    async def main():
        store = LateStore()
        ingest = Ingest(store, interval=0)
        first = asyncio.ensure_future(ingest.add(rows("hp-0")))
        await turns()
        store.begin(0)
        await turns()
        second = asyncio.ensure_future(ingest.add(rows("hp-1")))
        await turns()
        assert len(store.calls) == 2                 # queued before the first committed
        third = asyncio.ensure_future(ingest.add(rows("hp-2")))
        await turns()
        assert len(store.calls) == 2                 # the queued one will take it
        store.begin(1)
        await turns()
        assert store.taken(0) == ["hp-0"] and store.taken(1) == ["hp-1", "hp-2"]
        assert not any(c.done() for c in (first, second, third))
        store.commit(1)
        await asyncio.gather(second, third)
        assert not first.done()                      # its own commit has not ended
        store.commit(0)
        await first
        assert ingest.transactions == 2 and ingest.stored == 6
    run(main())


def test_a_failed_late_commit_fails_its_callers_and_not_the_next_ones():
    async def main():
        store = LateStore()
        ingest = Ingest(store, interval=0)
        doomed = asyncio.ensure_future(ingest.add(rows("hp-0")))
        await turns()
        store.begin(0)
        await turns()
        spared = asyncio.ensure_future(ingest.add(rows("hp-1")))
        await turns()
        store.commit(0, StoreError("disk full (test)"))
        with pytest.raises(StoreError):
            await doomed
        store.begin(1)
        store.commit(1)
        await spared
        assert ingest.stored == 2
    run(main())


def test_a_store_failing_before_it_takes_fails_every_waiting_caller_and_takes_nothing_later():
    async def main():
        store = LateStore()
        ingest = Ingest(store, interval=0)
        calls = [asyncio.ensure_future(ingest.add(rows("hp-%d" % i))) for i in range(2)]
        await turns()
        store.calls[0][0].set_exception(StoreError("store closed (test)"))
        for call in calls:
            with pytest.raises(StoreError):
                await call
        later = asyncio.ensure_future(ingest.add(rows("hp-9")))   # a new transaction
        await turns()
        store.begin(1)
        store.commit(1)
        await later
        assert store.taken(1) == ["hp-9"] and ingest.stored == 2
    run(main())


def test_a_late_batch_holds_whole_callers_up_to_max_batch_rows_and_the_rest_goes_next():
    async def main():
        store = LateStore()
        ingest = Ingest(store, max_batch=5, interval=0)
        calls = [asyncio.ensure_future(ingest.add(rows("hp-%d" % i))) for i in range(3)]
        await turns()
        store.begin(0)
        store.commit(0)
        await turns()
        assert store.taken(0) == ["hp-0", "hp-1"]
        store.begin(1)
        store.commit(1)
        await asyncio.gather(*calls)
        assert store.taken(1) == ["hp-2"]
    run(main())


def test_close_waits_for_the_queued_late_transactions():
    async def main():
        store = LateStore()
        ingest = Ingest(store, interval=0)
        call = asyncio.ensure_future(ingest.add(rows("hp-1")))
        await turns()
        closing = asyncio.ensure_future(ingest.close())
        await turns()
        assert not closing.done()
        store.begin(0)
        store.commit(0)
        await closing
        assert call.done() and ingest.stored == 2
    run(main())


def test_sqlite_takes_the_batch_on_its_own_thread_and_answers_after_commit(tmp_path):
    async def main():
        store = await open_store("sqlite:///%s" % (tmp_path / "late.db"))
        try:
            ids = ["hp-%03d" % i for i in range(200)]
            await store.upsert_devices([(d, [[16, 1, 0]], [], 0) for d in ids], T)
            threads = set()
            take_now = Ingest._take_now

            def spy(self, claim):
                threads.add(threading.current_thread())
                return take_now(self, claim)
            ingest = Ingest(store)
            ingest._take_now = spy.__get__(ingest)
            calls = [asyncio.ensure_future(ingest.add(rows(d, 21, T + k)))
                     for k in range(3) for d in ids]
            await asyncio.gather(*calls)
            assert threading.main_thread() not in threads
            assert ingest.stored == 600 * 21 and 1 <= ingest.transactions < 600
            n = await store.history("hp-007", 16, 20)
            assert n == [(T, 1020), (T + 1, 1020), (T + 2, 1020)]
        finally:
            await store.close()
    run(main())


def test_sqlite_late_batch_refuses_a_frame_giving_a_stored_time_other_values(tmp_path):
    async def main():
        store = await open_store("sqlite:///%s" % (tmp_path / "late.db"))
        try:
            await store.upsert_devices([("hp-1", [[16, 1, 0]], [], 0)], T)
            ingest = Ingest(store, interval=0)
            await ingest.add(rows("hp-1"))
            same = ingest.add(rows("hp-1"))                           # a repeat
            other = ingest.add([("hp-1", 16, 0, T, 7), ("hp-1", 16, 5, T, 7)])
            results = await asyncio.gather(same, other, return_exceptions=True)
            assert results[0] is None and isinstance(results[1], TimeTaken)
            assert await store.history("hp-1", 16, 0) == [(T, 1000)]
            assert await store.history("hp-1", 16, 5) == []
        finally:
            await store.close()
    run(main())
