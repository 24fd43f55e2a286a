"""The bridge's sampler of the fleet power series (store_fleet.sample_power).

Once every store_fleet.SAMPLE_EVERY seconds of the bridge's clock (checked every
`every` wall seconds, so a simulated clock running faster samples as often as
it needs), one point per profile goes into the store; points older than the
telemetry retention are deleted with it. A store failure is the sweep's to
report (Bridge.store_failed); the sampler logs it and tries again next time.
"""
import asyncio
import logging

from . import store_fleet as F

log = logging.getLogger("spot.fleet")


async def sample_forever(bridge, every=1.0):
    last = None
    while True:
        now = bridge.clock()
        if last is None or now - last >= F.SAMPLE_EVERY or now < last:
            try:
                await F.sample_power(bridge.store, now)
                await F.prune_power(bridge.store, max(0, now - bridge.config.retention_days * 86400))
                last = now
            except Exception as e:   # a sampler reports and goes on; the sweep reports the store
                log.warning("fleet power sample failed: %s", e)
        await asyncio.sleep(every)
