"""cloud_bridge/leader.Leadership's own loop, without PostgreSQL (its lock and hand-over
against a real server are in test_multi_instance.py)."""
import asyncio

from spot.cloud_bridge.leader import Leadership


def test_stop_ends_the_loop_even_when_the_cancel_is_swallowed_inside_a_try():
    """On Python 3.11 asyncio.wait_for can swallow a cancel that meets its inner query
    completing; _try then returns normally. stop() must still end the loop."""
    async def main():
        async def nothing():
            pass
        ld = Leadership("postgresql://unused", nothing, nothing, retry=0.001, check=0.001)
        inside = asyncio.Event()
        swallowed = []

        async def swallowing_try():
            inside.set()
            try:
                await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(1)   # what such a wait_for does, once: the cancel is lost
        ld._try = swallowing_try
        ld._task = asyncio.ensure_future(ld._run())
        await inside.wait()
        stopping = asyncio.ensure_future(ld.stop())
        await asyncio.wait({stopping}, timeout=5)
        ended = stopping.done()
        ld._stopping = True   # (so that a failing run still ends)
        assert ended, "stop() still waiting for the loop"
        assert ld._task is None and not ld.leading
    asyncio.run(main())
