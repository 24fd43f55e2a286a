"""Stopping the bridge's background asyncio tasks."""
import asyncio


async def cancel_and_wait(tasks):
    """Cancel every task (None entries are skipped) and wait until each has ended;
    what a task raises while it is being stopped is dropped."""
    tasks = [t for t in tasks if t is not None]
    for t in tasks:
        t.cancel()
    for t in tasks:
        try:
            await t
        except (asyncio.CancelledError, Exception):
            pass
