"""cloud_bridge.slots: the delivery slots (commands_in_flight) handed out in order."""
import asyncio

from spot.cloud_bridge.slots import Slots


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_no_more_holders_than_slots_and_each_freed_slot_goes_to_the_first_in_line():
    async def main():
        slots, order, running = Slots(2), [], [0]
        gate = asyncio.Event()

        async def user(k):
            await slots.acquire()
            running[0] += 1
            order.append(k)
            assert running[0] <= 2
            await gate.wait()
            running[0] -= 1
            slots.release()
        tasks = [asyncio.ensure_future(user(k)) for k in range(6)]
        await asyncio.sleep(0.01)
        assert order == [0, 1]
        gate.set()
        await asyncio.gather(*tasks)
        assert order == list(range(6)) and slots.free == 2
    run(main())


def test_a_waiter_cancelled_in_line_takes_no_slot():
    async def main():
        slots = Slots(1)
        await slots.acquire()
        gone = asyncio.ensure_future(slots.acquire())
        later = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        slots.release()
        await asyncio.wait_for(later, 1)
        slots.release()
        assert slots.free == 1
    run(main())


def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on():
    async def main():
        slots = Slots(1)
        await slots.acquire()
        first = asyncio.ensure_future(slots.acquire())
        second = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.release()          # handed to `first` ...
        first.cancel()           # ... which is cancelled before it runs
        await asyncio.wait_for(second, 1)
        assert first.cancelled()
        slots.release()
        assert slots.free == 1
    run(main())
