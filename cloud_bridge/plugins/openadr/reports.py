"""The VEN's reports: measured power and energy of its devices, from the bridge's store.

Offered to the VTN at registration (oadrRegisterReport) as

- TELEMETRY_USAGE, report specifier "spot-usage": r_id "power" (powerReal, W,
  the sum of every device's latest active power p, + = consumption) and r_id
  "energy" (energyReal, Wh, the sum of the devices' energy counters, import
  minus export: a meter reading of the whole VEN);
- TELEMETRY_STATUS, report specifier "spot-status": r_id "online" (devices
  online) and r_id "reporting" (devices whose power is fresh enough to be in
  the sum).

Values come from the store's latest table (what devices reported and the
bridge stored), never from the models; a device whose last power is older
than `max_age` seconds is left out of the sum rather than counted stale.
"""
import dataclasses
import time
from datetime import timedelta

from ..dr_readings import aggregate, main_service  # noqa: F401  (main_service: re-exported)

USAGE_SPECIFIER = "spot-usage"
STATUS_SPECIFIER = "spot-status"


class Reports:
    """Report callbacks of one VEN, answering from one store pass per sampling time."""

    def __init__(self, store, members, clock=time.time, max_age=900.0):
        self.store = store
        self.members = members      # async () -> [store Device]
        self.clock = clock
        self.max_age = max_age
        self._cache = (None, None)

    async def snapshot(self):
        now = self.clock()
        t, snap = self._cache
        if t is not None and now - t < 0.5:
            return snap
        snap = await aggregate(self.store, await self.members(), now, self.max_age)
        self._cache = (now, snap)
        return snap

    def value(self, key):
        async def callback():
            return round((await self.snapshot())[key], 3)
        return callback

    def register(self, client, resource_id, min_period, max_period, duration=None):
        """Offer the reports through openleadr's add_report; returns the r_ids."""
        from openleadr import enums, objects
        rate = objects.SamplingRate(min_period=timedelta(seconds=min_period),
                                    max_period=timedelta(seconds=max_period), on_change=False)
        duration = timedelta(seconds=duration or max_period)
        usage = (("power", dataclasses.replace(enums.MEASUREMENTS.REAL_POWER), "W"),
                 ("energy", dataclasses.replace(enums.MEASUREMENTS.REAL_ENERGY), "Wh"))
        for r_id, measurement, unit in usage:
            client.add_report(self.value(r_id), resource_id, measurement=measurement, unit=unit,
                              report_specifier_id=USAGE_SPECIFIER, r_id=r_id,
                              report_name="TELEMETRY_USAGE", sampling_rate=rate,
                              report_duration=duration)
        for r_id in ("online", "reporting"):
            client.add_report(self.value(r_id), resource_id, report_specifier_id=STATUS_SPECIFIER,
                              r_id=r_id, report_name="TELEMETRY_STATUS", sampling_rate=rate,
                              report_duration=duration)
        return ["power", "energy", "online", "reporting"]
