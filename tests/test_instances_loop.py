"""cloud_bridge/instances.Instances' own loops, without PostgreSQL (routes, hand-overs
and wake-ups against a real server are in test_multi_instance.py)."""
import asyncio
from types import SimpleNamespace

from spot.cloud_bridge.instances import Instances
from spot.cloud_bridge.metrics import Metrics
from swallowed_cancel import SwallowingStep, ended_within


def test_stop_ends_the_look_loop_even_when_the_cancel_is_swallowed_inside_a_look():
    """On Python 3.11 asyncio.wait_for can swallow a cancel that meets its event being
    set; the loop then goes on as if nothing happened. stop() must still end it."""
    async def main():
        async def settled():
            pass
        bridge = SimpleNamespace(metrics=Metrics(), registrar=SimpleNamespace(settled=settled))
        inst = Instances(bridge, store=None, instance="a", poll=0.001)
        inst.look = step = SwallowingStep()
        inst._tasks = [asyncio.ensure_future(inst._look_forever())]
        await step.inside.wait()
        ended = await ended_within(inst.stop())
        inst.stopped = True   # (so that a failing run still ends)
        assert step.swallowed, "the look was not cancelled inside"
        assert ended, "stop() still waiting for the look loop"
        assert inst._tasks == []
    asyncio.run(main())
