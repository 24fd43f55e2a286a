"""The operator's ingest bench against a bridge already running (docs/benchmarks.md):
`python3 bench/bridge_ingest.py --target=HOST:PORT --devices=N --seconds=S` registers
N devices over plain CoAP, sends NOTIFY frames, and prints what the bridge acknowledged;
what it acknowledged is stored. (A function check on a few devices, not a measurement.)
"""
import asyncio
import os
import subprocess
import sys

from adversarial_peers import bridge

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                     "bridge_ingest.py")


def test_the_ingest_bench_runs_against_a_running_bridge_and_its_frames_are_stored(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            r = await asyncio.to_thread(subprocess.run, [
                sys.executable, BENCH, "--target=127.0.0.1:%d" % parts.coap_port,
                "--devices=3", "--seconds=1", "--prefix=ops"], capture_output=True, text=True,
                timeout=120)
            assert r.returncode == 0, r.stderr
            row = [line for line in r.stdout.splitlines() if line.startswith("| 3 |")]
            assert len(row) == 1, r.stdout
            acked = int(row[0].split("|")[3])
            assert acked > 0
            assert sorted(d.id for d in await parts.store.list_devices()) == [
                "ops-00001", "ops-00002", "ops-00003"]
            assert parts.bridge.metrics.value("telemetry_rows") == acked * 21
    asyncio.run(main())
