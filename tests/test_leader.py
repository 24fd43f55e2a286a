"""cloud_bridge/leader.Leadership's own loop, without PostgreSQL (its lock and hand-over
against a real server are in test_multi_instance.py)."""
import asyncio

from spot.cloud_bridge.leader import Leadership
from swallowed_cancel import SwallowingStep, ended_within


def test_stop_ends_the_loop_even_when_the_cancel_is_swallowed_inside_a_try():
    """On Python 3.11 asyncio.wait_for can swallow a cancel that meets its inner query
    completing; _try then returns normally. stop() must still end the loop."""
    async def main():
        async def nothing():
            pass
        ld = Leadership("postgresql://unused", nothing, nothing, retry=0.001, check=0.001)
        ld._try = step = SwallowingStep()
        ld._task = asyncio.ensure_future(ld._run())
        await step.inside.wait()
        ended = await ended_within(ld.stop())
        ld._stopping = True   # (so that a failing run still ends)
        assert step.swallowed, "the try was not cancelled inside"
        assert ended, "stop() still waiting for the loop"
        assert ld._task is None and not ld.leading
    asyncio.run(main())
