"""A bridge with in-process simulated devices and a plugin context for the
IEC 61850 tests (the model and ACSI layer, without the MMS server)."""
import asyncio
import contextlib
import json
import os
import sys
import time

from spot.cloud_bridge import config as C
from spot.cloud_bridge.local_transport import LocalTransport
from spot.cloud_bridge.plugin_api import PluginContext
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store
from spot.core import frame as F
from spot.core.errors import OUT_OF_RANGE
from spot.core.services import TIME
from spot.ports.cpython.simulator import SimDevice


class FakeRefusingDevice:
    """Test double: a SimDevice that answers every WRITE to its profile's objects
    with ERROR out-of-range (a device whose own limits refuse what the profile
    allows); the bridge's clock set (service time) it takes like any device."""

    def __init__(self, sim):
        self.sim = sim
        self.node = sim.node
        self.writes = 0

    def announce(self, mid=0):
        return self.sim.announce(mid)

    def receive(self, frame, t_unix, peer=None):
        op, sid, mid, _ = F.decode(frame)
        if op == F.WRITE and sid != TIME:
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


# ------------------------------------------------------------------ the MMS server end to end

PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "iec61850_peers")


class MmsRig:
    """The bridge with the iec61850 plugin (loaded by its entry point), a `spot sim`
    Fleet over CoAP and, on the in-process transport, quiet SimDevices that send
    nothing unless asked (to take offline)."""

    def __init__(self, bridge, host, fleet, local, quiet):
        self.bridge, self.host, self.fleet, self.local, self.quiet = bridge, host, fleet, local, quiet
        self.plugin = host.plugins["iec61850"][0]

    @property
    def port(self):
        return self.plugin.bound_port

    @property
    def model(self):
        return self.plugin.acsi.model

    def domain(self, device):
        return self.model.by_device[device].domain

    async def commands(self, device):
        """The device's commands, but the plugin's own READ of its name plate."""
        return [c for c in await self.bridge.store.list_commands(device) if c.op != F.READ]


@contextlib.asynccontextmanager
async def mms_fleet(tmp_path, profiles, quiet=(), role="aggregator", telemetry=1, **options):
    """A running MmsRig whose fleet (profiles like {"battery": 1}) and quiet devices
    [(profile, id)] are all in the served model; everything stops after the block."""
    from netutil import free_udp_port
    from waiting import until
    from spot.cloud_bridge.coap_link import CoapLink
    from spot.cloud_bridge.plugin_api import PluginHost
    from spot.ports.cpython.fleet import Fleet
    from spot.ports.cpython.fleet_links import serve_fleet_coap, close_links
    cfg = C.load(None, data=str(tmp_path), offline_after=3600,
                 plugins={"iec61850": dict({"role": role, "port": 0}, **options)})
    store = await open_store(cfg.store_url)
    bridge = Bridge(cfg, store)
    await bridge.start()
    host = PluginHost(bridge, cfg.plugins).load()      # the entry point, as `spot bridge` does
    coap_port = free_udp_port()
    link = await CoapLink(bridge, "127.0.0.1", coap_port).start()
    await host.start()
    fleet = Fleet(profiles, seed=5, t0=int(time.time()), telemetry=telemetry)
    links, send = await serve_fleet_coap(fleet, bridge=("127.0.0.1", coap_port))
    running = asyncio.ensure_future(fleet.run(tick=0.2, on_frames=send))
    local = LocalTransport(bridge)
    rig = MmsRig(bridge, host, fleet, local, {})
    try:
        for profile, dev_id in quiet:
            d = SimDevice(profile, dev_id, seed=3, t0=int(time.time()))
            await local.connect(dev_id, d)
            await local.uplink(dev_id, d.advance(int(time.time())))
            rig.quiet[dev_id] = d
        ids = [d.device_id for d in fleet.devices] + list(rig.quiet)
        assert await until(lambda: rig.port and all(rig.plugin.serving(i) for i in ids), 60), \
            "the server never served every device"
        yield rig
    finally:
        running.cancel()
        await close_links(links)
        await host.stop()
        await link.stop()
        await bridge.stop()
        await store.close()


async def peer(name, port, steps, timeout=60, on_ready=None):
    """Run a peer client (tests/iec61850_peers/<name>.py) in its own process; its
    results (one per step). on_ready() is awaited when it prints READY."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, os.path.join(PEERS, name + ".py"), str(port), json.dumps(steps),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines = []
    try:
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            if not line:
                break
            if line.strip() == b"READY":
                if on_ready is not None:
                    await on_ready()
            else:
                lines.append(line)
        await asyncio.wait_for(proc.wait(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if not lines:
        raise AssertionError("%s gave no result: %s" % (name, (await proc.stderr.read())[-2000:]))
    return json.loads(lines[-1])
