"""The XMPP plugin: the fleet on an XMPP server, IEC 61850-8-2 style.

One Session for the bridge itself (resource `resource`, default "gateway")
serves the whole exposed fleet as one IEC 61850 server; with
per_device_presence each exposed device also has its own resource (its device
id) whose presence follows the registry and which serves that device's
logical device only. Operators send `iq` get/set stanzas holding an
`AssociationContext` / `MMSpdu` (XER); the answer is an `iq` result with the
MMS response (MMS errors inside it), or an `iq` error with an RFC 6120
condition when the stanza itself is refused:

    forbidden (auth)            the sender's bare JID has no role
    resource-constraint (wait)  the sender exceeded its request rate
    policy-violation (modify)   the stanza is longer than max_stanza_bytes
    bad-request (modify)        no single MMSpdu, not valid XER, not a request
    internal-server-error       a bug (logged); the bridge keeps serving

iq stanzas of any other namespace get feature-not-implemented from slixmpp,
except XEP-0030 disco#items, which lists the exposed devices to role holders.
Device changes are sent as informationReport `message` stanzas, from the
device's resource, to every JID with a role whose presence the bridge sees.
"""
import asyncio
import copy
import logging
import os
import xml.etree.ElementTree as ET


from slixmpp.exceptions import XMPPError
from slixmpp.plugins.xep_0030 import DiscoItems

from ...plugin_api import options_with_defaults
from . import xer
from .guard import Guard, check_roles
from .session import Session

LOG = logging.getLogger("spot.bridge.plugin.xmpp")
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

OPTIONS = {
    # key: (default, meaning)
    "jid": (None, "the bridge's bare JID, e.g. spot-bridge@xmpp.example"),
    "password": ("", "its password (or password_env)"),
    "password_env": ("", "environment variable holding the password"),
    "server": ("", "host:port of the XMPP server (default: the JID's domain, DNS SRV)"),
    "ca": ("", "PEM CA bundle that checks the server's certificate (default: system)"),
    "resource": ("gateway", "resource of the bridge's own session"),
    "per_device_presence": (True, "one resource per exposed device, presence from the registry"),
    "ied_name": ("SPOT", "IEC 61850 IED name of the bridge (MMS domain prefix)"),
    "devices": ([], "device ids exposed (with groups: none = every device)"),
    "groups": ([], "device groups exposed"),
    "operators": ({}, "bare JID -> monitor | operator"),
    "max_stanza_bytes": (16384, "longest request stanza accepted, bytes"),
    "rate": (20.0, "requests per second per JID (sustained)"),
    "burst": (40, "requests per JID accepted at once"),
    "control_timeout": (30.0, "seconds a write or control waits for the device's answer"),
}


def check_options(options):
    """Options with defaults filled in; ValueError for missing, unknown or wrong ones."""
    out = options_with_defaults("xmpp", options, OPTIONS)
    jid = out["jid"]
    if not isinstance(jid, str) or "@" not in jid or "/" in jid:
        raise ValueError("xmpp: option jid must be a bare JID (user@domain)")
    if out["password_env"]:
        out["password"] = os.environ.get(out["password_env"], "")
    if not out["password"]:
        raise ValueError("xmpp: a password (or password_env naming a set variable) is required")
    if out["server"]:
        host, _, port = str(out["server"]).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("xmpp: server must be host:port")
        out["server"] = (host, int(port))
    else:
        out["server"] = None
    for k in ("devices", "groups"):
        if not isinstance(out[k], list) or not all(isinstance(x, str) for x in out[k]):
            raise ValueError("xmpp: %s must be a list of names" % k)
    out["operators"] = check_roles(out["operators"])
    for k in ("max_stanza_bytes", "rate", "burst", "control_timeout"):
        if not isinstance(out[k], (int, float)) or out[k] <= 0:
            raise ValueError("xmpp: %s must be a positive number" % k)
    return out


class XmppPlugin:
    def __init__(self, ctx, acsi_factory):
        self.ctx = ctx
        self.opts = check_options(ctx.options)
        self.guard = Guard(self.opts["operators"], self.opts["rate"], self.opts["burst"],
                           self.opts["max_stanza_bytes"])
        self.acsi = acsi_factory(ctx, self.opts)
        self.main = None
        self.sessions = {}          # device id -> Session
        self.listeners = set()      # full JIDs with a role whose presence is available
        self.refused = {}           # condition -> count (for metrics and tests)
        self.reports_sent = 0
        self._running = False

    # ------------------------------------------------------------ life cycle

    def _session(self, resource, **kw):
        return Session(self.opts["jid"], self.opts["password"], resource, self.handle_iq,
                       server=self.opts["server"], ca=self.opts["ca"] or None, **kw)

    async def start(self):
        self._running = True
        xer.spec()                       # compile the MMS module now, not on the first stanza
        await self.acsi.fresh()
        self.main = self._session(self.opts["resource"], on_presence=self._operator_presence,
                                  subscriptions=lambda jid: self.guard.role(jid) is not None,
                                  on_up=lambda s: self.listeners.clear())   # the server resends them
        self.main.presence = "online"
        self.main.client.plugin["xep_0030"].api.register(self._disco_items, "get_items",
                                                         default=True)
        self.main.start()
        if self.opts["per_device_presence"]:
            for d in await self.ctx.devices():
                if self.acsi.exposes_record(d):
                    self._device_session(d.id, d.presence)

    def _device_session(self, device, presence):
        if device in self.sessions or device == self.opts["resource"]:
            return
        s = self._session(device)
        s.presence = presence
        s.device = device
        self.sessions[device] = s
        s.start()

    async def stop(self):
        self._running = False
        sessions = list(self.sessions.values()) + ([self.main] if self.main else [])
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)
        await self.acsi.stop()

    async def on_event(self, event):
        kind = event.get("type")
        if kind == "device":
            self.acsi.invalidate()
            if self._running and self.opts["per_device_presence"]:
                d = await self.ctx.bridge.store.get_device(event["device"])
                if d is not None and self.acsi.exposes_record(d):
                    self._device_session(d.id, d.presence)
        elif kind == "presence":
            s = self.sessions.get(event["device"])
            if s is not None:
                s.set_presence(event["presence"])
        elif kind == "telemetry" and self.listeners:
            pdu = await self.acsi.report(event)        # None for a device not exposed
            if pdu is not None:
                self._send_report(event["device"], pdu)

    # ------------------------------------------------------------ discovery

    async def _disco_items(self, jid, node, ifrom, data):
        """XEP-0030 disco#items of the gateway: one item per exposed device (its
        resource, or the gateway with the device id as node), named by its MMS domain;
        refused to JIDs without a role."""
        if ifrom is None or self.guard.role(ifrom.bare) is None:
            raise XMPPError("forbidden", etype="auth")
        await self.acsi.fresh()
        items = DiscoItems()
        for device, ld in sorted(self.acsi.acsi.model.by_device.items()):
            if device in self.sessions:
                items.add_item("%s/%s" % (self.opts["jid"], device), name=ld.domain)
            else:
                items.add_item(self.main.client.boundjid.full, node=device, name=ld.domain)
        return items

    # ------------------------------------------------------------ reports

    def _operator_presence(self, session, presence):
        who = presence["from"]
        if self.guard.role(who.bare) is None or who.bare == self.opts["jid"]:
            return
        if presence["type"] == "unavailable":
            self.listeners.discard(who.full)
        else:
            self.listeners.add(who.full)

    def _send_report(self, device, pdu):
        session = self.sessions.get(device, self.main)
        element = xer.to_element(pdu)
        for to in sorted(self.listeners):
            msg = session.client.make_message(mto=to, mtype="normal")
            msg["mms"]["id"] = device
            msg["mms"].xml.append(copy.deepcopy(element))
            session.send(msg)
            self.reports_sent += 1

    # ------------------------------------------------------------ requests

    def _refuse(self, session, iq, etype, condition, text):
        self.refused[condition] = self.refused.get(condition, 0) + 1
        self.ctx.bridge.metrics.inc("xmpp_refused", condition=condition)
        err = iq.reply(clear=True)
        err["type"] = "error"
        err["error"]["type"] = etype
        # slixmpp's Error knows the RFC 3920 conditions only (not policy-violation)
        del err["error"]["condition"]
        del err["error"]["text"]
        err["error"].xml.append(ET.Element("{%s}%s" % (STANZAS, condition)))
        err["error"]["text"] = text
        session.send(err)

    async def handle_iq(self, session, iq):
        if iq["type"] not in ("get", "set"):
            return                       # results and errors addressed to us: nothing to do
        who = iq["from"].bare
        role = self.guard.role(who)
        if role is None:
            return self._refuse(session, iq, "auth", "forbidden", "%s has no role here" % who)
        if not self.guard.admit(who):
            return self._refuse(session, iq, "wait", "resource-constraint", "too many requests")
        if self.guard.too_big(len(str(iq).encode())):
            return self._refuse(session, iq, "modify", "policy-violation",
                                "stanza longer than %d bytes" % self.guard.max_stanza_bytes)
        ctx = iq["mms"]
        pdus = list(ctx.xml)
        if len(pdus) != 1:
            return self._refuse(session, iq, "modify", "bad-request",
                                "AssociationContext must hold exactly one MMSpdu")
        try:
            pdu = xer.from_element(pdus[0])
        except xer.XerError as e:
            return self._refuse(session, iq, "modify", "bad-request", str(e))
        if pdu[0] != "confirmed-RequestPDU":
            return self._refuse(session, iq, "modify", "bad-request",
                                "expected a confirmed-RequestPDU, got %s" % pdu[0])
        scope = getattr(session, "device", None)
        try:
            response = await self.acsi.handle(pdu[1], scope, self.guard.can_control(who), who)
        except Exception:
            LOG.exception("xmpp: request from %s failed", who)
            return self._refuse(session, iq, "cancel", "internal-server-error",
                                "the bridge failed on this request")
        reply = iq.reply(clear=True)
        reply["mms"]["id"] = ctx["id"]
        reply["mms"].xml.append(xer.to_element(response))
        session.send(reply)
