"""A step that loses the first cancel it meets, as asyncio.wait_for can on Python 3.11
when the cancel meets its inner awaitable completing: for the tests that a loop's
stop() still ends the loop (test_leader.py, test_instances_loop.py)."""
import asyncio


class SwallowingStep:
    """Await it in place of a loop's step: `inside` is set once the loop is in it, and
    `swallowed` once it has lost a cancel; a second cancel goes through."""

    def __init__(self):
        self.inside = asyncio.Event()
        self.swallowed = False

    async def __call__(self):
        self.inside.set()
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            self.swallowed = True   # the cancel is lost, the step returns normally


async def ended_within(coro, seconds=5.0):
    """Whether coro (a stop()) finished within seconds."""
    task = asyncio.ensure_future(coro)
    await asyncio.wait({task}, timeout=seconds)
    return task.done()
