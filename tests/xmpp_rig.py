"""What the XMPP plugin tests start, and the operator's side of the MMS payloads.

- OperatorProcess: tests/xmpp_operator.py (slixmpp) in its own process, its
  stanzas collected as they arrive.
- Request builders that write the XER of MMS requests with lxml from
  ISO 9506-2 / X.693 directly (not with the plugin's asn1tools codec), every
  one validated against tests/xmpp/mms_subset.xsd before it is sent; answers
  are validated against the same schema and read with XPath.
- xmpp_bridge(): a bridge with a CoAP link and the xmpp plugin loaded by its
  entry point, logged in to the test's Prosody.
- SimFleet: `spot sim ... --connect coap://` in its own process.
"""
import contextlib
import json
import os
import subprocess
import sys
import threading
import time

from lxml import etree

from netutil import free_udp_port
from waiting import until
from spot.cloud_bridge import config as C
from spot.cloud_bridge.coap_link import CoapLink
from spot.cloud_bridge.plugin_api import PluginHost
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store

HERE = os.path.dirname(os.path.abspath(__file__))
NS = "http://www.iec.ch/61850/2015/SCSM_8_2"
M = "{%s}" % NS
XPNS = {"m": NS, "c": "jabber:client", "s": "urn:ietf:params:xml:ns:xmpp-stanzas"}
SCHEMA = etree.XMLSchema(etree.parse(os.path.join(HERE, "xmpp", "mms_subset.xsd")))
PASSWORD = "bridge-secret"
OPERATOR, MONITOR, NOROLE = "op", "mon", "norole"


# ------------------------------------------------------------------ payloads (lxml)

def _el(parent, tag, text=None):
    e = etree.SubElement(parent, M + tag) if parent is not None else etree.Element(M + tag)
    if text is not None:
        e.text = str(text)
    return e


def _name(parent, domain, item):
    ds = _el(_el(parent, "name"), "domain-specific")
    _el(ds, "domainId", domain)
    _el(ds, "itemId", item)


def _request(invoke_id, service):
    ctx = etree.Element(M + "AssociationContext", nsmap={None: NS})
    ctx.set("id", "a%d" % invoke_id)
    req = _el(_el(ctx, "MMSpdu"), "confirmed-RequestPDU")
    _el(req, "invokeID", invoke_id)
    return ctx, _el(_el(req, "confirmedServiceRequest"), service)


def _checked(ctx):
    pdu = ctx[0]
    assert SCHEMA.validate(etree.fromstring(etree.tostring(ctx))), SCHEMA.error_log.last_error
    return etree.tostring(ctx, encoding="unicode") if pdu is not None else None


def get_name_list(invoke_id, object_class, domain=None):
    ctx, gnl = _request(invoke_id, "getNameList")
    _el(_el(gnl, "objectClass"), "basicObjectClass", object_class)
    scope = _el(gnl, "objectScope")
    if domain is None:
        _el(scope, "vmdSpecific")
    else:
        _el(scope, "domainSpecific", domain)
    return _checked(ctx)


def read(invoke_id, *names):
    ctx, rd = _request(invoke_id, "read")
    lov = _el(_el(rd, "variableAccessSpecificatn"), "listOfVariable")
    for domain, item in names:
        _name(_el(_el(lov, "SEQUENCE"), "variableSpecification"), domain, item)
    return _checked(ctx)


def read_data_set(invoke_id, domain, item):
    ctx, rd = _request(invoke_id, "read")
    ds = _el(_el(_el(rd, "variableAccessSpecificatn"), "variableListName"), "domain-specific")
    _el(ds, "domainId", domain)
    _el(ds, "itemId", item)
    return _checked(ctx)


def data_set_attributes(invoke_id, domain, item):
    ctx, g = _request(invoke_id, "getNamedVariableListAttributes")
    ds = _el(g, "domain-specific")
    _el(ds, "domainId", domain)
    _el(ds, "itemId", item)
    return _checked(ctx)


def write(invoke_id, domain, item, data):
    """data: a function adding one MMS Data element to the listOfData element."""
    ctx, wr = _request(invoke_id, "write")
    lov = _el(_el(wr, "variableAccessSpecificatn"), "listOfVariable")
    _name(_el(_el(lov, "SEQUENCE"), "variableSpecification"), domain, item)
    data(_el(wr, "listOfData"))
    return _checked(ctx)


def oper_value(ctl_val):
    """The Oper / SBOw structure of IEC 61850-8-1 for an INT32 ctlVal (INC), or for a
    float ctlVal the AnalogueValue {f} of an APC."""
    def add(parent):
        s = _el(parent, "structure")
        if isinstance(ctl_val, float):                      # ctlVal {f}
            float_value(ctl_val)(_el(s, "structure"))
        else:
            _el(s, "integer", ctl_val)                      # ctlVal
        origin = _el(s, "structure")
        _el(origin, "integer", 3)                           # orCat remote-control
        _el(origin, "octet-string", "6f70")                 # orIdent "op"
        _el(s, "unsigned", 1)                               # ctlNum
        _el(s, "utc-time", "0000000000000000")              # T
        _el(_el(s, "boolean"), "false")                     # Test
        _el(s, "bit-string", "00")                          # Check
    return add


def float_value(f):
    """MMS Data floating-point of IEC 61850-8-1 (exponent width 8, IEEE single)."""
    import struct

    def add(parent):
        _el(parent, "floating-point", (b"\x08" + struct.pack(">f", f)).hex())
    return add


def variable_attributes(invoke_id, domain, item):
    ctx, g = _request(invoke_id, "getVariableAccessAttributes")
    _name(g, domain, item)
    return _checked(ctx)


def iq(to, iq_id, payload, kind="get"):
    return '<iq xmlns="jabber:client" type="%s" to="%s" id="%s">%s</iq>' % (kind, to, iq_id, payload)


def mms_of(stanza):
    """The MMSpdu element of a stanza (lxml), validated against the schema."""
    ctx = stanza.find("m:AssociationContext", XPNS)
    assert ctx is not None, etree.tostring(stanza)
    assert SCHEMA.validate(etree.fromstring(etree.tostring(ctx))), \
        (SCHEMA.error_log.last_error, etree.tostring(ctx))
    return ctx.find("m:MMSpdu", XPNS)


def float_of(hex_text):
    """An MMS floating-point (IEC 61850-8-1: 08 then an IEEE single) as a float."""
    import struct
    raw = bytes.fromhex(hex_text)
    assert raw[0] == 8 and len(raw) == 5
    return struct.unpack(">f", raw[1:])[0]


# ------------------------------------------------------------------ the operator

class OperatorProcess:
    """tests/xmpp_operator.py for jid in its own process; .events as they arrive."""

    def __init__(self, prosody, user, password):
        self.jid = "%s@%s" % (user, prosody.domain)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "xmpp_operator.py"), self.jid, password,
             "127.0.0.1", str(prosody.port), prosody.ca],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.events = []
        self._ids = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            ev["at"] = time.monotonic()
            if ev.get("ev") == "stanza":
                ev["el"] = etree.fromstring(ev["xml"])
            self.events.append(ev)

    def command(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def seen(self, name):
        return any(e["ev"] == name for e in self.events)

    async def ready(self):
        assert await until(lambda: self.seen("ready") or self.seen("auth_failed")
                           or self.proc.poll() is not None, 20), "operator did not connect"
        assert self.seen("ready"), self.events
        return self

    def stanzas(self, kind):
        return [e["el"] for e in self.events if e["ev"] == "stanza" and e["kind"] == kind]

    async def ask(self, to, payload, kind="get", timeout=20):
        """Send an iq with payload to `to`; its answer (lxml element)."""
        self._ids += 1
        iq_id = "q%d" % self._ids
        self.command(op="send", xml=iq(to, iq_id, payload, kind))

        def answer():
            return next((s for s in self.stanzas("iq") if s.get("id") == iq_id), None)
        assert await until(lambda: answer() is not None, timeout, every=0.002), \
            "no answer to %s" % iq_id
        self.answered_at = next(e["at"] for e in self.events if e["ev"] == "stanza"
                                and e["kind"] == "iq" and e["el"].get("id") == iq_id)
        return answer()

    def show_of(self, full_jid):
        """The <show> of the last presence from full_jid ("" when none)."""
        last = [p for p in self.stanzas("presence") if p.get("from") == full_jid]
        show = [c.text for c in last[-1] if etree.QName(c).localname == "show"] if last else []
        return show[0] if show else ""

    def presence_of(self, full_jid):
        """The type of the last presence from full_jid: "available", "unavailable" or None."""
        last = [p for p in self.stanzas("presence") if p.get("from") == full_jid]
        return (last[-1].get("type") or "available") if last else None

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.command(op="quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


def error_condition(stanza):
    """(type, condition) of an iq error."""
    assert stanza.get("type") == "error", etree.tostring(stanza)
    # the operator's slixmpp writes stanzas without their default namespace jabber:client
    err = next((c for c in stanza if etree.QName(c).localname == "error"), None)
    assert err is not None, etree.tostring(stanza)
    cond = [c for c in err if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}")
            and not c.tag.endswith("}text")]
    return err.get("type"), etree.QName(cond[0]).localname


# ------------------------------------------------------------------ the bridge and fleet

class XmppBridge:
    """A bridge with a CoAP link on a free port and the xmpp plugin (entry point)."""

    def __init__(self, tmp_path, prosody, **options):
        self.tmp_path = tmp_path
        self.prosody = prosody
        self.jid = prosody.register("bridge", PASSWORD)
        self.options = dict(role="aggregator", jid=self.jid, password=PASSWORD,
                            server="127.0.0.1:%d" % prosody.port, ca=prosody.ca,
                            operators={"%s@%s" % (OPERATOR, prosody.domain): "operator",
                                       "%s@%s" % (MONITOR, prosody.domain): "monitor"})
        self.options.update(options)

    async def start(self, offline_after=3, wait_up=True):
        config = C.load(None, data=str(self.tmp_path), offline_after=offline_after,
                        plugins={"xmpp": self.options})
        self.store = await open_store(config.store_url)
        self.bridge = Bridge(config, self.store)
        await self.bridge.start()
        self.coap_port = free_udp_port()
        self.link = await CoapLink(self.bridge, "127.0.0.1", self.coap_port).start()
        self.host = PluginHost(self.bridge, config.plugins).load()
        self.plugin = self.host.plugins["xmpp"][0]
        await self.host.start()
        if wait_up:
            assert await until(lambda: self.plugin.main.up.is_set(), 20), "bridge not on XMPP"
        return self

    def full_jid(self, resource=None):
        return "%s/%s" % (self.jid, resource or self.plugin.opts["resource"])

    async def stop(self):
        await self.host.stop()
        await self.link.stop()
        await self.bridge.stop()
        await self.store.close()


class SimFleet:
    """`spot sim PROFILE --count N --connect coap://...` in its own process."""

    def __init__(self, coap_port, profile="heat_pump", count=1):
        self.argv = [sys.executable, "-m", "spot.cli", "sim", profile, "--count", str(count),
                     "--connect", "coap://127.0.0.1:%d" % coap_port, "--tick", "0.2",
                     "--telemetry", "1", "--start", str(int(time.time()))]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


@contextlib.asynccontextmanager
async def xmpp_setup(tmp_path, prosody, users=(OPERATOR,), profile="heat_pump", count=1,
                     **options):
    """Accounts for users (password = user name + "-pw"), the bridge with the plugin, a
    `spot sim` fleet registered with it, and an OperatorProcess per user (ready, its
    presence subscribed to the bridge); yields (rig, fleet, {user: operator})."""
    for u in (OPERATOR, MONITOR, NOROLE):
        prosody.register(u, u + "-pw")
    rig = await XmppBridge(tmp_path, prosody, **options).start()
    fleet = SimFleet(rig.coap_port, profile, count).start()
    ops = {}
    try:
        async def registered():
            return len(await rig.store.list_devices()) == count
        assert await until(registered, 20), "the fleet did not register"
        for u in users:
            ops[u] = await OperatorProcess(prosody, u, u + "-pw").ready()
            ops[u].command(op="subscribe", to=rig.jid)
            ops[u].command(op="presence")
        yield rig, fleet, ops
    finally:
        for op in ops.values():
            op.stop()
        fleet.stop()
        await rig.stop()
