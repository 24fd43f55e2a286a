"""Simulated devices register with the bridge over coaps:// (DTLS with a pre-shared
key, tinydtls through DTLSSocket): `spot sim --connect coaps://HOST:PORT --psk ID:HEX`.

Against the real bridge (running_bridge with [dtls] psk, CoAP and coaps:// on free
ports on 127.0.0.1): registration and telemetry over the session, the bridge's
commands back down the session the device opened, a wrong key that gets nothing in,
a restarted bridge that the device handshakes with again, DTLS records on the wire.
Needs the aiocoap[tinydtls] extra (DTLSSocket).
"""
import asyncio
import os
import contextlib
import subprocess
import sys
import time

import pytest

from netutil import free_udp_ports
from waiting import until
from spot.cloud_bridge import config as C
from spot.cloud_bridge.app import running_bridge
from spot.core import frame as F
from spot.core.services import HEAT_PUMP
from spot.ports.cpython.dtls_link import dtls_available, parse_psk
from spot.ports.cpython.fleet import Fleet
from spot.ports.cpython.fleet_links import connect_fleet_coaps, close_links

IDENTITY = "sim-fleet"
KEY = bytes.fromhex("5a17c0ffee0123456789abcdef012345")
WRONG_KEY = bytes.fromhex("5a17c0ffee0123456789abcdef012346")
SG_READY = 6             # heat_pump object 6 (sg_ready), writable
FLOW_TEMP = 11           # heat_pump object 11, in every telemetry NOTIFY

pytestmark = pytest.mark.skipif(dtls_available() is not None, reason=str(dtls_available()))


def bridge_config(tmp_path, port):
    return C.load(None, data=str(tmp_path / "bridge"), coap="127.0.0.1:%d" % port,
                  http="127.0.0.1:0", offline_after=3600, psk={IDENTITY: KEY.hex()})


@contextlib.asynccontextmanager
async def dtls_bridge(tmp_path, port=None):
    """A running bridge with the fleet's PSK; (parts, coaps port)."""
    for attempt in range(5):
        p = port or free_udp_ports(2)
        try:
            cm = running_bridge(bridge_config(tmp_path, p))
            parts = await cm.__aenter__()
            break
        except OSError:   # a probed port taken before the bind
            if port or attempt == 4:
                raise
    try:
        yield parts, p + 1
    finally:
        await cm.__aexit__(None, None, None)


@contextlib.asynccontextmanager
async def running_fleet(profiles, host, port, key=KEY, seed=5, link_options=None):
    fleet = Fleet(profiles, seed=seed, t0=int(time.time()), telemetry=2)
    links, send = await connect_fleet_coaps(fleet, host, port, IDENTITY.encode(), key,
                                            link_options=link_options)
    run = asyncio.ensure_future(fleet.run(tick=0.2, on_frames=send))
    try:
        yield fleet, links
    finally:
        run.cancel()
        await close_links(links)


def test_device_registers_over_coaps_and_its_telemetry_is_stored(tmp_path):
    async def main():
        async with dtls_bridge(tmp_path) as (parts, port):
            async with running_fleet({"heat_pump": 1}, "127.0.0.1", port) as (fleet, links):
                async def telemetry():
                    return (HEAT_PUMP, FLOW_TEMP) in await parts.store.latest("hp-0001")
                assert await until(telemetry)
                assert [d.id for d in await parts.store.list_devices()] == ["hp-0001"]
                remote = parts.coap.server.devices["hp-0001"]
                assert remote.scheme == "coaps"
                assert links["hp-0001"].stats["handshakes"] == 1
    asyncio.run(main())


def test_bridge_command_reaches_the_device_down_its_dtls_session(tmp_path):
    async def main():
        async with dtls_bridge(tmp_path) as (parts, port):
            async with running_fleet({"heat_pump": 2}, "127.0.0.1", port) as (fleet, links):
                async def registered():
                    return len(await parts.store.list_devices()) == 2
                assert await until(registered)
                cmd = await parts.bridge.submit("operator", "hp-0002", HEAT_PUMP, F.WRITE,
                                                {SG_READY: 3})

                async def done():
                    return (await parts.store.get_command(cmd.id)).status == "done"
                assert await until(done)
                assert fleet.by_id["hp-0002"].node.get(HEAT_PUMP, SG_READY) == 3
                assert fleet.by_id["hp-0001"].node.get(HEAT_PUMP, SG_READY) != 3
                # each device its own session: the bridge knows two distinct coaps remotes
                remotes = [parts.coap.server.devices[d] for d in ("hp-0001", "hp-0002")]
                assert remotes[0].hostinfo != remotes[1].hostinfo
    asyncio.run(main())


def test_device_with_a_wrong_key_does_not_register_and_nothing_is_stored(tmp_path):
    async def main():
        async with dtls_bridge(tmp_path) as (parts, port):
            options = {"handshake_timeout": 1.0, "first_backoff": 0.5, "max_backoff": 1.0}
            async with running_fleet({"heat_pump": 1}, "127.0.0.1", port, key=WRONG_KEY,
                                     link_options=options) as (fleet, links):
                link = links["hp-0001"]

                async def failed_twice():
                    return link.stats["failures"] >= 2
                assert await until(failed_twice, timeout=10)
                assert link.stats["handshakes"] == 0
                assert "handshake" in link.last_error and "failed" in link.last_error
                assert not link.device.registered
                # back-off, not a busy loop: a few flights a second at most
                assert link.stats["tx"] < 60
            assert await parts.store.list_devices() == []
            assert parts.coap.server.devices == {}
            assert await parts.store.latest("hp-0001") == {}
    asyncio.run(main())


def test_device_handshakes_again_and_reregisters_after_the_bridge_restarts(tmp_path):
    async def main():
        options = {"silence": 2.0, "first_backoff": 0.3, "max_backoff": 1.0,
                   "handshake_timeout": 2.0}
        async with contextlib.AsyncExitStack() as stack:
            first = dtls_bridge(tmp_path)
            parts, port = await first.__aenter__()
            try:
                _, links = await stack.enter_async_context(
                    running_fleet({"heat_pump": 1}, "127.0.0.1", port, link_options=options))
                assert await until(lambda: _known(parts, "hp-0001"))
            finally:
                await first.__aexit__(None, None, None)
            # a new bridge on the same ports knows no DTLS session and no route
            async with dtls_bridge(tmp_path, port - 1) as (parts, _):
                assert await until(lambda: _known(parts, "hp-0001"), timeout=20)
                link = links["hp-0001"]
                assert link.stats["handshakes"] >= 2
                assert link.stats["lost"] + link.stats["failures"] >= 1
    asyncio.run(main())


def test_bridge_forgets_a_session_the_device_closed_and_a_command_to_it_fails_at_once(tmp_path):
    async def main():
        async with dtls_bridge(tmp_path) as (parts, port):
            async with running_fleet({"heat_pump": 1}, "127.0.0.1", port):
                assert await until(lambda: _known(parts, "hp-0001"))
            # the device said close_notify: no session left to send the command down
            t = time.monotonic()
            cmd = await parts.bridge.submit("operator", "hp-0001", HEAT_PUMP, F.WRITE,
                                            {SG_READY: 3})

            async def finished():
                return (await parts.store.get_command(cmd.id)).status in (
                    "done", "error", "timeout", "expired")
            assert await until(finished, timeout=10)
            got = await parts.store.get_command(cmd.id)
            assert got.status == "timeout" and "unreachable" in str(got.result)
            assert time.monotonic() - t < 5     # not a command_timeout wait for a dead session
    asyncio.run(main())


async def _known(parts, device):
    return device in parts.coap.server.devices


class Relay(asyncio.DatagramProtocol):
    """A UDP relay between one device and the bridge that records every datagram."""

    def __init__(self, target):
        self.target = target
        self.client = None
        self.seen = []          # (direction, datagram)
        self.upstream = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if addr == self.target:
            self.seen.append(("down", data))
            if self.client is not None:
                self.transport.sendto(data, self.client)
        else:
            self.client = addr
            self.seen.append(("up", data))
            self.transport.sendto(data, self.target)


def test_datagrams_on_the_wire_are_dtls_records_not_plaintext_coap(tmp_path):
    async def main():
        async with dtls_bridge(tmp_path) as (parts, port):
            loop = asyncio.get_running_loop()
            transport, relay = await loop.create_datagram_endpoint(
                lambda: Relay(("127.0.0.1", port)), local_addr=("127.0.0.1", 0))
            relay_port = transport.get_extra_info("sockname")[1]
            try:
                async with running_fleet({"heat_pump": 1}, "127.0.0.1", relay_port):
                    async def telemetry():
                        return (HEAT_PUMP, FLOW_TEMP) in await parts.store.latest("hp-0001")
                    assert await until(telemetry)
                    cmd = await parts.bridge.submit("operator", "hp-0001", HEAT_PUMP,
                                                    F.WRITE, {SG_READY: 1})

                    async def done():
                        return (await parts.store.get_command(cmd.id)).status == "done"
                    assert await until(done)
            finally:
                transport.close()
            kinds = {(way, d[0]) for way, d in relay.seen}
            # handshake (22), change cipher spec (20), application data (23), maybe alerts (21)
            assert {k for _, k in kinds} <= {20, 21, 22, 23}
            assert ("up", 23) in kinds and ("down", 23) in kinds
            for way, d in relay.seen:
                # DTLS record version 1.2, or 1.0 in the first ClientHello (RFC 6347 4.1);
                # plaintext CoAP would start 0x40-0x7f (version 1)
                assert d[1:3] in (b"\xfe\xfd", b"\xfe\xff")
                assert b"hp-0001" not in d       # the ANNOUNCE's device id is not readable
    asyncio.run(main())


def run_cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "spot.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_cli_refuses_coaps_without_a_psk():
    r = run_cli("sim", "heat_pump", "--connect", "coaps://127.0.0.1:5684", "--duration", "1")
    assert r.returncode == 2
    assert "--psk" in r.stderr and "coaps://" in r.stderr


def test_cli_refuses_a_psk_key_that_is_not_hex():
    r = run_cli("sim", "heat_pump", "--connect", "coaps://127.0.0.1:5684", "--psk",
                "sim-fleet:not-hex", "--duration", "1")
    assert r.returncode == 2
    assert "hex" in r.stderr


def test_cli_takes_the_psk_from_spot_psk_in_the_environment(tmp_path):
    async def main():
        async with dtls_bridge(tmp_path) as (parts, port):
            env = dict(os.environ, SPOT_PSK="stranger:%s" % KEY.hex())
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "spot.cli", "sim", "heat_pump", "--connect",
                "coaps://127.0.0.1:%d" % port, "--duration", "2", env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 1          # it tried that key: no "needs a key" (2)
            assert b"fatal alert" in err         # the bridge refused the unknown identity
    asyncio.run(main())


def test_parse_psk_takes_identity_and_hex_key():
    assert parse_psk("plant:7:00ff") == (b"plant:7", b"\x00\xff")
    for bad in ("", "nokey", ":00ff", "id:", "id:0g"):
        with pytest.raises(ValueError):
            parse_psk(bad)


def test_cli_sim_count_devices_register_each_over_its_own_session(tmp_path):
    async def main():
        async with dtls_bridge(tmp_path) as (parts, port):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "spot.cli", "sim", "heat_pump", "--count", "2",
                "--connect", "coaps://127.0.0.1:%d" % port,
                "--psk", "%s:%s" % (IDENTITY, KEY.hex()), "--duration", "15",
                "--speed", "60", "--tick", "0.2", "--telemetry", "5",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                async def both():
                    if len(parts.coap.server.devices) != 2:
                        return False
                    for d in ("hp-0001", "hp-0002"):
                        if (HEAT_PUMP, FLOW_TEMP) not in await parts.store.latest(d):
                            return False
                    return True
                assert await until(both, timeout=20)
                remotes = list(parts.coap.server.devices.values())
                assert all(r.scheme == "coaps" for r in remotes)
                assert remotes[0].hostinfo != remotes[1].hostinfo
            finally:
                if proc.returncode is None:
                    proc.terminate()
                await asyncio.wait_for(proc.wait(), 10)
    asyncio.run(main())


def test_cli_says_so_and_exits_1_when_no_device_gets_a_session(tmp_path):
    async def main():
        async with dtls_bridge(tmp_path) as (parts, port):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "spot.cli", "sim", "heat_pump", "--connect",
                "coaps://127.0.0.1:%d" % port, "--psk", "stranger:%s" % KEY.hex(),
                "--duration", "2", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 1
            assert b"1 of 1 devices never got a DTLS session" in err
            assert b"fatal alert" in err     # the bridge refused the unknown identity
            assert parts.coap.server.devices == {}
    asyncio.run(main())
