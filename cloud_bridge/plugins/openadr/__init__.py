"""OpenADR 2.0b for the SPOT bridge: the bridge as one or more VENs of a VTN.

    [plugins.openadr]
    role = "aggregator"
    vtn_url = "https://vtn.example/OpenADR2/Simple/2.0b"
    ven_name = "spot-aggregator"
    cert = "ven.pem"  key = "ven.key"  ca = "vtn-ca.pem"
    vtn_fingerprint = "AB:CD:..."      # require messages signed by this VTN certificate
    groups = ["program-a"]             # devices taking part (none: every device)

or several VENs, each a table of the same keys over the top-level ones:

    [[plugins.openadr.vens]]
    ven_name = "feeder-12"
    groups = ["feeder-12"]

Entry point: openadr = "spot.cloud_bridge.plugins.openadr:factory" in
group spot.bridge.plugins. See docs/openadr.md.
"""
from .ven import Ven, check_options, OPTIONS

__all__ = ["factory", "OpenAdrPlugin", "Ven", "check_options", "OPTIONS"]


class OpenAdrPlugin:
    def __init__(self, ctx):
        self.ctx = ctx
        options = dict(ctx.options)
        vens = options.pop("vens", None)
        if vens is None:
            self.vens = [Ven(ctx, options)]
        else:
            if not isinstance(vens, list) or not vens or not all(isinstance(v, dict) for v in vens):
                raise ValueError("openadr: vens must be a list of tables")
            self.vens = [Ven(ctx, dict(options, **v)) for v in vens]
        names = [v.name for v in self.vens]
        if len(set(names)) != len(names):
            raise ValueError("openadr: ven_name must differ between VENs")

    async def start(self):
        for v in self.vens:
            await v.start()

    async def stop(self):
        for v in self.vens:
            await v.stop()

    async def on_event(self, event):
        for v in self.vens:
            await v.on_bridge_event(event)


def factory(ctx):
    return OpenAdrPlugin(ctx)
