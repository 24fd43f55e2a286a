"""Plugins: found through entry points, fed the bridge's events, acting under
their own role through the same access control as everyone else."""
import asyncio

import pytest

from spot.cloud_bridge import config as C
from spot.cloud_bridge.local_transport import LocalTransport
from spot.cloud_bridge.plugin_api import PluginHost
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store
from spot.core import frame as F
from spot.core.services import HEAT_PUMP, PLANS
from spot.ports.cpython.simulator import SimDevice

T0 = 1704067200


async def setup(tmp_path, plugins):
    config = C.load(None, data=str(tmp_path), plugins=plugins)
    store = await open_store(config.store_url)
    clock = lambda: T0  # noqa: E731
    bridge = Bridge(config, store, clock=clock)
    await bridge.start()
    host = PluginHost(bridge, config.plugins).load()
    await host.start()
    return bridge, host, LocalTransport(bridge)


async def drain(bridge):
    for _ in range(100):
        await asyncio.sleep(0.005)
    await bridge.deliveries_done()


def test_example_plugin_is_found_through_its_entry_point_and_acts_with_its_role(tmp_path):
    async def main():
        bridge, host, local = await setup(tmp_path, {"example": {"role": "aggregator",
                                                                 "limit_w": 500}})
        hp = SimDevice("heat_pump", "hp-1", seed=1, t0=T0)
        await local.connect("hp-1", hp)
        assert await bridge.store.role_of("hp-1", "plugin:example") == "aggregator"
        # 2 kW of telemetry from the heat pump: above the plugin's 500 W limit
        await bridge.device_frame("local", "hp-1",
                                  F.encode(F.NOTIFY, HEAT_PUMP, 0, [T0, {1: 2000}]))
        await drain(bridge)
        cmds = await bridge.store.list_commands("hp-1")
        plan = [c for c in cmds if c.service == PLANS]
        assert plan and plan[0].actor == "plugin:example" and plan[0].status == "done"
        assert hp.node.plans.find(4242) is not None
        await host.stop()
        await bridge.stop()
    asyncio.run(main())


def test_plugin_with_monitor_role_cannot_command(tmp_path):
    async def main():
        bridge, host, local = await setup(tmp_path, {"example": {"limit_w": 500}})  # monitor
        await local.connect("hp-1", SimDevice("heat_pump", "hp-1", seed=1, t0=T0))
        await bridge.device_frame("local", "hp-1",
                                  F.encode(F.NOTIFY, HEAT_PUMP, 0, [T0, {1: 2000}]))
        await drain(bridge)
        assert await bridge.store.list_commands("hp-1") == []
        assert bridge.metrics.value("plugin_errors", plugin="example") == 1
        refused = [a for a in await bridge.store.list_audit() if a.action == "refused"]
        assert refused and refused[0].actor == "plugin:example"
        await host.stop()
        await bridge.stop()
    asyncio.run(main())


def test_enabling_a_plugin_that_is_not_installed_fails_loudly(tmp_path):
    async def main():
        config = C.load(None, data=str(tmp_path))
        store = await open_store(config.store_url)
        bridge = Bridge(config, store)
        with pytest.raises(LookupError, match="no-such-plugin"):
            PluginHost(bridge, {"no-such-plugin": {}}).load()
        await store.close()
    asyncio.run(main())
