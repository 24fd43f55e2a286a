"""A bridge with in-process simulated devices and a plugin context for the
IEC 61850 tests (the model and ACSI layer, without the MMS server)."""
import contextlib
import time

from spot.cloud_bridge import config as C
from spot.cloud_bridge.local_transport import LocalTransport
from spot.cloud_bridge.plugin_api import PluginContext
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store
from spot.core import frame as F
from spot.core.errors import OUT_OF_RANGE
from spot.ports.cpython.simulator import SimDevice


class FakeRefusingDevice:
    """Test double: a SimDevice that answers every WRITE with ERROR out-of-range
    (a device whose own limits refuse what the profile allows)."""

    def __init__(self, sim):
        self.sim = sim
        self.node = sim.node
        self.writes = 0

    def announce(self, mid=0):
        return self.sim.announce(mid)

    def receive(self, frame, t_unix, peer=None):
        op, sid, mid, _ = F.decode(frame)
        if op == F.WRITE:
            self.writes += 1
            return F.error(sid, mid, OUT_OF_RANGE, "device limit")
        return self.sim.receive(frame, t_unix, peer)


@contextlib.asynccontextmanager
async def bridge_with_devices(tmp_path, *specs, role="aggregator", **config):
    """A started Bridge, a LocalTransport with SimDevices of specs [(profile, id)]
    and a PluginContext "iec61850" with `role`; yields (bridge, ctx, local, devs)."""
    cfg = C.load(None, data=str(tmp_path), **dict({"offline_after": 3600}, **config))
    store = await open_store(cfg.store_url)
    bridge = Bridge(cfg, store)
    await bridge.start()
    ctx = PluginContext(bridge, "iec61850", {"role": role})
    bridge.plugin_actors[ctx.actor] = ctx.role
    local = LocalTransport(bridge)
    devs = {}
    try:
        for profile, dev_id in specs:
            d = SimDevice(profile, dev_id, seed=3, t0=int(time.time()))
            await local.connect(dev_id, d)
            await local.uplink(dev_id, d.advance(int(time.time())))
            devs[dev_id] = d
        await bridge.ingest.close()
        yield bridge, ctx, local, devs
    finally:
        await bridge.stop()
        await store.close()
