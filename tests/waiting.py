"""Waiting in async tests for something to become true, with a deadline."""
import asyncio
import inspect
import time


async def until(cond, timeout=15.0, every=0.05):
    """True as soon as cond() is truthy (cond may return an awaitable), False once
    `timeout` seconds passed without that; cond is tried every `every` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every)
