"""A fixed number of slots shared by many tasks, handed out in arrival order.

The bridge's deliveries take one of `commands_in_flight` slots per command
exchange. A group command to ten thousand devices puts ten thousand tasks in
line for them, and the answers of a batch free hundreds at once: asyncio's
Semaphore walks past every waiter it already woke on each release (quadratic
in the slots freed together), so here a release hands its slot straight to the
next waiter in line, O(1) per acquire and per release.
"""
import asyncio
import collections


class Slots:
    """acquire() waits for a slot (first come, first served); release() frees one."""

    def __init__(self, n):
        self.free = n
        self._line = collections.deque()   # futures of the waiting acquirers

    async def acquire(self):
        if self.free > 0 and not self._line:
            self.free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._line.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():   # handed a slot, then cancelled
                self.release()
            raise

    def release(self):
        """Free a slot: to the first waiter still waiting, else back to the pool."""
        line = self._line
        while line:
            fut = line.popleft()
            if not fut.done():    # (a cancelled waiter has left the line)
                fut.set_result(None)
                return
        self.free += 1
