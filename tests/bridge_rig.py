"""A real bridge with one plugin and devices, for the plugins' end-to-end tests.

PluginRig starts the bridge on a temporary store with one plugin loaded by
factory (not entry point), the in-process transport and, if asked, a CoAP
link on a free loopback port. local_devices() attaches in-process
SimDevices; fleet_over_coap() runs a `spot sim` Fleet against the CoAP link.
"""
import asyncio
import contextlib
import time
from pathlib import Path

from netutil import free_udp_port
from spot.cloud_bridge import config as C
from spot.cloud_bridge.coap_link import CoapLink
from spot.cloud_bridge.local_transport import LocalTransport
from spot.cloud_bridge.plugin_api import PluginHost
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store
from spot.core.services import PLANS
from spot.ports.cpython.fleet_links import serve_fleet_coap, close_links
from spot.ports.cpython.simulator import SimDevice


def run(coro, timeout=60):
    asyncio.run(asyncio.wait_for(coro, timeout))


class PluginRig:
    """A running bridge with plugin `name` made by `factory` from `options`."""

    def __init__(self, tmp_path, name, factory, options):
        self.tmp_path = tmp_path
        self.name = name
        self.factory = factory
        self.options = dict(options)

    async def start(self, coap=False):
        Path(self.tmp_path).mkdir(parents=True, exist_ok=True)
        config = C.load(None, data=str(self.tmp_path), offline_after=3600,
                        plugins={self.name: self.options})
        self.store = await open_store(config.store_url)
        self.bridge = Bridge(config, self.store)
        await self.bridge.start()
        self.host = PluginHost(self.bridge, config.plugins).load(
            factories={self.name: self.factory})
        self.plugin = self.host.plugins[self.name][0]
        self.local = LocalTransport(self.bridge)
        self.link = None
        if coap:
            self.coap_port = free_udp_port()
            self.link = await CoapLink(self.bridge, "127.0.0.1", self.coap_port).start()
        await self.host.start()
        return self

    async def stop(self):
        await self.host.stop()
        if self.link is not None:
            await self.link.stop()
        await self.bridge.stop()
        await self.store.close()

    async def plan_commands(self, device):
        return [c for c in await self.store.list_commands(device)
                if c.service == PLANS and c.actor == "plugin:" + self.name]

    async def audit(self, action):
        return [a for a in await self.store.list_audit(limit=500) if a.action == action]


async def local_devices(rig, *specs):
    """SimDevices on the rig's in-process transport: specs of (profile, id)."""
    out = {}
    for profile, dev_id in specs:
        d = SimDevice(profile, dev_id, seed=7, t0=int(time.time()))
        await rig.local.connect(dev_id, d)
        out[dev_id] = d
    return out


@contextlib.asynccontextmanager
async def fleet_over_coap(rig, fleet):
    """`fleet` registered with the rig's bridge over CoAP and running until the block ends."""
    servers, send = await serve_fleet_coap(fleet, bridge=("127.0.0.1", rig.coap_port))
    running = asyncio.ensure_future(fleet.run(tick=0.2, on_frames=send))
    try:
        yield
    finally:
        running.cancel()
        await close_links(servers)
