"""Attacks on the bridge's device side, replayed against the real bridge on 127.0.0.1
(issue 13, items 1, 6, 8, 9, 10): real UDP datagrams to its CoAP port, a real DTLS
session (tinydtls), a real mosquitto broker; each bounded in count and time.

The attacker is RawCoap (tests/adversarial_peers.py), a test double that writes
datagrams byte by byte.
"""
import asyncio
import contextlib
import logging
import queue
import threading
import subprocess
import sys

import paho.mqtt.client as paho
import pytest

from adversarial_peers import HP, RawCoap, announce, bridge, code, mqtt_client, notify
from netutil import free_udp_ports
from waiting import until
from spot.cloud_bridge import config as C
from spot.cloud_bridge.registration import Refused, plain_identity
from spot.core import frame as F
from spot.core.node import Node
from spot.ports.cpython.dtls_link import connect_device_dtls, dtls_available
from spot.profiles import heat_pump

IDENTITY = "sim-fleet"
KEY = bytes.fromhex("5a17c0ffee0123456789abcdef012345")
need_dtls = pytest.mark.skipif(dtls_available() is not None, reason=str(dtls_available()))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def refusals(parts, reason):
    return parts.bridge.metrics.value("frames_rejected", reason=reason)


async def registered_over_dtls(parts, device="hp-1"):
    """A heat pump registered with the bridge over coaps:// (a real DTLS session)."""
    link = await connect_device_dtls(Node([heat_pump], device), "127.0.0.1",
                                     parts.coap_port + 1, IDENTITY.encode(), KEY)
    assert await until(lambda: parts.coap.route(device) is not None)
    return link


# ---------------------------------------------------------------- 1. device takeover

@need_dtls
def test_plain_announce_cannot_take_over_an_id_registered_over_dtls(tmp_path):
    async def main():
        async with bridge(tmp_path, psk={IDENTITY: KEY.hex()}) as parts:
            link = await registered_over_dtls(parts)
            try:
                route = parts.coap.route("hp-1")
                attacker = await RawCoap.open()
                c, payload = await attacker.post(announce("hp-1"), parts.coap_port)
                assert code(c) == "4.01"
                assert F.decode(payload)[3][0] == 6   # not-authorised
                assert parts.coap.route("hp-1") is route   # the route did not move
                assert (await parts.store.get_device("hp-1")).credential_ref == "dtls:" + IDENTITY
                c, _ = await attacker.post(notify(), parts.coap_port)
                assert code(c) == "4.01"      # and its telemetry is not taken either
                assert refusals(parts, "claim_refused") == 1
                attacker.close()
            finally:
                link.close()
    run(main())


@need_dtls
def test_another_psk_identity_cannot_take_over_an_id_registered_over_dtls(tmp_path):
    other_key = bytes.fromhex("0badc0de0badc0de0badc0de0badc0de")
    async def main():
        async with bridge(tmp_path, psk={IDENTITY: KEY.hex(), "other": other_key.hex()}) as parts:
            link = await registered_over_dtls(parts)
            route = parts.coap.route("hp-1")
            intruder = await connect_device_dtls(Node([heat_pump], "hp-1"), "127.0.0.1",
                                                 parts.coap_port + 1, b"other", other_key)
            try:
                assert await until(lambda: refusals(parts, "claim_refused") >= 1)
                assert parts.coap.route("hp-1") is route
                assert (await parts.store.get_device("hp-1")).credential_ref == "dtls:" + IDENTITY
            finally:
                intruder.close()
                link.close()
    run(main())


def test_plain_announce_cannot_take_over_an_id_registered_over_mqtt(tmp_path, broker):
    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port) as parts:
            device = mqtt_client(broker.port, "hp-9")
            try:
                device.publish("spot/v1/hp-9/announce", announce("hp-9"), qos=1, retain=True)
                assert await until(lambda: "hp-9" in parts.bridge.known)
                attacker = await RawCoap.open()
                c, _ = await attacker.post(announce("hp-9"), parts.coap_port)
                assert code(c) == "4.01"
                assert parts.bridge.routes["hp-9"] == "mqtt"
                assert parts.coap.route("hp-9") is None
                assert (await parts.store.get_device("hp-9")).credential_ref == "mqtt"
                attacker.close()
            finally:
                device.loop_stop()
                device.disconnect()
    run(main())


def test_open_policy_binds_a_plain_id_to_the_address_that_registered_it(tmp_path):
    async def main():
        async with bridge(tmp_path, reg_plain="open") as parts:
            device, restarted = await RawCoap.open(), await RawCoap.open()
            stranger = await RawCoap.open("127.0.0.2")
            c, _ = await device.post(announce("hp-1"), parts.coap_port)
            assert code(c) == "2.04"
            c, _ = await stranger.post(announce("hp-1"), parts.coap_port)
            assert code(c) == "4.01"
            assert parts.coap.route("hp-1")[1] == device.port
            c, _ = await restarted.post(announce("hp-1"), parts.coap_port)  # same IP, new port
            assert code(c) == "2.04"
            assert (await parts.store.get_device("hp-1")).credential_ref == "coap:127.0.0.1"
            for p in (device, restarted, stranger):
                p.close()
    run(main())


def test_plain_registration_off_refuses_a_plain_announce_and_stores_nothing(tmp_path):
    async def main():
        async with bridge(tmp_path, reg_plain="off") as parts:
            peer = await RawCoap.open()
            c, _ = await peer.post(announce("hp-1"), parts.coap_port)
            assert code(c) == "4.01"
            assert await parts.store.get_device("hp-1") is None
            assert refusals(parts, "plain_refused") == 1
            peer.close()
    run(main())


def test_loopback_policy_refuses_plain_registration_from_other_addresses():
    assert plain_identity("loopback", "127.0.0.1") == "coap:127.0.0.1"
    assert plain_identity("loopback", "::ffff:127.0.0.1") == "coap:127.0.0.1"
    assert plain_identity("open", "192.0.2.7") == "coap:192.0.2.7"
    with pytest.raises(Refused):
        plain_identity("loopback", "192.0.2.7")
    with pytest.raises(Refused):
        plain_identity("off", "127.0.0.1")


def test_a_repeated_refused_claim_is_counted_each_time_and_logged_once(tmp_path, caplog):
    async def main():
        async with bridge(tmp_path, reg_plain="open") as parts:
            owner, attacker = await RawCoap.open(), await RawCoap.open("127.0.0.3")
            await owner.post(announce("hp-1"), parts.coap_port)
            with caplog.at_level(logging.INFO):
                for _ in range(50):
                    c, _ = await attacker.post(announce("hp-1"), parts.coap_port)
                    assert code(c) == "4.01"
            lines = [r for r in caplog.records if "claim_refused" in r.getMessage()]
            assert len(lines) == 1
            assert refusals(parts, "claim_refused") == 50
            owner.close()
            attacker.close()
    run(main())


def test_coap_listens_on_loopback_by_default_like_http():
    cfg = C.load(None)
    assert cfg.coap_addr == ("127.0.0.1", 5683)
    assert cfg.http_addr[0] == "127.0.0.1"
    assert cfg.reg_plain == "loopback"


# ---------------------------------------------------------------- 10. reserved ids

@pytest.mark.parametrize("device", ["signal", "a+b", "a/b", "#", "$SYS", "x" * 65])
def test_reserved_device_ids_are_refused_over_plain_coap(tmp_path, device):
    async def main():
        async with bridge(tmp_path) as parts:
            peer = await RawCoap.open()
            c, _ = await peer.post(announce(device), parts.coap_port)
            assert code(c) == "4.00"
            assert await parts.store.list_devices() == []
            assert parts.coap.route(device) is None
            peer.close()
    run(main())


@need_dtls
def test_a_reserved_device_id_is_refused_over_dtls(tmp_path):
    async def main():
        async with bridge(tmp_path, psk={IDENTITY: KEY.hex()}) as parts:
            link = await connect_device_dtls(Node([heat_pump], "signal"), "127.0.0.1",
                                             parts.coap_port + 1, IDENTITY.encode(), KEY)
            try:
                assert await until(lambda: refusals(parts, "reserved_id") >= 1)
                assert await parts.store.list_devices() == []
            finally:
                link.close()
    run(main())


def test_a_reserved_device_id_is_never_registered_over_mqtt(tmp_path, broker):
    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port) as parts:
            client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="evil")
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            try:
                for device in ("signal", "$SYS"):
                    client.publish("spot/v1/%s/announce" % device, announce(device), qos=1)
                client.publish("spot/v1/ok-1/announce", announce("ok-1"), qos=1)
                assert await until(lambda: "ok-1" in parts.bridge.known)   # after the others
                assert [d.id for d in await parts.store.list_devices()] == ["ok-1"]
            finally:
                client.loop_stop()
                client.disconnect()
    run(main())


@need_dtls
def test_spot_bridge_prints_every_address_it_serves_one_line_each(tmp_path, broker):
    port = free_udp_ports(2)
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[bridge]\ncoap = "127.0.0.1:%d"\n[dtls]\npsk = { %s = "%s" }\n'
                   '[mqtt]\nurl = "mqtt://127.0.0.1:%d"\n' % (port, IDENTITY, KEY.hex(), broker.port))
    proc = subprocess.Popen([sys.executable, "-m", "spot.cli", "bridge", "--config", str(cfg),
                             "--http", "127.0.0.1:0", "--data", str(tmp_path / "d")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = queue.Queue()
    threading.Thread(target=lambda: [out.put(l.strip()) for l in proc.stdout], daemon=True).start()
    try:
        lines = []
        with contextlib.suppress(queue.Empty):
            while len(lines) < 5:
                lines.append(out.get(timeout=30))
    finally:
        proc.terminate()
        proc.wait(15)
    assert lines[0].startswith("SPOT bridge running: dashboard http://127.0.0.1:")
    assert lines[1].startswith("listening: http http://127.0.0.1:")
    assert lines[2] == ("listening: coap udp 127.0.0.1:%d (devices; plain CoAP registration: "
                        "loopback)" % port)
    assert lines[3] == "listening: coaps udp 127.0.0.1:%d (DTLS, 1 PSK identities)" % (port + 1)
    assert lines[4] == ("listening: mqtt client of mqtt://127.0.0.1:%d (devices through the "
                        "broker)" % broker.port)


# ---------------------------------------------------------------- 8. log amplification

def bad_utf8_path(mid):
    """POST, Uri-Path 0xff: 6 bytes (a new message id each: a repeat is a retransmission)."""
    return bytes([0x40, 0x02, mid >> 8, mid & 0xFF, 0xb1, 0xff])


def test_invalid_utf8_in_uri_path_is_counted_and_never_logs_a_traceback(tmp_path, caplog):
    async def main():
        async with bridge(tmp_path) as parts:
            attacker, device = await RawCoap.open(), await RawCoap.open()
            with caplog.at_level(logging.INFO):
                for i in range(200):
                    attacker.send(bad_utf8_path(i), parts.coap_port)
                assert await until(lambda: refusals(parts, "coap_unparsable") == 200)
                c, _ = await device.post(announce("hp-1"), parts.coap_port)  # still serving
                assert code(c) == "2.04"
            assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
            assert len([r for r in caplog.records if "coap_unparsable" in r.getMessage()]) == 1
            attacker.close()
            device.close()
    run(main())


def test_a_flood_of_malformed_frames_is_counted_each_and_logged_once(tmp_path, caplog):
    async def main():
        async with bridge(tmp_path) as parts:
            peer = await RawCoap.open()
            with caplog.at_level(logging.INFO):
                for i in range(100):
                    c, _ = await peer.post(bytes([0x17, 0, 0, i, 0xff, 0xff]), parts.coap_port)
                    assert code(c) == "4.00"
            assert refusals(parts, "malformed") == 100
            assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 1
            peer.close()
    run(main())


def test_aiocoap_warnings_for_unparsable_datagrams_are_rate_limited(tmp_path, caplog):
    from spot.cloud_bridge.app import quiet_library_loggers
    saved = {n: list(logging.getLogger(n).filters) for n in ("coap-server", "coap")}
    quiet_library_loggers()
    try:
        async def main():
            async with bridge(tmp_path, coap_fast=False) as parts:   # coap:// on aiocoap
                peer = await RawCoap.open()
                with caplog.at_level(logging.INFO):
                    for _ in range(100):
                        peer.send(bytes([0x40, 0x02, 0x00]), parts.coap_port)  # no header
                    await asyncio.sleep(0.5)
                    c, _ = await peer.post(announce("hp-1"), parts.coap_port)
                    assert code(c) == "2.04"
                lines = [r for r in caplog.records if r.name.startswith("coap")]
                assert len(lines) == 1, [r.getMessage() for r in lines]
                peer.close()
        run(main())
    finally:
        for n, filters in saved.items():
            logging.getLogger(n).filters[:] = filters


# ---------------------------------------------------------------- 9. store health

def damage_table(db, table):
    """Overwrite the pages of `table` and its indexes in the SQLite file with garbage, the
    way a failing disk or a stray write would, while the bridge has it open: the WAL is
    checkpointed first (so the pages live in the main file), and another connection's
    commit afterwards makes the bridge's connection drop its page cache."""
    import sqlite3
    c = sqlite3.connect(db, isolation_level=None)
    page = c.execute("PRAGMA page_size").fetchone()[0]
    roots = [r[0] for r in c.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = ? "
                                     "AND rootpage > 1", (table,))]
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(db, "r+b") as f:
        for root in roots:
            f.seek((root - 1) * page)
            f.write(b"\xaa" * page)
    c.execute("PRAGMA user_version = 7")
    c.close()


async def http_get(parts, path):
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.get(parts.http_url + path) as r:
            return r.status, await r.json()


def test_a_damaged_store_shows_in_health_and_its_telemetry_is_refused_not_acknowledged(tmp_path):
    async def main():
        async with bridge(tmp_path) as parts:
            device = await RawCoap.open()
            c, _ = await device.post(announce("hp-1"), parts.coap_port)
            c, _ = await device.post(notify(mid=1), parts.coap_port)
            assert code(c) == "2.04"
            assert (await http_get(parts, "/api/v1/health"))[0] == 200
            # the sweep reads the command queue; telemetry itself does not
            damage_table(str(tmp_path / "bridge" / "bridge.db"), "commands")

            async def unhealthy():
                return (await http_get(parts, "/api/v1/health"))[0] == 503
            assert await until(unhealthy, timeout=20)
            status, body = await http_get(parts, "/api/v1/health")
            assert body["status"] == "degraded" and "damaged" in body["store"]
            c, payload = await device.post(notify(mid=2), parts.coap_port)
            assert code(c) == "5.03"                    # busy: not stored, not acknowledged
            assert F.decode(payload)[3][0] == 8
            assert parts.bridge.metrics.value("telemetry_not_stored", transport="coap") == 1
            device.close()
    run(main())


def test_starting_on_a_damaged_database_says_what_is_wrong_and_how_to_recover(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "bridge.db").write_bytes(b"SQLite format 3\x00" + b"\xaa" * 4080)
    proc = subprocess.run([sys.executable, "-m", "spot.cli", "bridge", "--data", str(data),
                           "--http", "127.0.0.1:0", "--coap", "127.0.0.1:%d" % free_udp_ports(1),
                           "--plain-logs"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("spot bridge:")]
    assert len(lines) == 1, proc.stderr
    assert "bridge.db" in lines[0] and "damaged" in lines[0] and "recover" in lines[0]


# ---------------------------------------------------------------- 6. registration limits

def test_one_source_cannot_register_more_than_its_burst_of_new_ids(tmp_path):
    async def main():
        async with bridge(tmp_path, reg_source_burst=4) as parts:
            attacker = await RawCoap.open()
            codes = [code((await attacker.post(announce("fake-%d" % i), parts.coap_port))[0])
                     for i in range(12)]
            assert codes == ["2.04"] * 4 + ["5.03"] * 8
            assert len(await parts.store.list_devices()) == 4
            assert refusals(parts, "rate_source") == 8
            c, _ = await attacker.post(announce("fake-0"), parts.coap_port)   # a refresh is free
            assert code(c) == "2.04"
            attacker.close()
    run(main())


def test_all_sources_together_are_limited_in_new_ids(tmp_path):
    async def main():
        async with bridge(tmp_path, reg_total_burst=5, reg_total_per_second=0.01) as parts:
            peers = [await RawCoap.open() for _ in range(8)]
            codes = [code((await p.post(announce("d-%d" % i), parts.coap_port))[0])
                     for i, p in enumerate(peers)]
            assert codes == ["2.04"] * 5 + ["5.03"] * 3
            assert refusals(parts, "rate_total") == 3
            for p in peers:
                p.close()
    run(main())


def test_devices_over_plain_coap_are_capped(tmp_path):
    async def main():
        async with bridge(tmp_path, reg_max_plain=2) as parts:
            peers = [await RawCoap.open() for _ in range(3)]
            codes = [code((await p.post(announce("d-%d" % i), parts.coap_port))[0])
                     for i, p in enumerate(peers)]
            assert codes == ["2.04", "2.04", "5.03"]
            assert refusals(parts, "plain_cap") == 1
            for p in peers:
                p.close()
    run(main())


def test_an_allow_list_admits_only_the_ids_it_names(tmp_path):
    async def main():
        async with bridge(tmp_path, reg_allow=["hp-*", "meter-7"]) as parts:
            peer = await RawCoap.open()
            codes = [code((await peer.post(announce(d), parts.coap_port))[0])
                     for d in ("hp-1", "meter-7", "meter-8")]
            assert codes == ["2.04", "2.04", "4.01"]
            assert sorted(d.id for d in await parts.store.list_devices()) == ["hp-1", "meter-7"]
            peer.close()
    run(main())


# the ACL docs/security-transports.md recommends: each device user its own topics only
DEVICE_ACL = """user bridge
topic readwrite spot/v1/#

pattern write spot/v1/%u/#
pattern read spot/v1/%u/+/down/#
pattern read spot/v1/signal/#
"""


def test_with_the_documented_acl_an_mqtt_client_cannot_announce_another_device(tmp_path):
    from mosquitto import Broker
    d = tmp_path / "mosquitto"
    d.mkdir()
    broker = Broker(str(d), users={"bridge": "b-pw", "hp-1": "hp1-pw", "mallory": "m-pw"},
                    acl=DEVICE_ACL)
    broker.start()

    def client(user, password):
        return mqtt_client(broker.port, user, user, password)

    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://bridge:b-pw@127.0.0.1:%d" % broker.port) \
                as parts:
            device, mallory = client("hp-1", "hp1-pw"), client("mallory", "m-pw")
            try:
                device.publish("spot/v1/hp-1/announce", announce("hp-1", services=((HP, 1, 7),)),
                               qos=1, retain=True).wait_for_publish(5)
                assert await until(lambda: "hp-1" in parts.bridge.known)
                mallory.publish("spot/v1/hp-1/announce", announce("hp-1"), qos=1).wait_for_publish(5)
                mallory.publish("spot/v1/hp-1/10/up", notify(t=1700000000), qos=1) \
                    .wait_for_publish(5)
                mallory.publish("spot/v1/mallory/announce", announce("mallory"), qos=1)
                assert await until(lambda: "mallory" in parts.bridge.known)   # after the others
                assert (await parts.store.get_device("hp-1")).services == [[HP, 1, 7]]
                assert await parts.store.latest("hp-1") in ({}, [])   # mallory's value: dropped
                assert "denied" in broker.log_text().lower()
            finally:
                for c in (device, mallory):
                    c.loop_stop()
                    c.disconnect()
    try:
        run(main())
    finally:
        broker.stop()
