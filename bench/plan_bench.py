"""What the plan-latency benches share: a fleet on a bridge, its acknowledgements, sizes.

Used by openadr_latency.py, openadr3_latency.py and ieee2030_5_latency.py: free
loopback ports, a deadline wait, a simulated fleet attached over CoAP (one
endpoint per device, as `spot sim --connect`) or in-process, a watcher of
"done" plan commands, and the bytes of one device's plans.push frame and its
RESULT.
"""
import argparse
import asyncio
import socket
import time

from spot.cloud_bridge import config as C
from spot.cloud_bridge.coap_link import CoapLink
from spot.cloud_bridge.plugin_api import PluginHost
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store
from spot.cloud_bridge.local_transport import LocalTransport
from spot.core import frame as F
from spot.core.plans import PUSH
from spot.core.services import PLANS
from spot.ports.cpython.fleet_links import serve_fleet_coap, close_links


def arguments(argv, doc, sizes, coap_max, who):
    """The benches' common options: --sizes, --coap-max, --poll."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--sizes", default=sizes)
    ap.add_argument("--coap-max", type=int, default=coap_max,
                    help="largest fleet served over CoAP; larger ones are in-process")
    ap.add_argument("--poll", type=float, default=0.25, help="%s poll interval, s" % who)
    return ap.parse_args(argv)


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def until(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.01)
    return False


async def bridge_with_plugin(data_dir, name, factory, options):
    """(store, bridge, plugin host, plugin) of a fresh bridge on a SQLite store in data_dir."""
    config = C.load(None, data=data_dir, offline_after=3600, command_timeout=60,
                    plugins={name: options},
                    reg_total_burst=1000000, reg_max_plain=1000000)  # the fleet joins at once
    store = await open_store(config.store_url)
    bridge = Bridge(config, store)
    await bridge.start()
    host = PluginHost(bridge, config.plugins).load(factories={name: factory})
    return store, bridge, host, host.plugins[name][0]


class FleetOnBridge:
    """`fleet` attached to `bridge` (over CoAP or in-process) after `host` started."""

    def __init__(self, bridge, host, fleet, coap):
        self.bridge, self.host, self.fleet, self.coap = bridge, host, fleet, coap
        self.servers, self.link, self.running = {}, None, None
        self.done, self._plan_cmds, self._watcher = set(), set(), None

    async def start(self):
        if self.coap:
            port = free_port(socket.SOCK_DGRAM)
            self.link = await CoapLink(self.bridge, "127.0.0.1", port).start()
            await self.host.start()
            self.servers, send = await serve_fleet_coap(self.fleet, bridge=("127.0.0.1", port))
            self.running = asyncio.ensure_future(self.fleet.run(tick=1.0, on_frames=send))
        else:
            local = LocalTransport(self.bridge)
            await self.host.start()
            for d in self.fleet.devices:
                await local.connect(d.device_id, d)
        return self

    def watch(self):
        """Collect in self.done the devices whose plan command is done from now on."""
        queue = self.bridge.hub.subscribe()

        async def watch():
            while True:
                e = await queue.get()
                if e["type"] == "command":
                    if e["status"] == "queued":
                        self._plan_cmds.add(e["id"])
                    elif e["status"] == "done" and e["id"] in self._plan_cmds:
                        self.done.add(e["device"])
        self._watcher = asyncio.ensure_future(watch())

    async def frame_sizes(self, store):
        """(plans.push frame, RESULT frame) bytes of the first device's first plan."""
        cmds = [c for c in await store.list_commands(self.fleet.devices[0].device_id)
                if c.service == PLANS]
        push = F.encode(F.INVOKE, PLANS, 0x1234, [PUSH, cmds[0].body[1]])
        return len(push), len(F.encode(F.RESULT, PLANS, 0x1234, None))

    async def acknowledged_then_close(self, store, t0, timeout=180):
        """Wait until every device acknowledged; stop everything (fleet, plugin, bridge,
        store). {"all": s since t0 or None, "acked": n, "push": bytes, "result": bytes}."""
        n = len(self.fleet.devices)
        acked = await until(lambda: len(self.done) == n, timeout)
        t_all = time.monotonic() - t0
        push, result = await self.frame_sizes(store)
        await self.stop()
        await self.bridge.stop()
        await store.close()
        return {"all": t_all if acked else None, "acked": len(self.done), "push": push,
                "result": result}

    async def stop(self):
        if self._watcher is not None:
            self._watcher.cancel()
        if self.running is not None:
            self.running.cancel()
        await close_links(self.servers)
        await self.host.stop()
        if self.link is not None:
            await self.link.stop()
