"""A minimal bridge plugin, the one docs/plugins.md walks through.

It keeps the fleet's total active power from telemetry and, when it rises
above `limit_w`, blocks one consuming heat pump at a time (SG-Ready state 1)
with a one-hour temporary plan; when the total falls below 90 % of the
limit, it cancels those plans one at a time.
"""
from ...core.services import HEAT_PUMP

P = 1          # active power, the same object id in every profile
SG_READY = 6   # heat_pump.sg_ready
BLOCKED = 1
PLAN_ID = 4242


class PeakLimiter:
    def __init__(self, ctx):
        self.ctx = ctx
        self.limit = float(ctx.options.get("limit_w", 10000))
        self.power = {}        # device -> last p (W)
        self.heat_pumps = set()
        self.blocked = set()   # heat pumps this plugin sent a plan

    async def on_event(self, event):
        kind = event["type"]
        if kind == "device" and any(s[0] == HEAT_PUMP for s in event["services"]):
            self.heat_pumps.add(event["device"])
        elif kind == "telemetry" and str(P) in event["values"] and event["service"] >= 0x10:
            self.power[event["device"]] = event["values"][str(P)]
            await self._check(event["t"])

    async def _check(self, t):
        total = sum(self.power.values())
        if total > self.limit:
            for hp in sorted(self.heat_pumps - self.blocked):
                if self.power.get(hp, 0) > 0:
                    await self.ctx.push_plan(hp, PLAN_ID, int(t), int(t) + 3600, 50,
                                             {HEAT_PUMP: {SG_READY: BLOCKED}})
                    self.blocked.add(hp)
                    self.ctx.log.info("fleet at %.0f W > %.0f W: blocked %s", total, self.limit, hp)
                    return  # one at a time: wait for the next telemetry
        elif total < 0.9 * self.limit and self.blocked:
            hp = sorted(self.blocked)[0]
            await self.ctx.cancel_plan(hp, PLAN_ID)
            self.blocked.discard(hp)


def factory(ctx):
    return PeakLimiter(ctx)
