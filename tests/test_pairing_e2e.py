"""Pairing end to end on 127.0.0.1: the bridge issues credentials, the device learns
its roster, a paired controller talks to the device directly with them.

A Bridge (SQLite store in tmp_path) with its CoapLink speaking OSCORE (built with
the keyring); a commissioned heat pump served by
serve_device (core.coap_binding.CoapDevice + core.coap_oscore + core.pairing)
registers over OSCORE. PairingService.pair() queues the sealed add_peer, the
bridge delivers it over the protected link, and aiocoap clients holding the
controller's half talk to the device's own CoAP port, bypassing the bridge.
Every server binds a free port and stops at the end of its test; every wait
has a timeout.
"""
import asyncio
import json
import time

import aiocoap
import cbor2
import pytest
from aiohttp import web, ClientSession
from aiocoap.oscore import FilesystemSecurityContext, NotAProtectedMessage
from aiocoap.transports.oscore import OSCOREAddress
from netutil import free_udp_port as free_port
from waiting import until

from spot.cloud_bridge import config as C
from spot.cloud_bridge.coap_link import CoapLink
from spot.cloud_bridge.http_api import make_app
from spot.cloud_bridge.pairing import Keyring, PairingService, kid_of
from spot.cloud_bridge.service import Bridge, BadRequest, Forbidden
from spot.cloud_bridge.store import open_store
from spot.core import frame as F
from spot.core import pairing as P
from spot.core.coap_binding import CF_SPOT
from spot.core.coap_oscore import OscoreServer
from spot.core.errors import MALFORMED, NOT_AUTHORISED
from spot.core.node import Node
from spot.core.oscore import SecurityContext
from spot.core.roster import Roster, AGGREGATOR, MONITOR
from spot.core.services import HEAT_PUMP as HP, SECURITY
from spot.ports.cpython.coap_transport import serve_device
from spot.profiles import heat_pump

DEVICE = "hp-1"
FLOW_SETPOINT = 7
OPERATOR = "operator"



def run_async(coro, timeout=40):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Site:
    """Bridge + OSCORE CoAP link + keyring, and one commissioned device served on UDP."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.clients = []

    async def start(self):
        config = C.load(None, data=str(self.tmp), offline_after=3600, command_timeout=5)
        self.store = await open_store(config.store_url)
        self.bridge = Bridge(config, self.store)
        await self.bridge.start()
        self.keyring = Keyring(str(self.tmp / "keys"))
        self.link = await CoapLink(self.bridge, "127.0.0.1", free_port(),
                                   keyring=self.keyring).start()
        self.pairing = PairingService(self.bridge, self.keyring)
        # commissioning: the device gets its half of the provisioning context
        half = self.keyring.commission(DEVICE)
        self.node = Node([heat_pump], DEVICE)
        self.node.set(HP, FLOW_SETPOINT, 21.5)
        bridge_ctx = SecurityContext(half["secret"], half["sender_id"], half["recipient_id"],
                                     half["salt"])
        self.oscore = OscoreServer([bridge_ctx], require=True)
        self.roster = Roster(max_peers=8)
        self.saved = []
        self.device_pairing = P.DevicePairing(
            self.node, self.oscore, self.roster, half["recipient_id"],
            P.wrap_key(half["secret"], half["salt"]), save=self.saved.append)
        self.dev = await serve_device(self.node, bridge=("127.0.0.1", self.link.server.port),
                                      oscore=self.oscore, bridge_kid=half["recipient_id"],
                                      lifetime=60)
        self.uri = "coap://127.0.0.1:%d" % self.dev.port
        assert await until(lambda: self.dev.device.registered)
        return self

    async def stop(self):
        for c in self.clients:
            await c.shutdown()
        self.dev.close()
        await self.link.stop()
        await self.bridge.stop()
        await self.store.close()
        self.keyring.close()
        assert self.dev.errors == 0, repr(self.dev.last_error)

    async def pair(self, controller, role):
        issued = await self.pairing.pair(OPERATOR, DEVICE, controller, role)
        await self.done(issued["command"])
        return issued

    async def done(self, command_id):
        async def finished():
            return (await self.store.get_command(command_id)).status not in (
                "queued", "claimed", "sent")
        assert await until(finished)
        cmd = await self.store.get_command(command_id)
        assert cmd.status == "done", (cmd.status, cmd.result)

    async def client(self, name, settings, uri=None):
        """An aiocoap client holding a controller's half for the device's URI (or uri)."""
        d = self.tmp / ("controller-" + name)
        d.mkdir()
        (d / "settings.json").write_text(json.dumps(settings))
        ctx = await aiocoap.Context.create_client_context()
        ctx.client_credentials[(uri or self.uri) + "/*"] = FilesystemSecurityContext(str(d))
        self.clients.append(ctx)
        return ctx

    @property
    def bus(self):
        return "coap://127.0.0.1:%d/s" % self.link.server.port

    async def restart_bridge(self, crash=False):
        """Stop the bridge and start it again on the same port, store and keyring folder;
        crash=True drops the keyring without persisting its replay windows (as a killed
        process would: the lock goes with the process, the state on disk stays)."""
        port = self.link.server.port
        await self.link.stop()
        await self.bridge.stop()
        if crash:
            for device in self.keyring.devices():
                ctx = self.keyring.context(device)
                ctx.lockfile.release()
                ctx.lockfile = None     # nothing is written back, not even when collected
        else:
            self.keyring.close()
        self.bridge = Bridge(self.bridge.config, self.store)
        await self.bridge.start()
        self.keyring = Keyring(str(self.tmp / "keys"))
        self.link = await CoapLink(self.bridge, "127.0.0.1", port, keyring=self.keyring).start()
        self.pairing = PairingService(self.bridge, self.keyring)

    async def request(self, ctx, code, path, payload=b""):
        msg = aiocoap.Message(code=code, uri=self.uri + path, payload=payload)
        return await asyncio.wait_for(ctx.request(msg).response, 10)


def scenario(tmp_path, body):
    async def main():
        site = await Site(tmp_path).start()
        try:
            await body(site)
        finally:
            await site.stop()
    run_async(main())


# ---- registration over OSCORE ---------------------------------------------------------------

def test_device_registers_over_oscore_and_the_bridge_answers_in_its_context(tmp_path):
    async def body(site):
        assert site.dev.device.registrations >= 1
        assert DEVICE in site.bridge.known
        assert isinstance(site.link.server.devices[DEVICE], OSCOREAddress)
        assert site.keyring.device_of(site.link.server.devices[DEVICE].security_context) == DEVICE
        reply = await site.link.request(DEVICE, F.encode(F.READ, HP, 5, [FLOW_SETPOINT]), 5)
        assert F.decode(reply) == (F.RESULT, HP, 5, {FLOW_SETPOINT: 215})
    scenario(tmp_path, body)


def test_a_plain_announce_claiming_a_commissioned_device_is_refused(tmp_path):
    async def body(site):
        route = site.link.server.devices[DEVICE]
        ctx = await aiocoap.Context.create_client_context()
        site.clients.append(ctx)
        msg = aiocoap.Message(code=aiocoap.POST, content_format=CF_SPOT, uri=site.bus,
                              payload=site.node.announce(77))
        resp = await asyncio.wait_for(ctx.request(msg).response, 10)
        assert resp.code == aiocoap.UNAUTHORIZED
        assert F.decode(resp.payload)[3][0] == NOT_AUTHORISED
        assert site.link.server.devices[DEVICE] is route
    scenario(tmp_path, body)


def test_an_announce_the_bridge_refuses_is_answered_4_00_and_registers_nothing(tmp_path):
    async def body(site):
        ctx = await aiocoap.Context.create_client_context()
        site.clients.append(ctx)
        for mid, body in ((80, {0: "hp-x"}), (81, {0: "", 1: []}), (82, [1, 2])):
            msg = aiocoap.Message(code=aiocoap.POST, content_format=CF_SPOT, uri=site.bus,
                                  payload=F.encode(F.ANNOUNCE, 0, mid, body))
            resp = await asyncio.wait_for(ctx.request(msg).response, 10)
            assert resp.code == aiocoap.BAD_REQUEST
            assert F.decode(resp.payload) == (F.ERROR, 0, mid,
                                              [MALFORMED, "ANNOUNCE needs {0: id, 1: services}"])
        assert sorted(site.link.server.devices) == [DEVICE] and site.bridge.known == {DEVICE}
    scenario(tmp_path, body)


def test_a_spoofed_plain_announce_does_not_redirect_the_next_command(tmp_path):
    async def body(site):
        spoofer = await aiocoap.Context.create_client_context()
        site.clients.append(spoofer)
        msg = aiocoap.Message(code=aiocoap.POST, content_format=CF_SPOT, uri=site.bus,
                              payload=site.node.announce(78))
        resp = await asyncio.wait_for(spoofer.request(msg).response, 10)
        assert resp.code == aiocoap.UNAUTHORIZED
        cmd = await site.bridge.submit(OPERATOR, DEVICE, HP, F.WRITE, {FLOW_SETPOINT: 260})
        await site.done(cmd.id)
        assert site.node.get(HP, FLOW_SETPOINT) == 26.0    # the real device got it
    scenario(tmp_path, body)


def test_two_commissioned_devices_get_distinct_kids_and_one_cannot_announce_as_the_other(tmp_path):
    async def body(site):
        half = site.keyring.commission("hp-2")
        assert half["sender_id"] != site.keyring.context(DEVICE).recipient_id
        # hp-2's half in an aiocoap client: a second device, or one taken over
        rogue = await site.client("hp-2", {
            "secret_hex": half["secret"].hex(), "salt_hex": half["salt"].hex(),
            "sender-id_hex": half["sender_id"].hex(),
            "recipient-id_hex": half["recipient_id"].hex()}, uri=site.bus[:-2])
        own = F.encode(F.ANNOUNCE, 0, 5, {0: "hp-2", 1: [[HP, 1, 0]]})
        msg = aiocoap.Message(code=aiocoap.POST, content_format=CF_SPOT, uri=site.bus,
                              payload=own)
        resp = await asyncio.wait_for(rogue.request(msg).response, 10)
        assert F.decode(resp.payload)[:3] == (F.RESULT, 0, 5)
        assert site.keyring.device_of(site.link.server.devices["hp-2"].security_context) == "hp-2"
        route = site.link.server.devices[DEVICE]
        msg = aiocoap.Message(code=aiocoap.POST, content_format=CF_SPOT, uri=site.bus,
                              payload=site.node.announce(79))
        resp = await asyncio.wait_for(rogue.request(msg).response, 10)
        assert resp.code == aiocoap.UNAUTHORIZED
        assert F.decode(resp.payload) == (F.ERROR, 0, 79,
                                          [NOT_AUTHORISED, "credentials of another device"])
        assert site.link.server.devices[DEVICE] is route
    scenario(tmp_path, body)


# ---- pairing provisions the device ----------------------------------------------------------

def test_pairing_provisions_the_device_roster_over_the_bridge(tmp_path):
    async def body(site):
        issued = await site.pair("phone", "aggregator")
        kid = bytes.fromhex(issued["kid"])
        assert site.roster.role(kid) == AGGREGATOR
        assert site.oscore.context(kid).sender_id == bytes.fromhex(
            issued["oscore"]["recipient-id_hex"])
        pairing = [p for p in await site.store.pairings(DEVICE) if p.controller == "phone"][0]
        assert (pairing.role, kid_of(pairing.credential)) == ("aggregator", kid)
        assert len(site.saved) == 1
    scenario(tmp_path, body)


def test_the_secret_is_stored_nowhere_on_the_bridge_in_clear(tmp_path):
    async def body(site):
        issued = await site.pair("phone", "aggregator")
        secret = issued["oscore"]["secret_hex"]
        cmd = await site.store.get_command(issued["command"])
        assert cmd.body[0] == P.ADD_PEER
        sealed = cmd.body[1]
        assert set(sealed) == {P.K_SEQ, P.K_KID, P.K_ROLE, P.K_NONCE, P.K_BOX}
        assert all(bytes.fromhex(secret) not in v for v in sealed.values() if isinstance(v, bytes))
        audit = await site.store.list_audit(target=DEVICE)
        assert [a.action for a in audit if a.action == "pair"] == ["pair"]
        assert secret not in repr(audit)
        for f in site.tmp.glob("bridge.db*"):
            data = f.read_bytes()
            assert bytes.fromhex(secret) not in data and secret.encode() not in data
        for f in (site.tmp / "keys").rglob("*"):
            if f.is_file():
                assert secret.encode() not in f.read_bytes()
    scenario(tmp_path, body)


def test_the_paired_phone_writes_a_set_point_directly_to_the_device(tmp_path):
    async def body(site):
        issued = await site.pair("phone", "aggregator")
        phone = await site.client("phone", issued["oscore"])
        r = await site.request(phone, aiocoap.PUT, "/heat_pump/flow_setpoint", cbor2.dumps(300))
        assert r.code == aiocoap.CHANGED
        assert site.node.get(HP, FLOW_SETPOINT) == 30.0
        r = await site.request(phone, aiocoap.GET, "/heat_pump/flow_setpoint")
        assert (r.code, cbor2.loads(r.payload)) == (aiocoap.CONTENT, 300)
    scenario(tmp_path, body)


def test_a_monitor_write_is_4_01_and_changes_nothing(tmp_path):
    async def body(site):
        issued = await site.pair("meter-app", "monitor")
        assert site.roster.role(bytes.fromhex(issued["kid"])) == MONITOR
        app = await site.client("meter-app", issued["oscore"])
        r = await site.request(app, aiocoap.GET, "/heat_pump/flow_setpoint")
        assert (r.code, cbor2.loads(r.payload)) == (aiocoap.CONTENT, 215)
        r = await site.request(app, aiocoap.PUT, "/heat_pump/flow_setpoint", cbor2.dumps(300))
        assert (r.code, r.payload) == (aiocoap.UNAUTHORIZED, b"not-authorised")
        assert site.node.get(HP, FLOW_SETPOINT) == 21.5
    scenario(tmp_path, body)


def test_after_unpair_the_phone_gets_4_01(tmp_path):
    async def body(site):
        issued = await site.pair("phone", "aggregator")
        phone = await site.client("phone", issued["oscore"])
        r = await site.request(phone, aiocoap.PUT, "/heat_pump/flow_setpoint", cbor2.dumps(300))
        assert r.code == aiocoap.CHANGED
        cmd = await site.pairing.unpair(OPERATOR, DEVICE, "phone")
        await site.done(cmd.id)
        assert site.roster.role(bytes.fromhex(issued["kid"])) is None
        with pytest.raises(NotAProtectedMessage) as e:
            await site.request(phone, aiocoap.PUT, "/heat_pump/flow_setpoint", cbor2.dumps(400))
        assert e.value.plain_message.code == aiocoap.UNAUTHORIZED
        assert e.value.plain_message.payload == b"Security context not found"
        assert site.node.get(HP, FLOW_SETPOINT) == 30.0
        assert "phone" not in [p.controller for p in await site.store.pairings(DEVICE)]
    scenario(tmp_path, body)


def test_an_unpaired_oscore_client_gets_4_01(tmp_path):
    async def body(site):
        await site.pair("phone", "aggregator")
        stranger = await site.client("stranger", {
            "secret_hex": (b"stranger-secret!" * 2).hex(), "salt_hex": "",
            "sender-id_hex": "7777", "recipient-id_hex": "01"})
        with pytest.raises(NotAProtectedMessage) as e:
            await site.request(stranger, aiocoap.PUT, "/heat_pump/flow_setpoint",
                               cbor2.dumps(300))
        assert e.value.plain_message.code == aiocoap.UNAUTHORIZED
        assert e.value.plain_message.payload == b"Security context not found"
        assert site.node.get(HP, FLOW_SETPOINT) == 21.5
    scenario(tmp_path, body)


def test_a_guessed_kid_with_the_wrong_secret_gets_4_00_and_changes_nothing(tmp_path):
    async def body(site):
        issued = await site.pair("phone", "aggregator")
        forged = dict(issued["oscore"], secret_hex=(b"not-the-secret!!" * 2).hex())
        thief = await site.client("thief", forged)
        with pytest.raises(NotAProtectedMessage) as e:
            await site.request(thief, aiocoap.PUT, "/heat_pump/flow_setpoint", cbor2.dumps(300))
        assert e.value.plain_message.code == aiocoap.BAD_REQUEST
        assert site.node.get(HP, FLOW_SETPOINT) == 21.5
    scenario(tmp_path, body)


# ---- who may pair ------------------------------------------------------------------------------

def test_an_aggregator_may_not_pair_and_nothing_is_provisioned(tmp_path):
    async def body(site):
        await site.pair("phone", "aggregator")
        before = dict(site.roster.roles)
        with pytest.raises(Forbidden):
            await site.pairing.pair("phone", DEVICE, "phone-2", "owner")
        assert site.roster.roles == before
        assert "phone-2" not in [p.controller for p in await site.store.pairings(DEVICE)]
        provisioning = [c for c in await site.store.list_commands(DEVICE)
                        if c.service == SECURITY]
        assert [(c.actor, c.status) for c in provisioning] == [(OPERATOR, "done")]
    scenario(tmp_path, body)


def test_an_aggregator_may_not_read_the_roster_through_the_bridge_the_owner_may(tmp_path):
    async def body(site):
        issued = await site.pair("phone", "aggregator")
        with pytest.raises(Forbidden):
            await site.bridge.submit("phone", DEVICE, SECURITY, F.READ, [P.PEERS])
        cmd = await site.bridge.submit(OPERATOR, DEVICE, SECURITY, F.READ, [P.PEERS])
        await site.done(cmd.id)
        peers = (await site.store.get_command(cmd.id)).result[P.PEERS]
        assert peers[bytes.fromhex(issued["kid"])] == AGGREGATOR
    scenario(tmp_path, body)


def test_pairing_a_device_without_provisioning_credentials_is_refused(tmp_path):
    async def body(site):
        with pytest.raises(BadRequest):
            await site.pairing.pair(OPERATOR, "hp-unknown", "phone", "owner")
    scenario(tmp_path, body)


# ---- a restarted bridge -----------------------------------------------------------------------

def test_a_restarted_bridge_reloads_the_keyring_and_keeps_provisioning(tmp_path):
    async def body(site):
        first = await site.pair("phone", "aggregator")
        await site.restart_bridge()     # orderly: the keyring is closed first
        assert site.keyring.devices() == [DEVICE]
        registrations = site.dev.device.registrations
        site.dev.device.register_now()
        site.dev.poke()
        assert await until(lambda: site.dev.device.registrations > registrations)
        second = await site.pair("meter-app", "monitor")
        assert site.roster.role(bytes.fromhex(second["kid"])) == MONITOR
        assert site.roster.role(bytes.fromhex(first["kid"])) == AGGREGATOR
        phone = await site.client("phone", first["oscore"])
        r = await site.request(phone, aiocoap.PUT, "/heat_pump/flow_setpoint", cbor2.dumps(250))
        assert r.code == aiocoap.CHANGED and site.node.get(HP, FLOW_SETPOINT) == 25.0
    scenario(tmp_path, body)


def test_after_a_bridge_crash_the_device_registers_again_with_echo_and_telemetry_continues(
        tmp_path):
    async def body(site):
        await site.restart_bridge(crash=True)
        sequence = json.loads((site.tmp / "keys" / DEVICE.encode().hex() / "sequence.json")
                              .read_text())
        assert sequence["received"] == "unknown"    # the replay window was lost
        registrations = site.dev.device.registrations
        t = int(time.time())
        site.dev.device.send_telemetry([F.encode(F.NOTIFY, HP, 0, [t, {8: 401}])])
        site.dev.poke()

        async def stored():
            return (await site.store.latest(DEVICE)).get((HP, 8)) == (401, t)
        assert await until(stored)
        assert site.dev.device.registrations == registrations + 1
        assert site.dev.device.outbox == []
        cmd = await site.bridge.submit(OPERATOR, DEVICE, HP, F.WRITE, {FLOW_SETPOINT: 270})
        await site.done(cmd.id)
        assert site.node.get(HP, FLOW_SETPOINT) == 27.0
    scenario(tmp_path, body)


def test_pairing_through_the_http_api_hands_out_credentials_once_and_provisions(tmp_path):
    async def body(site):
        site.bridge.pairing = site.pairing
        runner = web.AppRunner(make_app(site.bridge))
        await runner.setup()
        tcp = web.TCPSite(runner, "127.0.0.1", 0)
        await tcp.start()
        url = "http://127.0.0.1:%d/api/v1/devices/%s/pairings" % (
            runner.addresses[0][1], DEVICE)
        try:
            async with ClientSession() as http:
                async with http.post(url, json={"controller": "phone", "role": "aggregator"}) as r:
                    assert r.status == 201
                    answer = await r.json()
                async with http.get(url) as r:
                    listed = await r.json()
            assert set(answer["oscore"]) == {"secret_hex", "salt_hex", "sender-id_hex",
                                             "recipient-id_hex"}
            assert all("oscore" not in p for p in listed)  # given out once, not kept
            await site.done(answer["command"])
            phone = await site.client("phone", answer["oscore"])
            r = await site.request(phone, aiocoap.PUT, "/heat_pump/flow_setpoint",
                                   cbor2.dumps(455))
            assert r.code == aiocoap.CHANGED and site.node.get(HP, FLOW_SETPOINT) == 45.5
        finally:
            await runner.cleanup()
    scenario(tmp_path, body)
