"""The OpenADR 2.0b plugin against a real openleadr VTN on a loopback port.

Devices are `spot sim` fleets talking CoAP to the bridge (the end-to-end
tests) or in-process SimDevices (where the transport is not the point).
The VTN is openleadr's OpenADRServer; the tests add what it lacks (an EiOpt
endpoint that records opt messages) and a middleware that can spoil one
event message on its way out (to see the VEN reject it).
"""
import asyncio
import contextlib
import logging
import re
import time
from datetime import datetime, timedelta, timezone

import pytest


from aiohttp import web  # noqa: E402
from netutil import free_tcp_port  # noqa: E402
from openleadr import OpenADRServer, objects, utils as outils  # noqa: E402
from openleadr.service import OptService, handler  # noqa: E402

from bridge_rig import PluginRig, local_devices, fleet_over_coap, run  # noqa: E402
from waiting import until
from spot.cloud_bridge import config as C  # noqa: E402
from spot.cloud_bridge.plugin_api import PluginHost  # noqa: E402
from spot.cloud_bridge.plugins.openadr import factory  # noqa: E402
from spot.cloud_bridge.plugins.openadr import translate as T  # noqa: E402
from spot.cloud_bridge.service import Bridge  # noqa: E402
from spot.cloud_bridge.store import open_store  # noqa: E402
from spot.core import frame as F  # noqa: E402
from spot.core.plans import PUSH, CANCEL  # noqa: E402
from spot.core.services import HEAT_PUMP, EV_CHARGER, ENERGY_MANAGER  # noqa: E402
from spot.ports.cpython.fleet import Fleet  # noqa: E402
from spot.ports.cpython.models_site import Vehicle  # noqa: E402

# openleadr 0.5 keys its aiohttp app with a plain string
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

VEN_ID = "ven-spot-1"
SG_READY = 6
CURRENT_LIMIT = 8
DSIG_RE = re.compile(rb"<ds:Signature.*</ds:Signature>", re.S)
LEVEL_RE = re.compile(rb"(<ei:payloadFloat>\s*<ei:value>)[^<]*")


def utcnow():
    return datetime.now(timezone.utc)


# ------------------------------------------------------------------ certificates

def make_pki(path):
    """A CA, a VTN certificate (127.0.0.1) and a VEN certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("spot test CA"))
          .issuer_name(name("spot test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now)
          .not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = {"ca": str(path / "ca.pem")}
    (path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who, serial in (("vtn", 2), ("ven", 3)):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name("spot test " + who))
             .issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(serial).not_valid_before(now)
             .not_valid_after(now + timedelta(days=1)))
        if who == "vtn":
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        (path / (who + ".pem")).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (path / (who + ".key")).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()))
        out[who + "_cert"] = str(path / (who + ".pem"))
        out[who + "_key"] = str(path / (who + ".key"))
        out[who + "_fingerprint"] = outils.certificate_fingerprint(
            cert.public_bytes(serialization.Encoding.PEM).decode())
    return out


# ------------------------------------------------------------------ the VTN

class RecordingOpts(OptService):
    """EiOpt, which openleadr's VTN does not serve: record and acknowledge oadrCreateOpt."""

    def __init__(self, vtn_id):
        OptService.__init__(self, vtn_id)
        self.received = []

    @handler("oadrCreateOpt")
    async def create_opt(self, payload):
        self.received.append(payload)
        return "oadrCreatedOpt", {"opt_id": payload["opt_id"]}


class Vtn:
    """openleadr's OpenADRServer with recording handlers, on a free loopback port."""

    def __init__(self, pki=None, poll=1):
        self.port = free_tcp_port()
        kw = {}
        if pki is not None:
            kw = dict(cert=pki["vtn_cert"], key=pki["vtn_key"], http_cert=pki["vtn_cert"],
                      http_key=pki["vtn_key"], http_ca_file=pki["ca"])
            self.ven_fingerprint = pki["ven_fingerprint"]
        else:
            self.ven_fingerprint = None
        self.server = OpenADRServer(vtn_id="SPOT-TEST-VTN", http_port=self.port,
                                    http_host="127.0.0.1", show_fingerprint=False,
                                    requested_poll_freq=timedelta(seconds=poll),
                                    ven_lookup=self.lookup, **kw)
        self.url = "%s://127.0.0.1:%d/OpenADR2/Simple/2.0b" % (
            "https" if pki else "http", self.port)
        self.registration = None
        self.reports = {}       # measurement -> [(datetime, value)]
        self.opt_types = {}     # event id -> [opt type]
        self.tamper = None      # "unsigned", "malformed", "level7": spoil the next event message
        self.tampered = 0
        self.server.add_handler("on_create_party_registration", self.on_register)
        self.server.add_handler("on_register_report", self.on_register_report)
        self.opts = RecordingOpts("SPOT-TEST-VTN")
        self.server.app.add_routes([web.post(self.server.http_path_prefix + "/EiOpt",
                                             self.opts.handler)])
        self.server.app.middlewares.append(self._middleware)

    def lookup(self, ven_id):
        if ven_id != VEN_ID or self.registration is None:
            return None
        return {"ven_id": VEN_ID, "ven_name": self.registration["ven_name"],
                "fingerprint": self.ven_fingerprint, "registration_id": "reg-1"}

    def on_register(self, payload):
        self.registration = payload
        return VEN_ID, "reg-1"

    def on_register_report(self, ven_id, resource_id, measurement, unit, scale,
                           min_sampling_interval, max_sampling_interval):
        series = self.reports.setdefault(measurement, [])
        return series.extend, max(min_sampling_interval, timedelta(seconds=1))

    @web.middleware
    async def _middleware(self, request, handler):
        resp = await handler(request)
        body = getattr(resp, "body", None)
        if self.tamper and isinstance(body, bytes) and b"oadrDistributeEvent" in body:
            if self.tamper == "unsigned":
                body = DSIG_RE.sub(b"", body)
            elif self.tamper == "level7":   # schema-valid, but no SIMPLE level
                body = LEVEL_RE.sub(rb"\g<1>7.0", body)
            else:   # an element the schema does not allow
                body = body.replace(b"<ei:eventID>", b"<ei:bogus>1</ei:bogus><ei:eventID>", 1)
            self.tamper = None
            self.tampered += 1
            return web.Response(body=body, content_type="application/xml")
        return resp

    async def start(self):
        await self.server.run()

    async def stop(self):
        await self.server.stop()

    def add_event(self, signal="SIMPLE", stype="level", values=(2.0,), start_in=2, step=6,
                  target=None, priority=None, startafter=None, measurement=None):
        start = utcnow() + timedelta(seconds=start_in)
        intervals = [objects.Interval(dtstart=start + timedelta(seconds=k * step),
                                      duration=timedelta(seconds=step), signal_payload=v)
                     for k, v in enumerate(values)]
        eid = outils.generate_id()
        self.opt_types[eid] = []
        self.server.add_event(VEN_ID, signal, stype, intervals, event_id=eid,
                              target=target or {"ven_id": VEN_ID},
                              callback=lambda ven_id, event_id, opt_type:
                              self.opt_types[event_id].append(opt_type))
        event = outils.find_by(self.server.events[VEN_ID], "event_descriptor.event_id", eid)
        if priority is not None:
            outils.setmember(event, "event_descriptor.priority", priority)
        if startafter is not None:
            outils.setmember(event, "active_period.tolerance",
                             {"startafter": timedelta(seconds=startafter)})
        if measurement is not None:
            outils.setmember(event.event_signals[0], "measurement", measurement)
        return eid, start


# ------------------------------------------------------------------ the bridge

class Rig(PluginRig):
    """A bridge with the openadr plugin (loaded by factory, not entry point)."""

    def __init__(self, tmp_path, vtn, role="aggregator", **options):
        PluginRig.__init__(self, tmp_path, "openadr", factory,
                           dict(role=role, vtn_url=vtn.url, ven_name="spot-test",
                                poll_interval=0.25, report_min=1, **options))
        self.vtn = vtn

    async def start(self, coap=False):
        await PluginRig.start(self, coap)
        self.ven = self.plugin.vens[0]
        return self

    async def registered(self):
        assert await until(lambda: self.ven.client.registered.is_set(), 10), "VEN did not register"


@contextlib.asynccontextmanager
async def openadr_rig(tmp_path, *local, pki=None, coap=False, **options):
    """A running VTN and a bridge with the plugin whose VEN has registered with it; `local`
    are (profile, id) SimDevices on the in-process transport, as rig.devs. Both stop after."""
    vtn = Vtn(pki=pki)
    await vtn.start()
    try:
        rig = await Rig(tmp_path, vtn, **options).start(coap=coap)
        try:
            rig.devs = await local_devices(rig, *local)
            await rig.registered()
            yield vtn, rig
        finally:
            await rig.stop()
    finally:
        await vtn.stop()


# ------------------------------------------------------------------ end to end

def test_event_is_opted_in_devices_follow_it_over_coap_and_the_vtn_sees_the_reduced_power(tmp_path):
    """VTN event -> opt in -> `spot sim` devices over CoAP change within the window ->
    the VTN's TELEMETRY_USAGE reports show the reduced power."""
    async def main():
        fleet = Fleet({"heat_pump": 2, "ev_charger": 1}, seed=5, t0=int(time.time()), telemetry=1)
        ev = fleet.by_id["ev-0001"]
        ev.model.plug_in(Vehicle(capacity_wh=60000.0, soc=30.0, max_current=32.0))
        async with openadr_rig(tmp_path, coap=True) as (vtn, rig), fleet_over_coap(rig, fleet):
            assert await until(lambda: len(vtn.reports.get("RealPower", [])) >= 3
                               and vtn.reports["RealPower"][-1][1] > 2000, 15), \
                "no power report with the charging EV before the event"
            eid, start = vtn.add_event("SIMPLE", "level", (2.0,), start_in=3, step=10)
            t_start = start.timestamp()
            assert await until(lambda: vtn.opt_types[eid], 10)
            assert vtn.opt_types[eid] == ["optIn"]
            # early in the window: heat pumps blocked (SG-Ready 1), the charger at 0 A
            heat_pumps = [fleet.by_id[hp].node for hp in ("hp-0001", "hp-0002")]

            def following():
                return all(n.get(HEAT_PUMP, SG_READY) == 1 for n in heat_pumps) and \
                    ev.node.get(EV_CHARGER, CURRENT_LIMIT) == 0
            assert await until(following, 15)
            assert time.time() < t_start + 4, "the devices followed the event only late in it"
            for hp in ("hp-0001", "hp-0002"):
                async def delivered(hp=hp):
                    return [c.status for c in await rig.plan_commands(hp)] == ["done"]
                assert await until(delivered, 5)
            assert await until(lambda: time.time() > t_start + 10.5, 15)
            # after it: the default plan governs again
            assert await until(lambda: fleet.by_id["hp-0001"].node.get(HEAT_PUMP, SG_READY) == 2, 5)
            series = vtn.reports["RealPower"]
            before = [v for t, v in series if t.timestamp() < t_start]
            during = [v for t, v in series if t_start + 5 <= t.timestamp() < t_start + 9.5]
            assert before and during, series
            assert max(during) < 0.3 * before[-1], (before[-3:], during)
            assert "RealEnergy" in vtn.reports and "Status" in vtn.reports
    run(main())


def test_cancelled_event_withdraws_the_plans_and_devices_return_to_their_default(tmp_path):
    async def main():
        fleet = Fleet({"heat_pump": 2}, seed=6, t0=int(time.time()), telemetry=5)
        async with openadr_rig(tmp_path, coap=True) as (vtn, rig), fleet_over_coap(rig, fleet):
            assert await until(lambda: len(rig.bridge.known) == 2, 10)
            eid, _ = vtn.add_event("SIMPLE", "level", (3.0,), start_in=0, step=120)
            pid = T.plan_id(eid)
            hps = [fleet.by_id[h] for h in ("hp-0001", "hp-0002")]
            assert await until(lambda: all(h.node.get(HEAT_PUMP, SG_READY) == 1 for h in hps), 10)
            assert all(h.node.plans.find(pid) is not None for h in hps)
            vtn.server.cancel_event(VEN_ID, eid)
            assert await until(lambda: all(h.node.get(HEAT_PUMP, SG_READY) == 2 for h in hps), 10)
            assert all(h.node.plans.find(pid) is None for h in hps)
            for h in ("hp-0001", "hp-0002"):
                cmds = sorted(await rig.plan_commands(h), key=lambda c: c.id)
                assert [c.body[0] for c in cmds] == [PUSH, CANCEL] and \
                    all(c.status == "done" for c in cmds)
            withdrawn = await rig.audit("openadr.withdrawn")
            assert [a.detail["reason"] for a in withdrawn] == ["cancelled"]
    run(main())


def test_vtn_going_away_and_coming_back_loses_no_report(tmp_path):
    async def main():
        async with openadr_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig):
            assert await until(lambda: len(vtn.reports.get("RealPower", [])) >= 2, 10)
            await vtn.stop()
            await asyncio.sleep(3.5)              # ~3 reports fall due while it is away
            queued = rig.ven.client.pending_reports.qsize()
            assert queued >= 2 and rig.ven.client.unreachable > 0
            await vtn.start()
            assert await until(lambda: rig.ven.client.pending_reports.qsize() == 0, 15)
            await asyncio.sleep(1.5)
            times = sorted(t.timestamp() for t, _ in vtn.reports["RealPower"])
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert len(times) >= 7 and max(gaps) < 1.6, gaps
            assert rig.ven.client.reports_dropped == 0
    run(main())


# ------------------------------------------------------------------ rejection

def test_unsigned_event_is_rejected_and_logged_when_signing_is_required(tmp_path, caplog):
    async def main():
        pki = make_pki(tmp_path)
        # registered over mutual TLS, every message signed both ways
        async with openadr_rig(tmp_path, ("heat_pump", "hp-1"), pki=pki, cert=pki["ven_cert"],
                               key=pki["ven_key"], ca=pki["ca"],
                               vtn_fingerprint=pki["vtn_fingerprint"]) as (vtn, rig):
            vtn.tamper = "unsigned"
            eid, _ = vtn.add_event("SIMPLE", "level", (2.0,), start_in=0, step=60)
            assert await until(lambda: vtn.tampered == 1, 10)
            assert await until(lambda: rig.ven.client.rejected >= 1, 5)
            await asyncio.sleep(1.0)
            assert [a.detail["reason"] for a in await rig.audit("openadr.rejected")] == ["unsigned"]
            assert "rejected message from the VTN (unsigned)" in caplog.text
            assert await rig.plan_commands("hp-1") == [] and vtn.opt_types[eid] == []
            assert rig.devs["hp-1"].node.get(HEAT_PUMP, SG_READY) == 2
            # the same event, signed, is then carried out
            vtn.server.events_updated[VEN_ID] = True
            assert await until(lambda: vtn.opt_types[eid] == ["optIn"], 10)
            assert await until(lambda: rig.devs["hp-1"].node.get(HEAT_PUMP, SG_READY) == 1, 5)
    with caplog.at_level(logging.WARNING):
        run(main())


def test_malformed_event_message_is_rejected_and_logged(tmp_path, caplog):
    async def main():
        async with openadr_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig):
            vtn.tamper = "malformed"
            eid, _ = vtn.add_event("SIMPLE", "level", (2.0,), start_in=0, step=60)
            assert await until(lambda: rig.ven.client.rejected >= 1, 10)
            await asyncio.sleep(0.5)
            rejected = await rig.audit("openadr.rejected")
            assert [a.detail["reason"] for a in rejected] == ["malformed"]
            assert "rejected message from the VTN (malformed)" in caplog.text
            assert rig.bridge.metrics.value("openadr_rejected", reason="malformed") == 1
            assert await rig.plan_commands("hp-1") == [] and vtn.opt_types[eid] == []
            assert rig.devs["hp-1"].node.get(HEAT_PUMP, SG_READY) == 2
    with caplog.at_level(logging.WARNING):
        run(main())


def test_event_with_an_impossible_level_is_opted_out_and_logged(tmp_path):
    async def main():
        async with openadr_rig(tmp_path, ("heat_pump", "hp-1")) as (vtn, rig):
            vtn.tamper = "level7"
            eid, _ = vtn.add_event("SIMPLE", "level", (2.0,), start_in=0, step=60)
            assert await until(lambda: vtn.opt_types[eid], 10)
            assert vtn.opt_types[eid] == ["optOut"]
            rejected = await rig.audit("openadr.rejected")
            assert [a.detail["reason"] for a in rejected] == ["malformed_event"]
            assert "0-3" in rejected[0].detail["detail"]
            assert await rig.plan_commands("hp-1") == []
            assert rig.devs["hp-1"].node.get(HEAT_PUMP, SG_READY) == 2
    run(main())


# ------------------------------------------------------------------ decisions

def test_event_no_targeted_device_can_act_on_is_opted_out(tmp_path):
    async def main():
        async with openadr_rig(tmp_path, ("pv_inverter", "pv-1"), ("meter", "meter-1")) \
                as (vtn, rig):
            eid, _ = vtn.add_event("SIMPLE", "level", (1.0,), start_in=0, step=60)
            assert await until(lambda: vtn.opt_types[eid], 10)
            assert vtn.opt_types[eid] == ["optOut"]
            assert await rig.plan_commands("pv-1") == []
    run(main())


def test_plugin_in_monitor_role_opts_out_and_commands_nothing(tmp_path):
    async def main():
        async with openadr_rig(tmp_path, ("heat_pump", "hp-1"), role="monitor") as (vtn, rig):
            eid, _ = vtn.add_event("SIMPLE", "level", (2.0,), start_in=0, step=60)
            assert await until(lambda: vtn.opt_types[eid], 10)
            assert vtn.opt_types[eid] == ["optOut"]
            assert await rig.store.list_commands("hp-1") == []
    run(main())


def test_event_targeting_one_resource_plans_only_that_device(tmp_path):
    async def main():
        async with openadr_rig(tmp_path, ("heat_pump", "hp-1"), ("heat_pump", "hp-2")) \
                as (vtn, rig):
            eid, _ = vtn.add_event("SIMPLE", "level", (1.0,), start_in=0, step=60,
                                   target={"resource_id": "hp-2"})
            assert await until(lambda: rig.devs["hp-2"].node.get(HEAT_PUMP, SG_READY) == 1, 10)
            assert vtn.opt_types[eid] == ["optIn"]
            assert rig.devs["hp-1"].node.get(HEAT_PUMP, SG_READY) == 2
            assert await rig.plan_commands("hp-1") == []
    run(main())


def test_priority_and_randomisation_reach_the_device_plans(tmp_path):
    async def main():
        heat_pumps = [("heat_pump", "hp-%d" % i) for i in range(8)]
        async with openadr_rig(tmp_path, *heat_pumps) as (vtn, rig):
            eid, start = vtn.add_event("SIMPLE", "level", (1.0,), start_in=5, step=600,
                                       priority=1, startafter=120)
            pid, t0 = T.plan_id(eid), int(start.timestamp())
            devs = rig.devs.values()
            assert await until(lambda: all(d.node.plans.find(pid) for d in devs), 10)
            plans = [d.node.plans.find(pid) for d in devs]
            assert all(p[3] == 199 for p in plans)                    # priority 1
            assert all(t0 <= p[1] <= t0 + 120 and p[2] - p[1] == 600 for p in plans)
            assert len({p[1] for p in plans}) > 1                     # spread, not one second
    run(main())


def test_modified_event_replaces_the_plan_on_the_device(tmp_path):
    async def main():
        async with openadr_rig(tmp_path, ("energy_manager", "em-1")) as (vtn, rig):
            node = rig.devs["em-1"].node
            eid, _ = vtn.add_event("SIMPLE", "level", (1.0,), start_in=0, step=120)
            pid = T.plan_id(eid)
            assert await until(lambda: node.plans.find(pid) is not None, 10)
            assert node.plans.find(pid)[4] == {ENERGY_MANAGER: {13: 300}}      # 30 % reduction
            event = outils.find_by(vtn.server.events[VEN_ID], "event_descriptor.event_id", eid)
            event.event_signals[0].intervals[0].signal_payload = 3.0
            outils.increment_event_modification_number(event)
            vtn.server.events_updated[VEN_ID] = True
            assert await until(lambda: node.plans.find(pid)[4] == {ENERGY_MANAGER: {13: 1000}}, 10)
            assert len(node.plans.temp) == 1
            cmds = await rig.plan_commands("em-1")
            assert len(cmds) == 2 and all(c.body[0] == PUSH and c.body[1][0] == pid for c in cmds)
    run(main())


def test_several_vens_each_take_only_their_groups(tmp_path):
    async def main():
        vtn = Vtn()
        rig = Rig(tmp_path, vtn)
        rig.options["vens"] = [{"ven_name": "north", "groups": ["north"]},
                               {"ven_name": "south", "groups": ["south"], "devices": ["hp-9"]}]
        await rig.start()
        await local_devices(rig, ("heat_pump", "hp-1"), ("heat_pump", "hp-2"),
                            ("heat_pump", "hp-9"))
        await rig.store.set_groups("hp-1", ["north"])
        await rig.store.set_groups("hp-2", ["south"])
        try:
            north, south = rig.plugin.vens
            assert [d.id for d in await north.members()] == ["hp-1"]
            assert [d.id for d in await south.members()] == ["hp-2", "hp-9"]
            assert north.client.ven_name == "north" and south.client.vtn_url == vtn.url
        finally:
            await rig.stop()
    run(main())


def test_owner_override_during_an_event_opts_that_device_out(tmp_path):
    async def main():
        async with openadr_rig(tmp_path, ("heat_pump", "hp-1"), ("heat_pump", "hp-2")) \
                as (vtn, rig):
            devs = rig.devs
            eid, _ = vtn.add_event("SIMPLE", "level", (2.0,), start_in=0, step=120)
            assert await until(lambda: all(d.node.get(HEAT_PUMP, SG_READY) == 1
                                           for d in devs.values()), 10)
            # the owner (the operator) forces hp-1 on with a plan of its own
            t = int(time.time())
            await rig.bridge.push_plan("operator", "hp-1", 77, t, t + 600, 250,
                                       {HEAT_PUMP: {SG_READY: 4}})
            assert await until(lambda: vtn.opts.received, 10)
            opt = vtn.opts.received[0]
            assert opt["opt_type"] == "optOut" and opt["opt_reason"] == "overrideStatus"
            assert opt["event_id"] == eid
            assert [tg.get("resource_id") for tg in opt["targets"]] == ["hp-1"]
            assert await until(lambda: devs["hp-1"].node.plans.find(T.plan_id(eid)) is None, 5)
            assert devs["hp-1"].node.get(HEAT_PUMP, SG_READY) == 4
            assert devs["hp-2"].node.get(HEAT_PUMP, SG_READY) == 1   # still in the event
            assert [a.detail["device"] for a in await rig.audit("openadr.override")] == ["hp-1"]
    run(main())


def test_price_event_reaches_price_consumers_as_one_forecast_frame(tmp_path):
    async def main():
        async with openadr_rig(tmp_path, ("energy_manager", "em-1"), ("heat_pump", "hp-1")) \
                as (vtn, rig):
            frames = []
            em = rig.devs["em-1"]
            receive = em.receive

            def spy(frame, t, peer=None):
                if peer is None:
                    frames.append(frame)
                return receive(frame, t, peer)
            em.receive = spy
            # EUR per kWh, one per quarter hour for 9 hours (a device ranks >= 33 slots)
            prices = [0.25, 0.31, 0.12, 0.40] * 9
            eid, start = vtn.add_event("ELECTRICITY_PRICE", "price", prices, start_in=0, step=900,
                                       measurement=objects.Measurement(
                                           name="currencyPerKWh", description="currencyPerKWh",
                                           unit="EUR", scale="none"))
            assert await until(lambda: vtn.opt_types[eid], 10)
            assert vtn.opt_types[eid] == ["optIn"]
            assert await until(lambda: frames, 5)
            await asyncio.sleep(0.3)
            assert len(frames) == 1
            op, sid, _, body = F.decode(frames[0])
            assert op == F.NOTIFY and sid == 0x05
            assert body[1][1] == [int(start.timestamp()), 900, [2500, 3100, 1200, 4000] * 9]
            assert body[1][2] == "EUR"
            assert em.model.price.values["price_forecast"][2][:4] == [250.0, 310.0, 120.0, 400.0]
            assert await rig.plan_commands("hp-1") == []   # prices command nothing
    run(main())


def test_unknown_option_stops_the_plugin_at_load(tmp_path):
    async def main():
        config = C.load(None, data=str(tmp_path))
        store = await open_store(config.store_url)
        bridge = Bridge(config, store)
        with pytest.raises(ValueError, match="vtn_urll"):
            PluginHost(bridge, {"openadr": {"vtn_urll": "http://x", "ven_name": "v"}}).load(
                factories={"openadr": factory})
        with pytest.raises(ValueError, match="vtn_url"):
            PluginHost(bridge, {"openadr": {"ven_name": "v"}}).load(factories={"openadr": factory})
        await store.close()
    run(main())
