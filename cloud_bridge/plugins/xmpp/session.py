"""One XMPP session of the bridge (one resource of its JID), kept up by itself.

A Session is a slixmpp client for `jid/resource`: STARTTLS (required, checked
against the configured CA) and SASL to the server, then it announces its
presence and hands every iq carrying an `AssociationContext` to the plugin.
When the server goes away it reconnects with back-off (slixmpp's, capped at
MAX_BACKOFF seconds) and, once the session is up again, announces the
presence it should have and sends what was queued while it was down
(bounded: the oldest beyond MAX_PENDING are dropped and counted).

Presence follows the registry: online -> available, sleeping -> away
("sleeping"), offline -> unavailable.
"""
import asyncio
import collections
import logging

import slixmpp
from slixmpp.xmlstream import register_stanza_plugin, ElementBase
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import MatchXPath

from .xer import NS

LOG = logging.getLogger("spot.bridge.plugin.xmpp")
MAX_BACKOFF = 30.0     # seconds between reconnection attempts at most
MAX_PENDING = 1000     # stanzas kept for sending while disconnected

# registry presence -> (XMPP presence type or None for available, show, status)
PRESENCE = {
    "online": (None, None, "online"),
    "sleeping": (None, "away", "sleeping"),
    "offline": ("unavailable", None, "offline"),
}


class AssociationContext(ElementBase):
    """<AssociationContext xmlns=NS id=...> holding one MMSpdu (IEC TR 61850-80-3 cl. 7)."""
    name = "AssociationContext"
    namespace = NS
    plugin_attrib = "mms"
    interfaces = {"id"}


register_stanza_plugin(slixmpp.Iq, AssociationContext)
register_stanza_plugin(slixmpp.Message, AssociationContext)


class Session:
    """The bridge's session as jid/resource; on_iq(session, iq) is awaited for MMS iqs,
    on_presence(session, presence) gets the presence stanzas addressed to it,
    on_up(session) is called each time the session is (again) up."""

    def __init__(self, jid, password, resource, on_iq, server=None, ca=None,
                 on_presence=None, subscriptions=None, on_up=None):
        self.client = slixmpp.ClientXMPP("%s/%s" % (jid, resource), password)
        self.resource = resource
        self.server = server
        self.on_iq = on_iq
        self.on_presence = on_presence
        self.on_up = on_up
        self.presence = "offline"
        self.up = asyncio.Event()
        self.stopping = False
        self.connects = 0
        self.auth_failures = 0
        self.dropped = 0
        self._pending = collections.deque()
        self._backoff = 0.0
        self._reconnect = None
        c = self.client
        if ca:
            c.ca_certs = ca
        c.enable_plaintext = False        # STARTTLS only
        c.enable_direct_tls = False
        c.auto_reconnect = False
        # who may subscribe to the bridge's presence is decided by the plugin
        c.roster.auto_authorize = None if subscriptions is None else False
        c.roster.auto_subscribe = False
        self.subscriptions = subscriptions
        c.register_plugin("xep_0199", {"keepalive": True, "interval": 30, "timeout": 10})
        c.register_handler(CoroutineCallback(
            "spot-mms-iq", MatchXPath("{jabber:client}iq/{%s}AssociationContext" % NS),
            self._iq))
        c.add_event_handler("session_start", self._session_start)
        c.add_event_handler("disconnected", self._disconnected)
        c.add_event_handler("connection_failed", self._connection_failed)
        c.add_event_handler("failed_all_auth", self._failed_auth)
        if subscriptions is not None:
            c.add_event_handler("presence_subscribe", self._subscribe)
        if on_presence is not None:
            for ev in ("presence_available", "presence_unavailable"):
                c.add_event_handler(ev, lambda p: self.on_presence(self, p))

    # ------------------------------------------------------------ running

    def start(self):
        if self.server:
            self.client.connect(*self.server)
        else:
            self.client.connect()

    async def stop(self):
        self.stopping = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        self.client.cancel_connection_attempt()
        if self.client.transport is not None:
            self.client.send_presence(ptype="unavailable")
            await self.client.disconnect(wait=1.0)
        self.up.clear()

    async def _session_start(self, _event):
        self.connects += 1
        self._backoff = 0.0
        if self.on_up is not None:
            self.on_up(self)
        self._announce()
        self.up.set()
        while self._pending and self.up.is_set():
            self.client.send(self._pending.popleft())

    def _disconnected(self, reason):
        self.up.clear()
        if self.stopping:
            return
        # at once after a session that was up, then 1, 2, 4 ... MAX_BACKOFF s while
        # sessions keep failing (a refused password must not hammer the server)
        delay, self._backoff = self._backoff, min(MAX_BACKOFF, max(1.0, 2 * self._backoff))
        LOG.info("xmpp %s disconnected (%s); reconnecting in %.0f s", self.resource, reason, delay)
        self._reconnect = asyncio.get_running_loop().call_later(delay, self._connect_again)

    def _connect_again(self):
        if not self.stopping:
            self.start()

    def _connection_failed(self, error):
        # slixmpp doubles its wait (up to 300 s) after each failure: keep it below ours
        self.client._connect_loop_wait = min(self.client._connect_loop_wait, MAX_BACKOFF / 2)
        LOG.debug("xmpp %s: connection failed: %s", self.resource, error)

    def _failed_auth(self, _event):
        self.auth_failures += 1
        LOG.error("xmpp %s: the server refused the bridge's credentials", self.resource)

    # ------------------------------------------------------------ presence

    def set_presence(self, presence):
        """presence: the device's registry presence (online, sleeping, offline)."""
        self.presence = presence
        if self.up.is_set():
            self._announce()

    def _announce(self):
        ptype, show, status = PRESENCE.get(self.presence, PRESENCE["offline"])
        kw = {"pstatus": status}
        if ptype:
            kw["ptype"] = ptype
        if show:
            kw["pshow"] = show
        self.client.send_presence(**kw)

    def _subscribe(self, presence):
        who = presence["from"].bare
        item = self.client.roster[self.client.boundjid.bare][who]
        if self.subscriptions(who):
            item.authorize()
            item.subscribe()
        else:
            item.unauthorize()
            LOG.info("xmpp: refused a presence subscription from %s (no role)", who)

    # ------------------------------------------------------------ stanzas

    async def _iq(self, iq):
        await self.on_iq(self, iq)

    def send(self, stanza):
        """Send now, or once the session is up again (bounded queue)."""
        if self.up.is_set():
            stanza.send()
            return
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(stanza)
