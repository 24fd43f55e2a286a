"""Retention never deletes silently: a prune says how many rows went and from
before when, in the log and in /metrics (bridge with a real SQLite store)."""
import asyncio
import logging

from test_bridge_service import heat_pump_on_bridge, T0
from spot.core.services import HEAT_PUMP


def test_a_retention_sweep_logs_and_counts_what_it_deleted(tmp_path, caplog):
    async def main():
        async with heat_pump_on_bridge(tmp_path, retention_days=1) as (bridge, local, clock, dev):
            await local.uplink("hp-1", dev.advance(int(T0) + 60))
            clock.t = T0 + 3 * 86400
            with caplog.at_level(logging.WARNING, logger="spot.bridge"):
                deleted = await bridge.prune()
            assert deleted > 0
            assert bridge.metrics.value("telemetry_pruned") == deleted
            assert "retention: deleted %d telemetry rows" % deleted in caplog.text
            assert await bridge.store.history("hp-1", HEAT_PUMP, 8) == []
    asyncio.run(main())


def test_a_retention_sweep_that_deletes_nothing_logs_nothing(tmp_path, caplog):
    async def main():
        async with heat_pump_on_bridge(tmp_path) as (bridge, local, clock, dev):
            await local.uplink("hp-1", dev.advance(int(T0) + 60))
            with caplog.at_level(logging.WARNING, logger="spot.bridge"):
                assert await bridge.prune() == 0
            assert "retention" not in caplog.text
    asyncio.run(main())
