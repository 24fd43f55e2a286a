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
from bridge_process import bridges  # noqa: F401  (a fixture)

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


FANOUT = os.path.join(os.path.dirname(BENCH), "bridge_fanout.py")


def fan_out(bridge, n):
    return subprocess.run([sys.executable, FANOUT, "--target=127.0.0.1:%d" % bridge.coap_port,
                           "--api=%s" % bridge.url, "--devices=%d" % n, "--prefix=ops"],
                          capture_output=True, text=True, timeout=120)


def test_the_fanout_bench_runs_against_a_running_bridge_and_every_device_gets_its_command_done(
        bridges):
    bridge = bridges(command_timeout=30)
    r = fan_out(bridge, 3)
    assert r.returncode == 0, r.stdout + r.stderr
    row = [line for line in r.stdout.splitlines() if line.startswith("| 3 |")]
    assert len(row) == 1, r.stdout
    assert "| 3 of 3 |" in row[0]
    assert bridge.metric("commands_total", status="done") == 3


def test_the_fanout_bench_runs_again_against_the_same_bridge_with_devices_it_knows(bridges):
    """A second run re-registers the same ids from new sockets and groups them anew:
    only its own devices get the second command."""
    bridge = bridges(command_timeout=30)
    assert fan_out(bridge, 3).returncode == 0
    r = fan_out(bridge, 2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| 2 of 2 |" in r.stdout
    assert bridge.metric("commands_total", status="done") == 5


def test_the_bench_fleets_first_message_ids_are_random_so_a_second_run_is_not_a_duplicate():
    """RFC 7252 4.4: a run against a bridge already running may reuse the ports of the
    run before; the same (address, message id) within 247 s would be answered from the
    bridge's duplicate cache with another exchange's token, and never match."""
    sys.path.insert(0, os.path.dirname(BENCH))
    from bridge_ingest import CoapFleet
    first, second = CoapFleet(64, ("127.0.0.1", 5683)), CoapFleet(64, ("127.0.0.1", 5683))
    assert first.mids != second.mids
    assert len(set(first.mids)) > 1
