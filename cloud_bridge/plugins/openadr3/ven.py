"""One OpenADR 3 VEN of the bridge: registration, events -> plans, reports, notifications.

OpenADR 3 is state on the VTN, not messages: the VEN reads the programs it
follows and their events, and reconciles what the devices have with what
the VTN shows. A new or changed event (its content fingerprint differs) is
translated (translate.py -> dr_translate, the same plans as OpenADR 2.0b)
and its plans pushed through the plugin context (access control, command
and audit logs); an event that disappeared (deleted) has its plans
withdrawn; a price event is broadcast as one price-forecast frame.

Notifications (a subscription per program whose callback is the webhook)
are answered at once and applied by a worker right after; polling every poll_interval is the fallback and
catches deletions a notification missed. A malformed event is refused with
an audit record and changes nothing (the devices keep what they had); an
event already over is ignored. A device's owner overriding a plan during an
event takes that device out of the event (OpenADR 3 has no opt-out to tell
the VTN; the audit log records it). The VTN being unreachable or refusing
our credentials is logged once per outage; the bridge keeps serving.

Reports: for each applied event whose reportDescriptors ask for DEMAND or
USAGE, a report (one aggregated resource) gets an interval every
report_interval from the store's sums and is POSTed, then PUT whole, so a
VTN away for a while receives every interval when it comes back; once a
report holds REPORT_INTERVALS delivered intervals the next one starts anew.
"""
import asyncio
import logging
import secrets
import time

from ...service import Forbidden, BadRequest, allowed
from ...plugin_api import options_with_defaults
from ...tasks import cancel_and_wait
from ....core import frame as F
from ....core.services import PLANS, PRICE
from .. import dr_translate as D
from ..dr_readings import aggregate, device_views, main_service, taking_part
from ..plan_override import overridden_events, withdraw_event, withdraw_plan
from . import translate as T
from .client import VtnClient, VtnError, VtnUnreachable, AuthError
from .webhook import Webhook

LOG = logging.getLogger("spot.bridge.plugin.openadr3")
INBOX = 256     # notifications queued for the worker; past that the webhook answers 503
REPORT_INTERVALS = 288   # intervals per report (a day at 5 min); then a new report

OPTIONS = {
    # key: (default, meaning)
    "vtn_url": (None, "VTN base URL, e.g. https://vtn.example/openadr3/3.0.1"),
    "token_url": ("", "OAuth2 token URL (default: <vtn_url>/auth/token)"),
    "client_id": (None, "OAuth2 client id of this VEN"),
    "client_secret": (None, "OAuth2 client secret"),
    "scope": ("", "OAuth2 scope asked for (none: what the VTN grants)"),
    "ca": ("", "PEM CA bundle that checks an https VTN's certificate"),
    "ven_name": (None, "this VEN's venName at the VTN (created if missing)"),
    "programs": ([], "programName(s) followed (none: every program the VTN shows)"),
    "groups": ([], "device groups taking part (with devices: none = every device)"),
    "devices": ([], "device ids taking part"),
    "register_resources": (True, "create a VTN resource (resourceName = device id) per device"),
    "poll_interval": (30, "seconds between polls (the fallback when notifications are on)"),
    "webhook_listen": ("", "host:port where the bridge takes notifications, e.g. 127.0.0.1:8093"),
    "webhook_url": ("", "callback URL told to the VTN (default: http://<webhook_listen>/...)"),
    "report_interval": (60, "seconds between report intervals"),
    "report_max_age": (900, "telemetry older than this is left out of reports, s"),
    "primacy": (100, "plan primacy for events without a priority"),
    "currency": ("EUR", "currency of PRICE payloads whose descriptor names none"),
}


def check_options(options):
    """Options with defaults filled in; ValueError for missing, unknown or ill-typed keys."""
    out = options_with_defaults("openadr3", options, OPTIONS)
    for k in ("vtn_url", "ven_name", "client_id", "client_secret"):
        if not isinstance(out[k], str) or not out[k]:
            raise ValueError("openadr3: option %r is required" % k)
    if not out["vtn_url"].startswith(("http://", "https://")):
        raise ValueError("openadr3: vtn_url must be an http(s) URL")
    if not out["token_url"]:
        out["token_url"] = out["vtn_url"].rstrip("/") + "/auth/token"
    for k in ("programs", "groups", "devices"):
        if not isinstance(out[k], list) or not all(isinstance(x, str) for x in out[k]):
            raise ValueError("openadr3: %s must be a list of names" % k)
    for k in ("poll_interval", "report_interval", "report_max_age"):
        v = out[k]
        if type(v) is bool or not isinstance(v, (int, float)) or v <= 0:
            raise ValueError("openadr3: %s must be a positive number of seconds" % k)
    if out["webhook_listen"]:
        host, _, port = str(out["webhook_listen"]).rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("openadr3: webhook_listen must be host:port")
    return out


class Ven:
    """One OpenADR 3 VEN: its devices, its VTN client, its events and their plans."""

    def __init__(self, ctx, options):
        self.ctx = ctx
        self.opts = check_options(options)
        self.name = self.opts["ven_name"]
        self.log = ctx.log
        ssl = None
        if self.opts["ca"]:
            import ssl as _ssl
            ssl = _ssl.create_default_context(cafile=self.opts["ca"])
        self.client = VtnClient(self.opts["vtn_url"], self.opts["token_url"],
                                self.opts["client_id"], self.opts["client_secret"],
                                self.opts["scope"], ssl=ssl)
        self.webhook = None
        if self.opts["webhook_listen"]:
            host, _, port = self.opts["webhook_listen"].rpartition(":")
            self.webhook = Webhook(host, int(port), secrets.token_urlsafe(24),
                                   self._on_notification, self._rejected)
        self.ven_id = None
        self.programs = {}        # program id -> name (followed ones)
        self.subscriptions = {}   # program id -> subscription id
        self.resources = set()    # resourceNames the VTN has for us
        self.events = {}          # event id -> flat event last applied or ignored
        self.raw = {}             # event id -> event object (for reportDescriptors)
        self.active = {}          # event id -> {"plan_id", "devices": {id: plan}, "ids", "end"}
        self.refused = {}         # event or program id -> fingerprint refused (logged once)
        self.deleted = set()      # event ids a DELETE notification removed
        self.overridden = {}      # event id -> devices whose owner took over during it
        self.overlaps = set()
        self.reports = {}         # event id -> {"id", "types", "intervals", "program"}
        self.link_up = None
        self.auth_refused = False
        self.synced = asyncio.Event()
        self.syncs = 0
        self.applied_at = {}      # event id -> monotonic time its plans were queued
        self._wake = asyncio.Event()
        self._inbox = asyncio.Queue(INBOX)
        self._lock = asyncio.Lock()
        self._tasks = []

    # ------------------------------------------------------------ lifecycle

    async def start(self):
        if self.webhook is not None:
            await self.webhook.start()
        self._tasks = [asyncio.ensure_future(self._poller()),
                       asyncio.ensure_future(self._reporter()),
                       asyncio.ensure_future(self._notifications())]

    async def stop(self):
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self.webhook is not None:
            await self.webhook.stop()
        for sub in list(self.subscriptions.values()):
            try:   # best effort: a VTN that is gone must not hold up the bridge's stop
                await asyncio.wait_for(self.client.delete_subscription(sub), 3)
            except (VtnError, VtnUnreachable, asyncio.TimeoutError):
                pass
        await self.client.close()

    def callback_url(self):
        return self.opts["webhook_url"] or self.webhook.url

    # ------------------------------------------------------------ devices

    async def members(self):
        """The store Devices of this VEN (groups / devices options; none: all)."""
        return taking_part(await self.ctx.devices(), self.opts)

    # ------------------------------------------------------------ the loop

    async def _poller(self):
        while True:
            try:
                await self.sync()
                self._link(True)
                if self.auth_refused:
                    self.auth_refused = False
                    self.log.warning("openadr3 %s: credentials accepted again", self.name)
            except asyncio.CancelledError:
                raise
            except VtnUnreachable as e:
                self._link(False, str(e))
            except AuthError as e:
                self._link(True)
                self.ctx.bridge.metrics.inc("openadr3_auth_refused")
                if not self.auth_refused:     # once until credentials work again
                    self.auth_refused = True
                    await self._rejected("auth", "token refused: %s" % e)
            except VtnError as e:
                self._link(True)
                self.log.warning("openadr3 %s: VTN error: %s", self.name, e)
                self.ctx.bridge.metrics.inc("openadr3_vtn_errors")
            except Exception:
                self.log.exception("openadr3 %s: poll failed", self.name)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), float(self.opts["poll_interval"]))
            except asyncio.TimeoutError:
                pass

    def _link(self, up, detail=""):
        if up and self.link_up is False:
            self.log.warning("openadr3 %s: VTN reachable again", self.name)
        if not up and self.link_up is not False:
            self.log.warning("openadr3 %s: VTN unreachable: %s", self.name, detail)
        if not up:
            self.ctx.bridge.metrics.inc("openadr3_unreachable")
        self.link_up = up

    async def sync(self):
        """One full round: VEN and resources registered, programs, events reconciled."""
        await self._register()
        followed = {}
        wanted = set(self.opts["programs"])
        for obj in await self.client.programs():
            try:
                p = T.parse_program(obj)
            except D.EventError as e:
                key = ("program", obj.get("id") if isinstance(obj, dict) else None)
                fp = T.fingerprint(obj)
                if self.refused.get(key) != fp:
                    self.refused[key] = fp
                    await self._rejected("malformed_program", str(e))
                continue
            if not wanted or p["name"] in wanted:
                followed[p["id"]] = p["name"]
        self.programs = followed
        if self.webhook is not None:
            await self._subscribe()
        objs = []
        for pid in followed:
            objs.extend(await self.client.events(pid))
        await self.reconcile(objs, complete=True)
        self.syncs += 1
        self.synced.set()

    async def _register(self):
        if self.ven_id is None:
            ven = await self.client.find_ven(self.name) or await self.client.create_ven(self.name)
            try:
                self.ven_id = T.object_id((ven or {}).get("id"), "VEN id")
            except D.EventError as e:
                raise VtnError(200, "VEN registration answered without an id: %s" % e) from None
            self.resources = {r.get("resourceName") for r in await self.client.resources(self.ven_id)
                              if isinstance(r, dict)}
            await self._audit("openadr3.registered", {"ven_id": self.ven_id})
        if self.opts["register_resources"]:
            for d in await self.members():
                if d.id not in self.resources:
                    sid = main_service(d)
                    attrs = None if sid is None else [{"type": "SPOT_SERVICE", "values": [sid]}]
                    try:
                        await self.client.create_resource(self.ven_id, d.id, attrs)
                    except VtnError as e:
                        if e.status == 404:   # the VTN forgot our VEN: register again next round
                            self.ven_id = None
                        raise
                    self.resources.add(d.id)

    async def _subscribe(self):
        for pid in [p for p in self.subscriptions if p not in self.programs]:
            await self.client.delete_subscription(self.subscriptions.pop(pid))
        for pid in self.programs:
            if pid in self.subscriptions:
                continue
            sub = await self.client.create_subscription(self.name, pid, self.callback_url(),
                                                        self.webhook.token, ("EVENT", "PROGRAM"))
            if isinstance(sub, dict) and isinstance(sub.get("id"), str):
                self.subscriptions[pid] = sub["id"]

    # ------------------------------------------------------------ notifications

    def _on_notification(self, otype, op, obj):
        """Queue a checked notification for the worker; False if the queue is full."""
        try:
            self._inbox.put_nowait((otype, op, obj))
        except asyncio.QueueFull:
            return False
        return True

    async def _notifications(self):
        while True:
            otype, op, obj = await self._inbox.get()
            try:
                await self._notified(otype, op, obj)
            except Exception:
                self.log.exception("openadr3 %s: notification %s %s failed", self.name, op, otype)

    async def _notified(self, otype, op, obj):
        if otype == "EVENT":
            if op == "DELETE":
                eid = obj.get("id")
                async with self._lock:
                    await self._withdraw(eid, "deleted")
                    self.events.pop(eid, None)
                    self.deleted.add(eid)
            elif obj.get("programID") in self.programs:
                await self.reconcile([obj], complete=False)
        else:   # programs changed (or something we do not track): read everything again
            self._wake.set()

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, objs, complete):
        """Apply new or changed events; with complete=True, withdraw those not in objs."""
        async with self._lock:
            now = time.time()
            seen, changed = set(), []
            for obj in objs:
                eid = obj.get("id") if isinstance(obj, dict) else None
                try:
                    ev = T.parse_event(obj, {"currency": self.opts["currency"]})
                except D.EventError as e:
                    if isinstance(eid, str):
                        seen.add(eid)
                    fp = T.fingerprint(obj) if isinstance(obj, dict) else None
                    if self.refused.get(eid) != fp:
                        self.refused[eid] = fp
                        await self._rejected("malformed_event", "event %s: %s" % (eid, e))
                    continue
                if ev["program"] not in self.programs:
                    continue
                seen.add(ev["id"])
                if ev["id"] in self.deleted:
                    continue          # a poll that read the list before a DELETE notification
                old = self.events.get(ev["id"])
                if old is not None and (old["mod"] == ev["mod"] or
                                        (ev["modified"] or 0) < (old["modified"] or 0)):
                    continue          # unchanged, or older than what a notification brought
                self.events[ev["id"]] = ev
                self.raw[ev["id"]] = obj
                if T.end_of(ev) <= now:
                    await self._audit("openadr3.ignored", {"event": ev["id"], "reason": "over"})
                    self.log.info("openadr3 %s: event %s is over; nothing to do",
                                  self.name, ev["id"])
                    await self._withdraw(ev["id"], "over")
                    continue
                changed.append(ev)
            if complete:
                self.deleted &= seen      # gone from the VTN's list too: forget
                for eid in [e for e in self.events if e not in seen]:
                    await self._withdraw(eid, "deleted")
                    del self.events[eid]
                    self.raw.pop(eid, None)
            # last modified last: where events overlap at equal priority, it governs
            for ev in sorted(changed, key=lambda e: (e["modified"] or 0, e["id"])):
                await self._apply(ev)
            await self._check_overlaps()

    async def _check_overlaps(self):
        live = [e for e in self.events.values() if e["id"] in self.active]
        for a, b in T.overlapping(live):
            if (a, b) not in self.overlaps:
                self.overlaps.add((a, b))
                self.log.warning("openadr3 %s: events %s and %s overlap at the same priority; "
                                 "devices follow the one modified last", self.name, a, b)
                await self._audit("openadr3.overlap", {"events": [a, b]})

    async def _prepare(self, ev):
        """(targeted device ids, {device: plan}, price values or None)."""
        members = await self.members()
        by_id = {d.id: d for d in members}
        groups = {}
        for t in ev["targets"]:
            for name in t.get("group_id", ()):
                groups[name] = [d.id for d in members if name in d.groups]
        ids = D.select_devices(ev["targets"], by_id, self.name, groups)
        commands, has_price = D.acts_on(ev)
        plans = {}
        if commands and allowed(self.ctx.role, F.INVOKE, PLANS):
            views = await device_views(ev, ids, by_id, self.ctx.latest)
            plans = D.plans_for(ev, views, time.time(), int(self.opts["primacy"]))
            pid = plan_id(ev["id"])
            for plan in plans.values():
                plan[0] = pid
        price = None
        if has_price and any(PRICE in (by_id[i].consumes or ()) for i in ids):
            price = D.price_values(ev, self.opts["currency"])
        return ids, plans, price

    async def _apply(self, ev):
        try:
            ids, plans, price = await self._prepare(ev)
        except D.EventError as e:
            await self._rejected("malformed_event", "event %s: %s" % (ev["id"], e))
            return
        self.applied_at[ev["id"]] = time.monotonic()
        if price is not None:
            await self.ctx.broadcast(PRICE, price)
        rec = self.active.get(ev["id"])
        before = set(rec["devices"]) if rec else set()
        pushed = {}
        skip = self.overridden.get(ev["id"], ())
        for device, plan in plans.items():
            if device in skip:      # its owner took over: not even a changed event returns
                continue
            try:
                await self.ctx.push_plan(device, *plan)
                pushed[device] = plan
            except (Forbidden, BadRequest, LookupError) as e:
                self.log.warning("openadr3: plan for %s refused: %s", device, e)
        for device in sorted(before - set(pushed)):   # no longer targeted after a change
            await self._cancel_plan(device, rec["plan_id"])
        self.active[ev["id"]] = {"plan_id": plan_id(ev["id"]), "devices": pushed, "ids": ids,
                                 "end": T.end_of(ev)}
        await self._audit("openadr3.event", {
            "event": ev["id"], "program": ev["program"], "devices": len(pushed),
            "price": price is not None, "signals": [s[0] for s in ev["signals"]]})

    async def _withdraw(self, event_id, reason):
        self.overridden.pop(event_id, None)
        self.reports.pop(event_id, None)
        rec = await withdraw_event(self.ctx, self.active, event_id)
        if rec is None:
            return
        await self._audit("openadr3.withdrawn", {"event": event_id, "reason": reason,
                                                "devices": len(rec["devices"])})

    async def _cancel_plan(self, device, pid):
        await withdraw_plan(self.ctx, device, pid)

    # ------------------------------------------------------------ owners override

    async def on_bridge_event(self, event):
        """A device's owner taking over what a running event's plan governs: the
        plan is withdrawn from that device for the rest of the event."""
        device = event.get("device")
        cmd, taken = await overridden_events(self.ctx, self.active, event, time.time())
        for eid, rec in taken:
            del rec["devices"][device]
            self.overridden.setdefault(eid, set()).add(device)
            await self._cancel_plan(device, rec["plan_id"])
            await self._audit("openadr3.override", {"event": eid, "device": device,
                                                   "by": cmd.actor, "command": cmd.id})

    # ------------------------------------------------------------ reports

    async def _reporter(self):
        period = float(self.opts["report_interval"])
        while True:
            await asyncio.sleep(period)
            try:
                await self.report_once(time.time(), period)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("openadr3 %s: report failed", self.name)

    async def report_once(self, now, period):
        """Add an interval to each running event's report and send the reports."""
        by_id = {d.id: d for d in await self.members()}
        for eid, rec in list(self.active.items()):
            ev, obj = self.events.get(eid), self.raw.get(eid)
            if ev is None or obj is None or now < ev["start"] or now > rec["end"] + period:
                continue
            types = T.wanted_reports(obj)
            if not types:
                continue
            rep = self.reports.setdefault(eid, {"id": None, "types": types, "intervals": [],
                                                "program": ev["program"]})
            devices = [by_id[i] for i in rec["ids"] if i in by_id]
            sums = await aggregate(self.ctx.bridge.store, devices, now,
                                   float(self.opts["report_max_age"]))
            rep["intervals"].append(T.report_interval(len(rep["intervals"]), now - period,
                                                      period, sums, types))
            body = T.report_body(rep["program"], eid, self.name, types, rep["intervals"])
            try:
                if rep["id"] is None:
                    made = await self.client.create_report(body)
                    rep["id"] = T.object_id((made or {}).get("id"), "report id")
                else:
                    await self.client.update_report(rep["id"], body)
                if len(rep["intervals"]) >= REPORT_INTERVALS:   # delivered: the next report anew
                    self.reports[eid] = dict(rep, id=None, intervals=[])
            except (VtnUnreachable, VtnError, D.EventError) as e:   # kept; the next one carries it
                self.log.warning("openadr3 %s: report for %s not delivered: %s", self.name, eid, e)

    # ------------------------------------------------------------ records

    async def _rejected(self, reason, detail):
        self.log.warning("openadr3 %s: rejected (%s): %s", self.name, reason, detail)
        self.ctx.bridge.metrics.inc("openadr3_rejected", reason=reason)
        await self._audit("openadr3.rejected", {"reason": reason, "detail": detail[:500]})

    async def _audit(self, action, detail):
        await self.ctx.bridge.store.audit(self.ctx.actor, action, "ven:" + self.name, detail,
                                          self.ctx.bridge.clock())


def plan_id(event_id):
    """The plan id of an OpenADR 3 event on every device (apart from 2.0b's)."""
    return D.plan_id("v3/" + event_id)
