"""Helpers every translation plugin shares: which devices a plugin acts for
(plugin_api.member_filter) and taking a finished event's plan back
(plan_override.withdraw_event)."""
import asyncio
import logging

from spot.cloud_bridge.plugin_api import member_filter
from spot.cloud_bridge.plugins.dr_readings import taking_part
from spot.cloud_bridge.plugins.plan_override import withdraw_event
from spot.cloud_bridge.store import Device


def device(did, groups=()):
    return Device(id=did, services=[], consumes=[], flags=0, sleepy=False,
                  credential_ref=None, first_seen=0.0, last_seen=0.0, presence="online",
                  presence_at=0.0, groups=list(groups))


def test_no_groups_and_no_devices_means_every_device():
    assert member_filter({"groups": [], "devices": []}) is None
    assert member_filter({}) is None


def test_a_device_named_in_devices_takes_part():
    keep = member_filter({"groups": [], "devices": ["hp-1"]})
    assert keep(device("hp-1")) and not keep(device("hp-2"))


def test_a_device_in_one_of_the_groups_takes_part():
    keep = member_filter({"groups": ["north", "south"], "devices": []})
    assert keep(device("a", ["south"]))
    assert not keep(device("b", ["east"]))
    assert not keep(device("c"))


def test_taking_part_applies_the_same_filter_to_a_list():
    devices = [device("a", ["north"]), device("b"), device("c")]
    opts = {"groups": ["north"], "devices": ["c"]}
    assert [d.id for d in taking_part(devices, opts)] == ["a", "c"]
    assert taking_part(devices, {"groups": [], "devices": []}) is devices


class FakeContext:
    """Test double of a plugin's context: records the plans it is asked to cancel."""
    name = "test"
    log = logging.getLogger("test")

    def __init__(self):
        self.cancelled = []

    async def cancel_plan(self, device, pid):
        self.cancelled.append((device, pid))


def test_withdrawing_an_event_cancels_its_plan_on_each_device_and_forgets_it():
    ctx = FakeContext()
    active = {"ev1": {"plan_id": 7, "devices": {"b": 1, "a": 2}}, "ev2": {"plan_id": 8, "devices": {}}}
    rec = asyncio.run(withdraw_event(ctx, active, "ev1"))
    assert rec["plan_id"] == 7
    assert ctx.cancelled == [("a", 7), ("b", 7)]
    assert list(active) == ["ev2"]


def test_withdrawing_an_event_not_running_changes_nothing():
    ctx = FakeContext()
    active = {"ev2": {"plan_id": 8, "devices": {"a": 1}}}
    assert asyncio.run(withdraw_event(ctx, active, "ev1")) is None
    assert ctx.cancelled == [] and list(active) == ["ev2"]
