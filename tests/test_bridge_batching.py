"""The bridge batches a fleet's store writes (registration, a group command's
deliveries) and still answers each device only after its own write committed
(in-process devices, real SQLite store)."""
import asyncio

from spot.cloud_bridge import store as S
from spot.cloud_bridge.store import Q
from spot.core import frame as F
from spot.core.services import HEAT_PUMP

from test_bridge_service import Clock, hp, make_bridge, settle

N = 40


async def fleet_on_bridge(tmp_path):
    clock = Clock()
    bridge, local = await make_bridge(tmp_path, clock)
    devices = [hp("hp-%02d" % i) for i in range(N)]
    replies = await asyncio.gather(*(local.connect("hp-%02d" % i, d)
                                     for i, d in enumerate(devices)))
    await settle(bridge)

    def group():
        yield Q("INSERT INTO device_groups (device, grp) SELECT id, 'all' FROM devices", ())
    await bridge.store._run(group)
    return bridge, local, replies


def test_announces_arriving_together_are_registered_in_few_transactions(tmp_path):
    async def main():
        bridge, _, replies = await fleet_on_bridge(tmp_path)
        try:
            assert all(F.decode(r)[0] == F.RESULT for r in replies)
            assert len(await bridge.store.list_devices()) == N
            assert bridge.registrar._batch.batches < N / 4
        finally:
            await bridge.stop()
    asyncio.run(main())


def test_a_group_commands_deliveries_share_transactions_and_each_ends_done(tmp_path):
    async def main():
        bridge, local, _ = await fleet_on_bridge(tmp_path)
        try:
            finish = bridge.writes._finish
            before = finish.batches
            cmds, refused = await bridge.submit_group("operator", "all", HEAT_PUMP, F.WRITE,
                                                      {6: 3})
            await settle(bridge)
            assert not refused and len(cmds) == N
            done = await bridge.store.get_commands([c.id for c in cmds])
            assert [c.status for c in done] == ["done"] * N
            assert bridge.metrics.value("commands", status="done") == N
            assert finish.batches - before < N / 4
        finally:
            await bridge.stop()
    asyncio.run(main())


def test_an_answer_whose_write_failed_is_not_reported_done(tmp_path):
    async def main():
        bridge, local, _ = await fleet_on_bridge(tmp_path)
        try:
            async def refuse(items, now):
                raise S.StoreUnavailable("disk gone")
            bridge.store.complete_and_look_many = refuse
            cmds, _ = await bridge.submit_group("operator", "all", HEAT_PUMP, F.WRITE,
                                                {6: 3})
            await settle(bridge)
            assert local.requests >= N                     # every device answered
            assert bridge.metrics.value("commands", status="done") == 0
            stored = await bridge.store.get_commands([c.id for c in cmds])
            assert {c.status for c in stored} == {"sent"}   # resumable, not lost
        finally:
            await bridge.stop()
    asyncio.run(main())
