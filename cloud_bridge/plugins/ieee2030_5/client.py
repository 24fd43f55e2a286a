"""The IEEE 2030.5 / CSIP aggregator client: the plugin's only I/O.

Over HTTPS with mutual TLS (aiohttp), every poll interval it walks
DeviceCapability -> EndDeviceList -> FunctionSetAssignmentsList ->
DERProgramList (and the DeviceCapability's own DERProgramListLink) ->
DERControlList and DefaultDERControl, reads the server Time, and hands
each control to mapping.decide: new controls become plans pushed to the
member devices through the plugin context (ctx.push_plan, under the
plugin's actor and role), cancelled or superseded ones are withdrawn
(ctx.cancel_plan), and the Responses the control asks for (received,
started, completed, cancelled, superseded, not participating, rejected)
are POSTed to its replyTo. A device owner's command that takes over a
control's plan opts that device out (plan withdrawn, Response "opted out").
Every post interval it PUTs DERCapability,
DERSettings, DERStatus and DERAvailability of each DER and POSTs a
MirrorUsagePoint, all summed from the store over the member devices.

A document that fails to parse is refused as a whole (logged, audited
"ieee2030_5.rejected", counted in the metric ieee2030_5_rejected) and
changes nothing; an unreachable server or a TLS failure is logged once and
retried at the next poll, the plans already pushed run on.
"""
import asyncio
import hashlib
import logging
import ssl
import time

import aiohttp

from ...service import Forbidden, BadRequest
from ...plugin_api import options_with_defaults
from ...tasks import cancel_and_wait
from ..dr_readings import main_service, aggregate, taking_part
from ..plan_override import owner_command, overrides, withdraw_plan
from . import mapping as MP
from . import sep_xml as X

LOG = logging.getLogger("spot.bridge.plugin.ieee2030_5")
MEDIA = "application/sep+xml"
PAGE = 100                 # list page size asked for
MAX_ITEMS = 1000           # list entries read per list

OPTIONS = {
    # key: (default, meaning)
    "server_url": (None, "2030.5 server base URL, https://host:port"),
    "dcap_path": ("/dcap", "path of the DeviceCapability resource"),
    "cert": ("", "PEM client certificate (the aggregator's device certificate)"),
    "key": ("", "PEM private key of cert"),
    "ca": ("", "PEM CA bundle that checks the server certificate"),
    "check_hostname": (True, "check the server certificate's host name"),
    "ciphers": ("", "TLS 1.2 cipher list (CSIP: ECDHE-ECDSA-AES128-CCM8); empty: defaults"),
    "lfdi": ("", "this client's LFDI (40 hex digits); empty: from cert"),
    "poll_interval": (0, "seconds between polls (0: the server's pollRate)"),
    "post_interval": (300, "seconds between DER status / meter posts (0: never)"),
    "groups": ([], "device groups taking part (with devices: none = every device)"),
    "devices": ([], "device ids taking part"),
    "primacy": (100, "SPOT primacy of a program of 2030.5 primacy 100"),
    "timeout": (10, "seconds allowed per request"),
}


def check_options(options):
    """Options with defaults filled in; ValueError for missing, unknown or wrong keys."""
    out = options_with_defaults("ieee2030_5", options, OPTIONS)
    url = out["server_url"]
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ValueError("ieee2030_5: server_url (https://host:port) is required")
    if bool(out["cert"]) != bool(out["key"]):
        raise ValueError("ieee2030_5: cert and key go together")
    if url.startswith("https://") and not out["cert"]:
        raise ValueError("ieee2030_5: a client certificate (cert, key) is required for TLS")
    for k in ("groups", "devices"):
        if not isinstance(out[k], list) or not all(isinstance(x, str) for x in out[k]):
            raise ValueError("ieee2030_5: %s must be a list of names" % k)
    if type(out["primacy"]) is not int or not 0 <= out["primacy"] <= 155:
        raise ValueError("ieee2030_5: primacy must be an integer 0-155")
    for k in ("poll_interval", "post_interval", "timeout"):
        if type(out[k]) not in (int, float) or out[k] < 0:
            raise ValueError("ieee2030_5: %s must be a number of seconds >= 0" % k)
    if out["lfdi"] and (len(out["lfdi"]) != 40 or
                        any(c not in "0123456789abcdefABCDEF" for c in out["lfdi"])):
        raise ValueError("ieee2030_5: lfdi must be 40 hex digits")
    return out


def lfdi_of(cert_path):
    """LFDI of a PEM certificate: the first 160 bits of the SHA-256 of its DER form."""
    pem = open(cert_path, "rb").read().decode("ascii", "replace")
    begin = pem.find(ssl.PEM_HEADER)      # text before the block is allowed (RFC 7468)
    if begin < 0:
        raise ValueError("ieee2030_5: %s holds no PEM certificate" % cert_path)
    end = pem.find(ssl.PEM_FOOTER, begin) + len(ssl.PEM_FOOTER)
    der = ssl.PEM_cert_to_DER_cert(pem[begin:end])
    return hashlib.sha256(der).hexdigest()[:40].upper()


class ServerError(Exception):
    """The server could not be reached or answered with an HTTP error."""


class Client:
    """One aggregator client of one 2030.5 server (see the module docstring)."""

    def __init__(self, ctx, options):
        self.ctx = ctx
        self.opts = check_options(options)
        self.base = self.opts["server_url"].rstrip("/")
        self.lfdi = (self.opts["lfdi"] or (lfdi_of(self.opts["cert"]) if self.opts["cert"]
                                           else "0" * 40)).upper()
        self.session = None
        self.events = {}       # mRID -> {"state", "ctrl", "plans": {device: plan}, "program"}
        self.defaults = {}     # program href -> {"ctrl", "plans", "at"}
        self.responses = []    # (mRID, status, HTTP status) posted, in order
        self.rejected = 0
        self.polls = 0
        self.link_up = None
        self.server_rate = 900
        self.time_offset = 0.0
        self.ders = []         # DER resources found under the EndDevices
        self.mup_location = None
        self.last_error = None
        self.polled = asyncio.Event()
        self._tasks = []
        self._member_ids = set()
        self._bad_defaults = {}  # program href -> why its DefaultDERControl was refused

    # ------------------------------------------------------------ lifecycle

    async def start(self):
        self._tasks = [asyncio.ensure_future(self._poll_loop())]
        if self.opts["post_interval"]:
            self._tasks.append(asyncio.ensure_future(self._post_loop()))

    async def stop(self):
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self.session is not None:
            await self.session.close()
            self.session = None

    def now(self):
        return time.time() + self.time_offset

    def interval(self):
        if self.opts["poll_interval"]:
            return float(self.opts["poll_interval"])
        return float(min(max(self.server_rate, 1), 86400))

    # ------------------------------------------------------------ the wire

    def _ssl(self):
        if not self.base.startswith("https:"):
            return False
        ctx = ssl.create_default_context(cafile=self.opts["ca"] or None)
        ctx.check_hostname = bool(self.opts["check_hostname"])
        ctx.load_cert_chain(self.opts["cert"], self.opts["key"])
        if self.opts["ciphers"]:     # a TLS 1.2 suite list (CSIP: ECDHE-ECDSA-AES128-CCM8)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(self.opts["ciphers"])
        return ctx

    async def _session(self):
        if self.session is None:
            t = float(self.opts["timeout"]) or 10.0
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl()),
                headers={"accept": MEDIA},
                timeout=aiohttp.ClientTimeout(total=t, sock_connect=min(t, 5.0)))
        return self.session

    async def _request(self, method, path, body=None):
        session = await self._session()
        url = path if path.startswith(("http://", "https://")) else self.base + path
        try:
            async with session.request(method, url, data=body,
                                       headers={"content-type": MEDIA} if body else None) as r:
                content = await r.content.read(X.MAX_BODY + 1)
                status, location = r.status, r.headers.get("Location")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ssl.SSLError) as e:
            self._link(False, "%s %s: %s" % (method, path, e or e.__class__.__name__))
            raise ServerError(str(e) or e.__class__.__name__)
        self._link(True, None)
        return status, content, location

    def _link(self, up, detail):
        if up and self.link_up is False:
            LOG.warning("2030.5 server %s reachable again", self.base)
        if not up:
            self.last_error = detail
            if self.link_up is not False:
                LOG.warning("2030.5 server %s unreachable: %s", self.base, detail)
        self.link_up = up

    async def get(self, path, expect):
        """(root name, data) of a resource; None if the server has none (404)."""
        status, content, _ = await self._request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise ServerError("GET %s: HTTP %d" % (path, status))
        return X.parse(content, expect)[1]

    async def get_list(self, path, expect, item):
        """Every entry of a list resource, read in pages (s, l) up to MAX_ITEMS."""
        out, start, rate = [], 0, None
        while len(out) < MAX_ITEMS:
            sep = "&" if "?" in path else "?"
            data = await self.get("%s%ss=%d&l=%d" % (path, sep, start, PAGE), expect)
            if data is None:
                break
            if rate is None:
                rate = X.poll_rate(data, None)
            got = X.items(data, item)
            out.extend(got)
            total = int(data.get("@all") or 0)
            if not got or start + len(got) >= total:
                break
            start += len(got)
        return out, rate

    # ------------------------------------------------------------ polling

    async def _poll_loop(self):
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except X.SepError as e:
                await self._reject("malformed", str(e))
            except ServerError as e:
                self.last_error = str(e)
            except Exception:
                LOG.exception("ieee2030_5: poll failed")
            self.polled.set()
            await asyncio.sleep(self.interval())

    async def discover(self):
        """[(program record, controls raw, default raw)] reachable from DeviceCapability."""
        dcap = await self.get(self.opts["dcap_path"], "DeviceCapability")
        if dcap is None:
            raise ServerError("no DeviceCapability at %s" % self.opts["dcap_path"])
        self.server_rate = X.poll_rate(dcap, 900)
        tm = X.link(dcap, "TimeLink")
        if tm:
            await self._sync_time(tm)
        program_lists = [X.link(dcap, "DERProgramListLink")]
        ders = []
        edl = X.link(dcap, "EndDeviceListLink")
        if edl:
            edevs, _ = await self.get_list(edl, "EndDeviceList", "EndDevice")
            for ed in edevs:
                fsal = X.link(ed, "FunctionSetAssignmentsListLink")
                if fsal:
                    fsas, _ = await self.get_list(fsal, "FunctionSetAssignmentsList",
                                                  "FunctionSetAssignments")
                    program_lists.extend(X.link(f, "DERProgramListLink") for f in fsas)
                derl = X.link(ed, "DERListLink")
                if derl:
                    found, _ = await self.get_list(derl, "DERList", "DER")
                    ders.extend(found)
        self.ders = ders
        self.mup_list = X.link(dcap, "MirrorUsagePointListLink")
        programs, seen = [], set()
        for pl in program_lists:
            if not pl or pl in seen:
                continue
            seen.add(pl)
            raw, _ = await self.get_list(pl, "DERProgramList", "DERProgram")
            for p in raw:
                programs.append(X.program(p))
        out = []
        for p in programs:
            controls = []
            if p["controls"]:
                controls, _ = await self.get_list(p["controls"], "DERControlList", "DERControl")
            default = await self.get(p["default"], "DefaultDERControl") if p["default"] else None
            out.append((p, controls, default))
        return out

    async def _sync_time(self, href):
        try:
            tm = await self.get(href, "Time")
        except ServerError as e:
            LOG.debug("ieee2030_5: no server time (%s); local clock used", e)
            return
        if tm is not None:
            self.time_offset = X.current_time(tm) - time.time()
            if abs(self.time_offset) < 2:
                self.time_offset = 0.0

    async def poll_once(self):
        found = await self.discover()
        now = self.now()
        views = _Lazy(self._views)        # the devices are read only if something is planned
        self._member_ids = {d.id for d in await self.members()}
        listed = set()
        for prog, raw_controls, raw_default in found:
            prim = MP.primacy(prog["primacy"], int(self.opts["primacy"]))
            controls = []
            for raw in raw_controls:
                try:
                    controls.append(X.der_control(raw))
                except X.SepError as e:
                    listed.add(await self._refuse_control(raw, e))
            for c in controls:
                listed.add(c["mrid"])
                live = [o for o in controls if o is not c]
                await self._step(c, prog, prim, views, now, MP.superseded_by(c, live))
            await self._default(prog, raw_default, views, now)
        for mrid, rec in list(self.events.items()):   # gone from the server: withdraw, forget
            if mrid in listed:
                continue
            if rec["state"] in ("planned", "started"):
                await self._withdraw(rec)
                await self._audit("ieee2030_5.withdrawn", {"control": mrid, "reason": "removed"})
            del self.events[mrid]
        self.polls += 1

    async def _joiners(self, rec):
        """Views of member devices that joined since the record's plans were made."""
        new = self._member_ids - rec.setdefault("seen", set())
        if not new:
            return []
        rec["seen"] |= new
        return await self._views(new)

    # ------------------------------------------------------------ events

    async def _step(self, ctrl, prog, prim, views, now, superseder):
        rec = self.events.get(ctrl["mrid"])
        if rec is not None and rec["state"] in ("planned", "started") and \
                _changed(rec["ctrl"], ctrl):
            rec["ctrl"] = ctrl                      # a modified control: plan it again
            await self._push(rec, views, prim, now)
        state = rec["state"] if rec else None
        new, action, status = MP.decide(state, ctrl, now, superseder)
        if rec is None:
            rec = self.events[ctrl["mrid"]] = {"state": None, "ctrl": ctrl, "plans": {},
                                               "program": prog["href"], "responded": set()}
        rec["ctrl"] = ctrl
        if action == "plan":
            await self._push(rec, views, prim, now)
            if not rec["plans"]:
                new, status = "not_participating", X.NOT_PARTICIPATING
        elif action == "withdraw":
            await self._withdraw(rec)
        elif new in ("planned", "started"):
            await self._push(rec, await self._joiners(rec), prim, now, add=True)
        if new != rec["state"]:
            await self._audit("ieee2030_5.control", {"control": ctrl["mrid"], "state": new,
                                                    "devices": len(rec["plans"])})
        rec["state"] = new
        if status is not None and status not in rec["responded"]:
            rec["responded"].add(status)
            await self._respond(ctrl, status)

    async def _push(self, rec, views, prim, now, add=False):
        """Push the control's plans to the views' devices; without `add` they replace the
        plans it had (devices no longer reached are withdrawn)."""
        ctrl, pushed = rec["ctrl"], dict(rec["plans"]) if add else {}
        if not add:
            views = await views.get()
            rec["seen"] = set(self._member_ids)
        for v in views:
            if v.id in rec.get("opted_out", ()):
                continue
            plan = MP.plan_for(ctrl, v, prim, now)
            if plan is None:
                continue
            try:
                await self.ctx.push_plan(v.id, *plan)
                pushed[v.id] = plan
            except (Forbidden, BadRequest, LookupError) as e:
                LOG.warning("ieee2030_5: plan for %s refused: %s", v.id, e)
        for device in sorted(set(rec["plans"]) - set(pushed)):
            await self._cancel(device, rec["plans"][device][0])
        rec["plans"] = pushed

    async def _withdraw(self, rec):
        for device, plan in sorted(rec["plans"].items()):
            await self._cancel(device, plan[0])
        rec["plans"] = {}

    async def _cancel(self, device, pid):
        await withdraw_plan(self.ctx, device, pid)

    async def _default(self, prog, raw, views, now):
        key = prog["href"]
        rec = self.defaults.get(key)
        ctrl = None
        if raw is not None:
            try:
                ctrl = X.der_control(raw, default=True)
            except X.SepError as e:
                if self._bad_defaults.get(key) != str(e):      # once, not every poll
                    self._bad_defaults[key] = str(e)
                    await self._reject("malformed_default", str(e))
                return
        self._bad_defaults.pop(key, None)
        if ctrl is None:
            if rec is not None:
                await self._withdraw(rec)
                del self.defaults[key]
            return
        if rec is not None and rec["ctrl"] == ctrl and now - rec["at"] < MP.DEFAULT_RENEW:
            for v in await self._joiners(rec):
                await self._push_default(rec, ctrl, v, now)
            return
        if rec is not None and rec["ctrl"]["mrid"] != ctrl["mrid"]:
            await self._withdraw(rec)
        rec = self.defaults[key] = {"ctrl": ctrl, "plans": {}, "at": now,
                                    "seen": set(self._member_ids)}
        for v in await views.get():
            await self._push_default(rec, ctrl, v, now)
        pushed = rec["plans"]
        await self._audit("ieee2030_5.default", {"control": ctrl["mrid"], "program": key,
                                                "devices": len(pushed)})

    async def _push_default(self, rec, ctrl, view, now):
        plan = MP.default_plan_for(ctrl, view, now)
        if plan is None:
            return
        try:
            await self.ctx.push_plan(view.id, *plan)
            rec["plans"][view.id] = plan
        except (Forbidden, BadRequest, LookupError) as e:
            LOG.warning("ieee2030_5: default plan for %s refused: %s", view.id, e)

    # ------------------------------------------------------------ responses

    async def _respond(self, ctrl, status):
        if not MP.owes_response(ctrl, status):
            return
        body = X.response(self.lfdi, ctrl["mrid"], status, self.now())
        try:
            code, _, _ = await self._request("POST", ctrl["reply_to"], body)
        except ServerError:
            code = None
        self.responses.append((ctrl["mrid"], status, code))
        if code not in (200, 201, 204):
            LOG.warning("ieee2030_5: Response %d for %s not accepted (HTTP %s)",
                        status, ctrl["mrid"], code)

    async def _refuse_control(self, raw, error):
        """A control that does not parse: audited and answered "invalid" once per mRID.
        Its mRID (upper case), or None without a usable one."""
        mrid = raw.get("mRID") if isinstance(raw, dict) else None
        key = mrid.upper() if isinstance(mrid, str) else None
        if key is not None and key in self.events:
            return key
        await self._reject("malformed_control", str(error))
        if key is None or len(key) > 32 or any(c not in "0123456789ABCDEF" for c in key):
            return None
        ctrl = {"mrid": key, "reply_to": raw.get("@replyTo"),
                "response_required": int(raw.get("@responseRequired") or "0", 16)}
        self.events[key] = {"state": "rejected", "ctrl": ctrl, "plans": {}, "program": None,
                            "responded": {X.REJECTED_INVALID}}
        await self._respond(ctrl, X.REJECTED_INVALID)
        return key

    # ------------------------------------------------------------ opting out

    async def on_bridge_event(self, event):
        """An owner's command that takes over a control's plan on a device opts that device
        out: its plan is withdrawn and the control answered "opted out" (once)."""
        device = event.get("device")
        hits = [rec for rec in self.events.values()
                if rec["state"] in ("planned", "started") and device in rec["plans"]]
        if not hits:
            return
        cmd = await owner_command(self.ctx, event)
        if cmd is None:
            return
        for rec in hits:
            if overrides(cmd, rec["plans"][device]):
                plan = rec["plans"].pop(device)
                rec.setdefault("opted_out", set()).add(device)
                await self._cancel(device, plan[0])
                await self._audit("ieee2030_5.override", {"control": rec["ctrl"]["mrid"],
                                                         "device": device, "by": cmd.actor})
                if X.OPTED_OUT not in rec["responded"]:
                    rec["responded"].add(X.OPTED_OUT)
                    await self._respond(rec["ctrl"], X.OPTED_OUT)

    # ------------------------------------------------------------ devices

    async def members(self):
        return taking_part(await self.ctx.devices(), self.opts)

    async def _views(self, ids=None):
        """DeviceViews (id, profile, latest readings) of the member devices (or those in ids)."""
        out = []
        for d in await self.members():
            if ids is not None and d.id not in ids:
                continue
            sid = main_service(d)
            if sid is None:
                continue
            out.append(MP.DeviceView(d.id, sid, d.consumes,
                                     MP.readings_of(sid, await self.ctx.latest(d.id))))
        return out

    # ------------------------------------------------------------ posts

    async def _post_loop(self):
        await self.polled.wait()
        while True:
            try:
                await self.post_once()
            except asyncio.CancelledError:
                raise
            except ServerError:
                pass
            except Exception:
                LOG.exception("ieee2030_5: posting DER status failed")
            await asyncio.sleep(float(self.opts["post_interval"]))

    async def post_once(self):
        """PUT DERCapability/Settings/Status/Availability of each DER, POST the meter mirror.
        {resource: HTTP status} of what was sent."""
        views = await self._views()
        now = self.now()
        rated = sum(float(v.readings.get("rated_power") or v.readings.get("max_discharge_power")
                          or v.readings.get("capacity") or 0.0) for v in views)
        avail = sum(float(v.readings.get("available_power") or 0.0) for v in views)
        socs = [float(v.readings["soc"]) for v in views if v.readings.get("soc") is not None]
        agg = await aggregate(self.ctx.bridge.store, await self.members(), time.time())
        modes = 0x1 | 0x2 | 0x40 | 0x800 | 0x2000    # connect, energize, fixed PF, maxLimW, targetW
        sent = {}
        for der in self.ders:
            docs = (("DERCapabilityLink", X.der_capability(rated, 4, modes)),
                    ("DERSettingsLink", X.der_settings(rated, now, modes)),
                    ("DERStatusLink", X.der_status(now, agg["online"] > 0, agg["reporting"] > 0,
                                                   sum(socs) / len(socs) if socs else None)),
                    ("DERAvailabilityLink", X.der_availability(now, avail)))
            for name, body in docs:
                href = X.link(der, name)
                if href:
                    code, _, _ = await self._request("PUT", href, body)
                    sent[href] = code
        if self.mup_list:
            body = X.mirror_usage_point(self.lfdi, self.lfdi[:32], "SPOT fleet", now,
                                        agg["power"], agg["energy"])
            target = self.mup_location or self.mup_list
            code, _, location = await self._request("POST", target, body)
            if code in (200, 201) and location:
                self.mup_location = location
            sent[target] = code
        return sent

    # ------------------------------------------------------------ records

    async def _reject(self, reason, detail):
        self.rejected += 1
        LOG.warning("ieee2030_5: rejected a document from the server (%s): %s", reason, detail)
        self.ctx.bridge.metrics.inc("ieee2030_5_rejected", reason=reason)
        await self._audit("ieee2030_5.rejected", {"reason": reason, "detail": detail[:500]})

    async def _audit(self, action, detail):
        await self.ctx.bridge.store.audit(self.ctx.actor, action, "2030.5:" + self.base, detail,
                                          self.ctx.bridge.clock())


class _Lazy:
    """An awaited value computed on first use."""

    def __init__(self, make):
        self.make = make
        self.value = None

    async def get(self):
        if self.value is None:
            self.value = await self.make()
        return self.value


def _changed(a, b):
    keys = ("start", "duration", "base", "randomize_start", "randomize_duration", "version")
    return any(a.get(k) != b.get(k) for k in keys)
