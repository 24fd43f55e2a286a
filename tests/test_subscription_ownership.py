"""Subscriptions between actors (#13 item 5): every actor's SUBSCRIBE reaches the
device from the bridge, so the bridge keeps who owns which. An actor ends only its
own, holds a bounded number per device, and the device's managers keep slots of
their own (in-process devices, real SQLite store)."""
import asyncio

import pytest

from test_bridge_service import heat_pump_on_bridge, settle
from spot.cloud_bridge.service import Forbidden
from spot.cloud_bridge.subscriptions import DEVICE_SLOTS, MANAGER_RESERVE, PER_ACTOR
from spot.core import frame as F
from spot.core.services import HEAT_PUMP

FLOW_TEMP = 8


async def subscribe(bridge, actor):
    cmd = await bridge.submit(actor, "hp-1", HEAT_PUMP, F.SUBSCRIBE, {FLOW_TEMP: {1: 60}})
    await settle(bridge)
    cmd = await bridge.store.get_command(cmd.id)
    assert cmd.status == "done"
    return cmd.mid


async def pair(bridge, actor, role="monitor"):
    await bridge.store.add_pairing("hp-1", actor, role, None, bridge.clock())


def run(coro):
    asyncio.run(coro)


def test_a_monitor_cannot_unsubscribe_all_while_another_actor_holds_a_subscription(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            await pair(bridge, "mon")
            await subscribe(bridge, "operator")
            with pytest.raises(Forbidden, match="unsubscribe by subscription id"):
                await bridge.submit("mon", "hp-1", HEAT_PUMP, F.UNSUBSCRIBE, None)
            assert len(dev.node.subs.subs) >= 1
    run(main())


def test_a_monitor_cannot_unsubscribe_another_actors_subscription_by_id(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            await pair(bridge, "mon")
            theirs = await subscribe(bridge, "operator")
            with pytest.raises(Forbidden, match="is not mon's"):
                await bridge.submit("mon", "hp-1", HEAT_PUMP, F.UNSUBSCRIBE, theirs)
            assert (HEAT_PUMP, theirs, "operator") in bridge.subscriptions_of("hp-1")
    run(main())


def test_an_actor_ends_its_own_subscription_and_the_book_forgets_it(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            await pair(bridge, "mon")
            mine = await subscribe(bridge, "mon")
            assert bridge.subscriptions_of("hp-1") == [(HEAT_PUMP, mine, "mon")]
            cmd = await bridge.submit("mon", "hp-1", HEAT_PUMP, F.UNSUBSCRIBE, mine)
            await settle(bridge)
            assert (await bridge.store.get_command(cmd.id)).status == "done"
            assert bridge.subscriptions_of("hp-1") == []
    run(main())


def test_an_actor_that_does_not_manage_the_device_holds_at_most_its_quota(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            await pair(bridge, "mon")
            for _ in range(PER_ACTOR):
                await subscribe(bridge, "mon")
            with pytest.raises(Forbidden, match="the most an actor"):
                await bridge.submit("mon", "hp-1", HEAT_PUMP, F.SUBSCRIBE, {FLOW_TEMP: None})
    run(main())


def test_other_actors_cannot_take_the_slots_kept_for_the_devices_managers(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            shared = DEVICE_SLOTS - MANAGER_RESERVE
            monitors = ["mon-%d" % i for i in range(shared // PER_ACTOR + 1)]
            for m in monitors:
                await pair(bridge, m)
            for m in monitors[:-1]:
                for _ in range(PER_ACTOR):
                    await subscribe(bridge, m)
            with pytest.raises(Forbidden, match="kept for its managers"):
                await bridge.submit(monitors[-1], "hp-1", HEAT_PUMP, F.SUBSCRIBE,
                                    {FLOW_TEMP: None})
            for _ in range(MANAGER_RESERVE):   # the owner's needs come first
                await subscribe(bridge, "operator")
    run(main())


def test_a_subscription_the_device_no_longer_has_leaves_the_book_when_unsubscribed(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            await pair(bridge, "mon")
            mine = await subscribe(bridge, "mon")
            dev.node.subs.remove("bridge", HEAT_PUMP, mine)   # the device lost it (restart)
            cmd = await bridge.submit("mon", "hp-1", HEAT_PUMP, F.UNSUBSCRIBE, mine)
            await settle(bridge)
            assert (await bridge.store.get_command(cmd.id)).status == "error"
            assert bridge.subscriptions_of("hp-1") == []
    run(main())


def test_a_refused_subscribe_takes_no_place_in_the_book(tmp_path):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            await pair(bridge, "mon")
            cmd = await bridge.submit("mon", "hp-1", HEAT_PUMP, F.SUBSCRIBE, {250: None})
            await settle(bridge)
            assert (await bridge.store.get_command(cmd.id)).status == "error"
            assert bridge.subscriptions_of("hp-1") == [] and bridge.subscriptions.queued == {}
    run(main())
