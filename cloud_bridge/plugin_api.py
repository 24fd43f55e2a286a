"""The plugin interface: how OpenADR, IEC 61850, XMPP (and your own) plug in.

A plugin is a Python entry point in the group "spot.bridge.plugins" naming a
factory `factory(ctx) -> plugin`. It is enabled by a [plugins.<name>] table
in the bridge's TOML (its keys are ctx.options; `role` is the plugin's role
on every device, default "monitor"). The plugin object may define

    async start()          after the bridge started
    async stop()           before it stops
    async on_event(event)  every registry/telemetry/command event (a dict)

and acts only through ctx, under its own actor "plugin:<name>", with the
same access control and audit as any API caller.
"""
import asyncio
import logging
from importlib.metadata import entry_points

from .tasks import cancel_and_wait

GROUP = "spot.bridge.plugins"
log = logging.getLogger("spot.bridge.plugins")


def options_with_defaults(plugin, options, table):
    """A plugin's options with the defaults of `table` (name -> (default, help))
    filled in; ValueError naming any key the table does not know."""
    unknown = set(options) - set(table)
    if unknown:
        raise ValueError("%s: unknown option(s) %s (known: %s)"
                         % (plugin, ", ".join(sorted(unknown)), ", ".join(sorted(table))))
    return {k: options.get(k, d) for k, (d, _) in table.items()}


def member_filter(options):
    """Which devices a plugin acts for, from its `groups` and `devices` options: a
    predicate device -> bool (a device named in `devices` or in one of `groups`),
    or None when both are empty (every device)."""
    groups, ids = set(options.get("groups") or ()), set(options.get("devices") or ())
    if not groups and not ids:
        return None
    return lambda d: d.id in ids or not groups.isdisjoint(d.groups or ())


class PluginContext:
    def __init__(self, bridge, name, options):
        self.bridge = bridge
        self.name = name
        self.options = dict(options)
        self.role = self.options.pop("role", "monitor")
        self.actor = "plugin:" + name
        self.log = logging.getLogger("spot.bridge.plugin." + name)

    # reads
    async def devices(self):
        return await self.bridge.store.list_devices()

    async def latest(self, device):
        return await self.bridge.store.latest(device)

    async def history(self, device, service, obj, t_from=None, t_to=None, limit=1000):
        return await self.bridge.store.history(device, service, obj, t_from, t_to, limit)

    # commands, under the plugin's own actor
    async def submit(self, device, service, op, body=None, **kw):
        return await self.bridge.submit(self.actor, device, service, op, body, **kw)

    async def submit_group(self, group, service, op, body=None, **kw):
        return await self.bridge.submit_group(self.actor, group, service, op, body, **kw)

    async def push_plan(self, device, plan_id, start, expiry, primacy, entries):
        return await self.bridge.push_plan(self.actor, device, plan_id, start, expiry,
                                           primacy, entries)

    async def cancel_plan(self, device, plan_id):
        return await self.bridge.cancel_plan(self.actor, device, plan_id)

    async def broadcast(self, service, values, t=None):
        return await self.bridge.broadcast(self.actor, service, values, t)


class PluginHost:
    """Loads the enabled plugins and feeds them the bridge's events."""

    def __init__(self, bridge, enabled):
        self.bridge = bridge
        self.enabled = dict(enabled)
        self.plugins = {}   # name -> (plugin, ctx)
        self._tasks = []
        self._queues = []

    def load(self, factories=None):
        """Create every enabled plugin (factories: name -> factory, else entry points)."""
        found = factories if factories is not None else {
            ep.name: ep for ep in entry_points(group=GROUP)}
        for name, options in self.enabled.items():
            factory = found.get(name)
            if factory is None:
                raise LookupError("plugin %r is enabled but no entry point %s:%s exists"
                                  % (name, GROUP, name))
            if hasattr(factory, "load"):
                factory = factory.load()
            ctx = PluginContext(self.bridge, name, options or {})
            self.bridge.plugin_actors[ctx.actor] = ctx.role
            self.plugins[name] = (factory(ctx), ctx)
        return self

    async def start(self):
        now = self.bridge.clock()
        for name, (plugin, ctx) in self.plugins.items():
            for d in await self.bridge.store.list_devices():  # pair with devices known already
                if await self.bridge.store.role_of(d.id, ctx.actor) is None:
                    await self.bridge.store.add_pairing(d.id, ctx.actor, ctx.role, None, now)
            if hasattr(plugin, "start"):
                await plugin.start()
            if hasattr(plugin, "on_event"):
                queue = self.bridge.hub.subscribe()
                self._queues.append(queue)
                self._tasks.append(asyncio.ensure_future(self._feed(name, plugin, queue)))

    async def _feed(self, name, plugin, queue):
        while True:
            event = await queue.get()
            try:
                await plugin.on_event(event)
            except Exception:  # a plugin's bug must not stop the bridge
                log.exception("plugin %s failed on %s", name, event.get("type"))
                self.bridge.metrics.inc("plugin_errors", plugin=name)

    async def stop(self):
        await cancel_and_wait(self._tasks)   # their loops catch every plugin error
        for q in self._queues:
            self.bridge.hub.unsubscribe(q)
        self._tasks, self._queues = [], []
        for name, (plugin, _) in self.plugins.items():
            if hasattr(plugin, "stop"):
                try:
                    await plugin.stop()
                except Exception:
                    log.exception("plugin %s failed to stop", name)
