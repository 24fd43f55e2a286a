"""OpenADR 3.0.1 / 3.1 for the SPOT bridge: the bridge as a VEN of an OpenADR 3 VTN.

    [plugins.openadr3]
    role = "aggregator"
    vtn_url = "https://vtn.example/openadr3/3.0.1"
    token_url = "https://vtn.example/openadr3/3.0.1/auth/token"   # default: <vtn_url>/auth/token
    client_id = "spot-ven"
    client_secret = "..."
    ven_name = "spot-aggregator"
    programs = ["residential-flex"]     # none: every program the VTN shows
    groups = ["program-a"]              # devices taking part (none: every device)
    poll_interval = 30                  # s; the fallback when notifications are on
    webhook_listen = "127.0.0.1:8093"   # take subscription notifications here (optional)

Entry point: openadr3 = "spot.cloud_bridge.plugins.openadr3:factory" in group
spot.bridge.plugins. Events map to the same plans and price frames as the
2.0b plugin (plugins/dr_translate.py). See docs/openadr3.md.
"""
from .ven import Ven, check_options, OPTIONS

__all__ = ["factory", "OpenAdr3Plugin", "Ven", "check_options", "OPTIONS"]


class OpenAdr3Plugin:
    def __init__(self, ctx):
        self.ctx = ctx
        self.ven = Ven(ctx, dict(ctx.options))

    async def start(self):
        await self.ven.start()

    async def stop(self):
        await self.ven.stop()

    async def on_event(self, event):
        await self.ven.on_bridge_event(event)


def factory(ctx):
    return OpenAdr3Plugin(ctx)
