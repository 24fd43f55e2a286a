"""IEEE 2030.5 / CSIP for the SPOT bridge: the bridge as an aggregator client of a
utility's 2030.5 server (Rule 21 "aggregator" model).

    [plugins.ieee2030_5]
    role = "aggregator"
    server_url = "https://utility.example:8443"
    cert = "aggregator.pem"  key = "aggregator.key"  ca = "utility-ca.pem"
    poll_interval = 0            # 0: the server's pollRate
    post_interval = 300          # DER status and meter mirror
    groups = ["rule21"]          # devices taking part (none: every device)

Modules: sep_xml.py (2030.5 XML <-> plain data), mapping.py (DERControl ->
SPOT plans, the event state machine), client.py (HTTPS with mutual TLS).
Entry point: ieee2030_5 = "spot.cloud_bridge.plugins.ieee2030_5:factory"
in group spot.bridge.plugins. See docs/ieee2030_5.md.
"""
from .client import Client, check_options, OPTIONS

__all__ = ["factory", "Ieee20305Plugin", "Client", "check_options", "OPTIONS"]


class Ieee20305Plugin:
    def __init__(self, ctx):
        self.ctx = ctx
        self.client = Client(ctx, ctx.options)

    async def start(self):
        await self.client.start()

    async def stop(self):
        await self.client.stop()

    async def on_event(self, event):
        await self.client.on_bridge_event(event)


def factory(ctx):
    return Ieee20305Plugin(ctx)
