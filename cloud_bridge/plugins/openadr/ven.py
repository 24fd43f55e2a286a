"""One OpenADR 2.0b VEN of the bridge: openleadr's client, made to run unattended,
and the glue that turns its events into plans for the VEN's devices.

SpotClient is openleadr's OpenADRClient with the parts a service needs
replaced: it registers (and re-registers) until the VTN answers, polls on its
own loop, verifies every incoming message (XML schema always; the VTN's
XML signature and certificate fingerprint when signing is required) and
hands rejections to the bridge, and keeps reports queued and resent in order
while the VTN is unreachable, so a VTN going away loses no report.

Ven owns one SpotClient. For each event it picks the targeted devices among
its own (groups / devices from the configuration), translates the signals
(translate.py) and answers optIn when some targeted device can act on them
(optOut otherwise), then a worker pushes the plans and price frames through
the plugin context: under the plugin's actor and role, through the bridge's
access control, recorded in the command and audit logs. Modified events
replace the plans (same plan id), cancelled ones withdraw them, and a
command from a device's owner that overrides a plan during an event opts
that device out (oadrCreateOpt, reason overrideStatus).
"""
import asyncio
import logging
import time
from datetime import datetime, timezone

import aiohttp
from lxml.etree import XMLSyntaxError
from openleadr import OpenADRClient, errors as oerrors, utils as outils
from openleadr.messaging import parse_message, validate_xml_schema, validate_xml_signature

from ....core import frame as F
from ....core.services import PLANS, PRICE
from ...service import Forbidden, BadRequest, allowed
from ...plugin_api import options_with_defaults
from ...tasks import cancel_and_wait
from ..dr_readings import device_views, taking_part
from ..plan_override import overridden_events, withdraw_event, withdraw_plan
from . import translate as T
from .reports import Reports

DSIG = "{http://www.w3.org/2000/09/xmldsig#}Signature"
LOG = logging.getLogger("spot.bridge.plugin.openadr")

OPTIONS = {
    # key: (default, meaning)
    "vtn_url": (None, "VTN base URL, e.g. https://vtn.example/OpenADR2/Simple/2.0b"),
    "ven_name": (None, "this VEN's name at the VTN"),
    "ven_id": ("", "venID if the VTN assigned one out of band"),
    "cert": ("", "PEM certificate: TLS client certificate and XML signing"),
    "key": ("", "PEM private key of cert"),
    "passphrase": ("", "passphrase of key"),
    "ca": ("", "PEM CA bundle that checks the VTN's TLS certificate"),
    "check_hostname": (True, "check the VTN certificate's host name"),
    "vtn_fingerprint": ("", "fingerprint of the VTN's signing certificate"),
    "require_signature": (None, "reject unsigned messages (default: when vtn_fingerprint is set)"),
    "groups": ([], "device groups taking part (with devices: none = every device)"),
    "devices": ([], "device ids taking part"),
    "primacy": (100, "plan primacy for events of unspecified priority"),
    "poll_interval": (0, "seconds between polls (0: what the VTN asks for)"),
    "report_min": (10, "shortest report sampling period offered, s"),
    "report_max": (3600, "longest report sampling period offered, s"),
    "report_max_age": (900, "telemetry older than this is left out of reports, s"),
    "currency": ("EUR", "currency of price signals without one"),
    "price_unit": ("currencyPerKWh", "unit of price signals without one"),
    "openleadr_log": ("warning", "log level of the openleadr library"),
}


def check_options(options):
    """Options with defaults filled in; ValueError for missing or unknown keys."""
    out = options_with_defaults("openadr", options, OPTIONS)
    for k in ("vtn_url", "ven_name"):
        if not isinstance(out[k], str) or not out[k]:
            raise ValueError("openadr: option %r is required" % k)
    if bool(out["cert"]) != bool(out["key"]):
        raise ValueError("openadr: cert and key go together")
    if out["require_signature"] is None:
        out["require_signature"] = bool(out["vtn_fingerprint"])
    if str(out["openleadr_log"]).upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("openadr: openleadr_log must be debug, info, warning or error")
    for k in ("groups", "devices"):
        if not isinstance(out[k], list) or not all(isinstance(x, str) for x in out[k]):
            raise ValueError("openadr: %s must be a list of names" % k)
    return out


class SpotClient(OpenADRClient):
    """openleadr's VEN client, run by its own loops (see the module docstring)."""

    def __init__(self, opts, on_reject=None):
        OpenADRClient.__init__(self, opts["ven_name"], opts["vtn_url"],
                               cert=opts["cert"] or None, key=opts["key"] or None,
                               passphrase=opts["passphrase"] or None,
                               vtn_fingerprint=opts["vtn_fingerprint"] or None,
                               show_fingerprint=False, ca_file=opts["ca"] or None,
                               ven_id=opts["ven_id"] or None,
                               check_hostname=opts["check_hostname"])
        self.require_signature = opts["require_signature"]
        self.poll_interval = float(opts["poll_interval"] or 0)
        self.on_reject = on_reject       # async (reason, detail)
        self.on_message = None           # (message type, xml bytes) for measurements
        self.registered = asyncio.Event()
        self.reports_sent = 0
        self.reports_dropped = 0
        self.rejected = 0
        self.unreachable = 0
        self.http_errors = 0
        self.link_up = None
        self._tasks = []
        self._cancelled_at = None

    # ------------------------------------------------------------ running

    async def start(self):
        self.loop = asyncio.get_running_loop()
        if not self.scheduler.running:
            self.scheduler.start()
        self._tasks = [asyncio.ensure_future(self._main()),
                       asyncio.ensure_future(self._report_queue_worker())]

    async def stop(self):
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.client_session is not None:
            await self.client_session.close()
            self.client_session = None

    def interval(self):
        if self.poll_interval > 0:
            return self.poll_interval
        pf = self.poll_frequency.total_seconds() if self.poll_frequency else 0
        return min(max(pf, 1.0), 86400.0)

    async def _main(self):
        delay = 0.5
        while True:
            try:
                if self.registration_id is None:
                    since = time.monotonic() - (self._cancelled_at or -1e9)
                    if since < 300:   # the VTN cancelled us: do not come straight back
                        await asyncio.sleep(5)
                        continue
                    if not await self._register():
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 30.0)
                        continue
                    delay = 0.5
                await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                LOG.exception("VEN loop")
            await asyncio.sleep(self.interval())

    async def _register(self):
        self.registered.clear()
        mtype, _ = await self.query_registration()
        if mtype is None:
            return False
        self.registration_id = None
        await self.create_party_registration(ven_id=self.ven_id)
        if not self.registration_id:
            return False
        self._drop_report_jobs()
        await self.register_reports(self.reports)
        await self.sync_events()
        self.registered.set()
        return True

    def _drop_report_jobs(self):
        for rr in self.report_requests or ():
            if rr.get("job") is not None:
                try:
                    rr["job"].remove()
                except Exception:
                    pass
        self.report_requests = []
        self.incomplete_reports = {}

    async def _poll_once(self):
        for _ in range(16):   # drain what the VTN has queued, then wait
            mtype, payload = await self.poll()
            if mtype is None or mtype == "oadrResponse":
                return
            await self._dispatch(mtype, payload)

    async def _dispatch(self, mtype, payload):
        if mtype == "oadrDistributeEvent":
            if payload.get("events"):
                await self._on_event(payload)
        elif mtype == "oadrRequestReregistration":
            await self.send_response(service="EiRegisterParty")
            self.registration_id = None
        elif mtype == "oadrCreateReport":
            if "report_requests" in payload:
                await self.create_report(payload)
        elif mtype == "oadrCancelReport":
            await self.cancel_report(payload)
        elif mtype == "oadrCancelPartyRegistration":
            resp = {"response_code": 200, "response_description": "OK",
                    "request_id": payload.get("request_id")}
            msg = self._create_message("oadrCanceledPartyRegistration", response=resp,
                                       ven_id=self.ven_id, registration_id=self.registration_id)
            await self._perform_request("EiRegisterParty", msg)
            self.registration_id = None
            self._drop_report_jobs()
            self._cancelled_at = time.monotonic()
        elif mtype == "oadrRegisterReport":
            msg = self._create_message("oadrRegisteredReport", report_requests=[],
                                       ven_id=self.ven_id,
                                       response={"response_code": 200,
                                                 "response_description": "OK",
                                                 "request_id": payload.get("request_id")})
            await self._perform_request("EiReport", msg)

    # ------------------------------------------------------------ the wire

    async def _ensure_client_session(self):
        if self.client_session is None:
            ssl_ctx = None
            if self.vtn_url.startswith("https:"):
                import ssl
                ssl_ctx = ssl.create_default_context(cafile=self.ca_file)
                ssl_ctx.check_hostname = self.check_hostname
                if self.cert_path:
                    ssl_ctx.load_cert_chain(self.cert_path, self.key_path, self.passphrase)
            self.client_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_ctx if ssl_ctx is not None else False),
                headers={"content-type": "application/xml"},
                timeout=aiohttp.ClientTimeout(total=30, sock_connect=5, sock_read=20))

    async def _perform_request(self, service, message):
        """POST one message; (type, payload) of a verified answer, (None, {}) otherwise."""
        await self._ensure_client_session()
        await self._execute_hooks("before_send_xml", outils.ensure_str(message))
        try:
            async with self.client_session.post("%s/%s" % (self.vtn_url, service),
                                                data=message) as resp:
                content = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            self.unreachable += 1
            if self.link_up is not False:
                LOG.warning("VTN %s unreachable: %s", self.vtn_url, e or e.__class__.__name__)
            self.link_up = False
            return None, {}
        if self.link_up is False:
            LOG.warning("VTN %s reachable again", self.vtn_url)
        self.link_up = True
        await self._execute_hooks("after_receive_xml", outils.ensure_str(content))
        if status != 200:
            self.http_errors += 1
            LOG.warning("VTN answered %s with HTTP %d: %s", service, status,
                        content[:200].decode("utf-8", "replace"))
            return None, {}
        if not content:
            return None, {}
        try:
            tree = validate_xml_schema(content)
        except XMLSyntaxError as e:
            await self._reject("malformed", str(e))
            return None, {}
        if self.require_signature:
            if tree.find(".//" + DSIG) is None:
                await self._reject("unsigned", "message has no XML signature")
                return None, {}
            try:
                validate_xml_signature(tree, cert_fingerprint=self.vtn_fingerprint)
            except oerrors.FingerprintMismatch as e:
                await self._reject("wrong_signer", str(e))
                return None, {}
            except Exception as e:   # InvalidSignature, replay protection, bad certificate
                await self._reject("bad_signature", "%s: %s" % (e.__class__.__name__, e))
                return None, {}
        try:
            mtype, payload = parse_message(content)
        except Exception as e:
            await self._reject("malformed", "%s: %s" % (e.__class__.__name__, e))
            return None, {}
        if self.on_message is not None:
            self.on_message(mtype, content)
        return mtype, payload

    async def _reject(self, reason, detail):
        self.rejected += 1
        if self.on_reject is not None:
            await self.on_reject(reason, detail)

    # ------------------------------------------------------------ reports

    async def create_report(self, response_payload):
        """openleadr's create_report, then each request keeps only its own r_ids
        (openleadr 0.5 collects the r_ids of all requests in one shared list)."""
        await OpenADRClient.create_report(self, response_payload)
        for rr in self.report_requests:
            spec = rr["report_specifier_id"]
            rr["r_ids"] = [r for r in rr["r_ids"] if (spec, r) in self.report_callbacks]

    async def _report_queue_worker(self):
        """Send queued reports in order; while the VTN is unreachable keep and retry them."""
        while True:
            report = await self.pending_reports.get()
            delay = 0.25
            while True:
                if self.registration_id is not None:
                    msg = self._create_message("oadrUpdateReport", ven_id=self.ven_id,
                                               request_id=outils.generate_id(), reports=[report])
                    mtype, payload = await self._perform_request("EiReport", msg)
                    if mtype == "oadrUpdatedReport":
                        self.reports_sent += 1
                        if payload.get("cancel_report"):
                            await self.cancel_report(payload["cancel_report"])
                        break
                    if mtype is not None:   # answered, but refused: retrying will not help
                        self.reports_dropped += 1
                        LOG.warning("VTN refused a report (%s)", mtype)
                        break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # ------------------------------------------------------------ opt

    async def opt_out(self, event_id, modification_number, resource_ids, reason="overrideStatus"):
        """oadrCreateOpt optOut of an event for some resources; True if the VTN acknowledged."""
        msg = self._create_message(
            "oadrCreateOpt", request_id=outils.generate_id(), ven_id=self.ven_id,
            opt_id=outils.generate_id(), opt_type="optOut", opt_reason=reason,
            event_id=event_id, modification_number=modification_number,
            targets=[{"resource_id": r} for r in resource_ids],
            created_date_time=datetime.now(timezone.utc))
        mtype, payload = await self._perform_request("EiOpt", msg)
        return mtype == "oadrCreatedOpt"


class Ven:
    """One VEN: its devices, its OpenADR client, its events and their plans."""

    def __init__(self, ctx, options):
        self.ctx = ctx
        self.opts = check_options(options)
        self.name = self.opts["ven_name"]
        self.log = ctx.log
        self.client = SpotClient(self.opts, on_reject=self._rejected)
        self.client.add_handler("on_event", self._on_oadr_event)
        self.client.add_handler("on_update_event", self._on_oadr_event)
        self.reports = Reports(ctx.bridge.store, self.members,
                               max_age=float(self.opts["report_max_age"]))
        self.reports.register(self.client, self.name, int(self.opts["report_min"]),
                              int(self.opts["report_max"]))
        self.active = {}       # event id -> {"mod", "plan_id", "devices": {id: plan}, "end"}
        self.opts_given = {}   # event id -> optIn / optOut
        self.queue = asyncio.Queue()
        self.applied = {}      # event id -> [monotonic received, monotonic plans queued, n]
        self._worker = None
        self._opt_tasks = set()

    # ------------------------------------------------------------ lifecycle

    async def start(self):
        logging.getLogger("openleadr").setLevel(self.opts["openleadr_log"].upper())
        self._worker = asyncio.ensure_future(self._work())
        await self.client.start()

    async def stop(self):
        await self.client.stop()
        await cancel_and_wait([self._worker] + list(self._opt_tasks))

    # ------------------------------------------------------------ devices

    async def members(self):
        """The store Devices of this VEN (groups / devices options; none: all)."""
        return taking_part(await self.ctx.devices(), self.opts)

    # ------------------------------------------------------------ events in

    def _prune(self, keep=256):
        """Forget events whose plans have all ended, and old bookkeeping."""
        now = time.time()
        for eid in [e for e, rec in self.active.items() if rec["end"] <= now]:
            del self.active[eid]
        for book in (self.applied, self.opts_given):
            while len(book) > keep:
                old = next(iter(book))
                if old in self.active:
                    break
                del book[old]

    async def _on_oadr_event(self, event):
        received = time.monotonic()
        self._prune()
        eid = None
        if isinstance(event, dict) and isinstance(event.get("event_descriptor"), dict):
            eid = event["event_descriptor"].get("event_id")
        try:
            ev = T.parse_event(event)
            if ev["status"] == "cancelled":
                await self.queue.put(("cancel", ev, None, None))
                await self._audit("openadr.event", {"event": ev["id"], "mod": ev["mod"],
                                                   "status": "cancelled"})
                return self.opts_given.get(ev["id"], "optIn")
            opt, plans, price = await self._prepare(ev)
        except T.EventError as e:
            await self._rejected("malformed_event", "event %s: %s" % (eid, e))
            self.opts_given[eid] = "optOut"
            return "optOut"
        self.opts_given[ev["id"]] = opt
        self.applied[ev["id"]] = [received, None, len(plans)]
        await self.queue.put(("apply", ev, plans, price))
        await self._audit("openadr.event", {"event": ev["id"], "mod": ev["mod"], "opt": opt,
                                           "devices": len(plans), "price": price is not None,
                                           "signals": [s[0] for s in ev["signals"]]})
        return opt

    async def _prepare(self, ev):
        """(opt, {device: plan}, price values or None) for a (new or modified) event."""
        members = await self.members()
        by_id = {d.id: d for d in members}
        groups = {}
        for t in ev["targets"]:
            g = t.get("group_id")
            for name in (g if isinstance(g, list) else [g] if g else []):
                groups[name] = [d.id for d in members if name in d.groups]
        ids = T.select_devices(ev["targets"], by_id, self.client.ven_id, groups)
        commands, has_price = T.acts_on(ev)
        now = time.time()
        plans = {}
        may_command = allowed(self.ctx.role, F.INVOKE, PLANS)
        if commands and may_command:
            views = await device_views(ev, ids, by_id, self.ctx.latest)
            plans = T.plans_for(ev, views, now, int(self.opts["primacy"]))
        price = None
        if has_price:
            price = T.price_values(ev, self.opts["currency"], self.opts["price_unit"])
        consumers = any(PRICE in (by_id[i].consumes or ()) for i in ids)
        opt = "optIn" if plans or (price is not None and consumers) else "optOut"
        return opt, plans, price

    # ------------------------------------------------------------ work

    async def _work(self):
        while True:
            kind, ev, plans, price = await self.queue.get()
            try:
                if kind == "cancel":
                    await self._withdraw(ev["id"], reason="cancelled")
                else:
                    await self._apply(ev, plans, price)
            except Exception:
                self.log.exception("openadr: event %s failed", ev["id"])

    async def _apply(self, ev, plans, price):
        if price is not None:
            await self.ctx.broadcast(PRICE, price)
        rec = self.active.get(ev["id"])
        before = set(rec["devices"]) if rec else set()
        pushed, refused = {}, []
        for device, plan in plans.items():
            try:
                await self.ctx.push_plan(device, *plan)
                pushed[device] = plan
            except (Forbidden, BadRequest, LookupError) as e:
                refused.append(device)
                self.log.warning("openadr: plan for %s refused: %s", device, e)
        if ev["id"] in self.applied:
            self.applied[ev["id"]][1] = time.monotonic()
        pid = T.plan_id(ev["id"])
        for device in sorted(before - set(pushed)):   # no longer targeted after a modification
            await self._cancel_plan(device, pid)
        if pushed:
            self.active[ev["id"]] = {"mod": ev["mod"], "plan_id": pid, "devices": pushed,
                                     "end": max(p[2] for p in pushed.values())}
        else:
            self.active.pop(ev["id"], None)
        if refused and self.opts_given.get(ev["id"]) == "optIn":
            self._spawn_opt_out(ev["id"], ev["mod"], refused, "notParticipating")

    async def _withdraw(self, event_id, reason):
        rec = await withdraw_event(self.ctx, self.active, event_id)
        if rec is None:
            return
        await self._audit("openadr.withdrawn", {"event": event_id, "reason": reason,
                                               "devices": len(rec["devices"])})

    async def _cancel_plan(self, device, pid):
        await withdraw_plan(self.ctx, device, pid)

    def _spawn_opt_out(self, event_id, mod, devices, reason):
        async def send():
            ok = await self.client.opt_out(event_id, mod, devices, reason)
            await self._audit("openadr.opt_out", {"event": event_id, "devices": devices,
                                                 "reason": reason, "acknowledged": ok})
        t = asyncio.ensure_future(send())
        self._opt_tasks.add(t)
        t.add_done_callback(self._opt_tasks.discard)

    # ------------------------------------------------------------ bridge events

    async def on_bridge_event(self, event):
        """Watch the command log for owners overriding a plan of a running event."""
        device = event.get("device")
        cmd, taken = await overridden_events(self.ctx, self.active, event, time.time())
        for eid, rec in taken:
            del rec["devices"][device]
            await self._cancel_plan(device, rec["plan_id"])
            await self._audit("openadr.override", {"event": eid, "device": device,
                                                  "by": cmd.actor, "command": cmd.id})
            self._spawn_opt_out(eid, rec["mod"], [device], "overrideStatus")

    # ------------------------------------------------------------ records

    async def _rejected(self, reason, detail):
        self.log.warning("openadr %s: rejected message from the VTN (%s): %s",
                         self.name, reason, detail)
        self.ctx.bridge.metrics.inc("openadr_rejected", reason=reason)
        await self._audit("openadr.rejected", {"reason": reason, "detail": detail[:500]})

    async def _audit(self, action, detail):
        await self.ctx.bridge.store.audit(self.ctx.actor, action, "ven:" + self.name, detail,
                                          self.ctx.bridge.clock())
