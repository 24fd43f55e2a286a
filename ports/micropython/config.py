"""Device configuration: one small JSON file on the board's flash.

    {"id": "hp-1", "profile": "heat_pump", "bridge": "coap://192.0.2.10:5683",
     "wifi": ["my-ssid", "my-key"], "plan": {"heat_pump": {"sg_ready": 2}},
     "oscore": {"secret": "0102..", "salt": "", "sender": "01", "recipient": ""}}

Only id, profile and bridge are required; load() fills in the rest from
DEFAULTS. The bridge URI picks the transport: coap:// (UDP, OSCORE when an
"oscore" section is present), mqtt:// or mqtts:// (TCP, TLS; "user" and
"password" for the broker). "plan" is the local default plan by names, in SI
units (service name -> object name -> value); plan_entries() turns it into
the node's wire form. Keys in "oscore" are hex strings.
"""
import json

# (key, default) pairs, one constant (in flash when frozen); load() makes the dict
DEFAULTS = (
    ('wifi', None),          # [ssid, key]; None: Ethernet or already up
    ('eth', None),           # network.LAN arguments, e.g. {"mdc": 23, "mdio": 18,
                             # "phy_type": "PHY_LAN8720", "phy_addr": 1}: Ethernet
    ('oscore', None),        # {secret, salt, sender, recipient[, context]} in hex
    ('user', None),          # MQTT user name and password
    ('password', None),
    ('ca', None),            # CA certificate file (DER) for mqtts://
    ('plan', None),          # default plan by names, SI units
    ('comm_timeout', 900),   # s without the controller before the default plan governs
    ('telemetry', 60),       # s between telemetry reports (0: none)
    ('qos', 1),              # MQTT telemetry QoS (0 or 1): 1 queues while the link is down
    ('lifetime', 300),       # s between CoAP registrations / MQTT keep-alive
    ('port', 0),             # local UDP port for CoAP (0: any)
    ('sleepy', False),       # wake, send what is queued, take what waits, sleep
    ('awake_s', 10),         # s to stay awake after the link is up (sleepy)
    ('sleep_s', 300),        # s of deep sleep between wakes (sleepy)
    ('wdt_ms', 30000),       # watchdog timeout (0: no watchdog)
    ('backoff_ms', (1000, 60000)),  # first and longest delay between reconnects
    ('mem_reset', 10),       # MemoryErrors within a minute that reset the board (0: never)
)

SCHEMES = {'coap': 5683, 'mqtt': 1883, 'mqtts': 8883}


def parse_uri(uri):
    """(scheme, host, port) of a bridge URI such as coap://[::1]:5683; ValueError if bad."""
    uri = str(uri)
    i = uri.find('://')
    scheme = uri[:i]
    if i < 1 or scheme not in SCHEMES:
        raise ValueError('config: bridge must be coap://, mqtt:// or mqtts://HOST[:PORT]')
    rest = uri[i + 3:].split('/')[0]
    j = rest.find(']') + 1 if rest.startswith('[') else rest.rfind(':')
    host, tail = (rest, '') if j < 0 else (rest[:j], rest[j:])
    host = host.strip('[]')
    port = SCHEMES[scheme]
    if tail:
        port = int(tail[1:]) if tail[0] == ':' and tail[1:].isdigit() else 0
        if not 0 < port < 65536:
            raise ValueError('config: bad port in %r' % uri)
    if not host:
        raise ValueError('config: no host in %r' % uri)
    return scheme, host, port


def check(cfg):
    """Raise ValueError naming the first field that is missing or wrong; return cfg."""
    for key in ('id', 'profile', 'bridge'):
        if not (type(cfg.get(key)) is str and cfg[key]):
            _bad(key, 'a non-empty string')
    parse_uri(cfg['bridge'])
    for key in ('comm_timeout', 'telemetry', 'lifetime', 'port', 'awake_s', 'sleep_s',
                'wdt_ms', 'qos', 'mem_reset'):
        if not _uint(cfg[key]):
            _bad(key, 'an unsigned integer')
    if cfg['qos'] > 1:
        _bad('qos', '0 or 1')
    b = cfg['backoff_ms']
    if not (type(b) in (list, tuple) and len(b) == 2 and _uint(b[0]) and _uint(b[1])
            and 0 < b[0] <= b[1]):
        _bad('backoff_ms', '[first, longest] with 0 < first <= longest')
    w = cfg['wifi']
    if w is not None and not (type(w) is list and len(w) == 2):
        _bad('wifi', '[ssid, key]')
    o = cfg['oscore']
    if o is not None:
        if not (type(o) is dict and all(k in o for k in ('secret', 'sender', 'recipient'))):
            _bad('oscore', 'a map with secret, sender and recipient')
        for key in o:
            try:    # text only: MicroPython's fromhex also reads bytes, CPython's does not
                if type(o[key]) is not str:
                    raise TypeError
                bytes.fromhex(o[key])
            except (TypeError, ValueError):
                raise ValueError('config: oscore.%s must be hex' % key)
    if cfg['plan'] is not None and type(cfg['plan']) is not dict:
        _bad('plan', 'a map of service name to objects')
    return cfg


def _bad(key, what):
    raise ValueError('config: %s must be %s' % (key, what))


def _uint(v):
    return type(v) is int and v >= 0


def load(cfg='spot.json'):
    """The checked configuration with DEFAULTS filled in (a new dict), from the path of
    its JSON file or from the dict read from one.

    Raises OSError when the file is missing, ValueError when it is not valid."""
    if type(cfg) is str:
        path = cfg
        with open(path) as f:
            try:
                cfg = json.load(f)
            except ValueError:
                cfg = None
        if type(cfg) is not dict:
            raise ValueError('config: %s must hold a JSON object' % path)
    out = dict(DEFAULTS)
    out.update(cfg)
    return check(out)


def plan_entries(plan, services):
    """Node default-plan entries {sid: {oid: wire value}} from the config's names.

    services maps sid -> core.model.Service (node.services). Unknown names raise
    ValueError; values are checked later by node.set_default_plan()."""
    out = {}
    if not plan:
        return out
    from ...core import model
    for sname in plan:
        svc = None
        for sid in services:
            if services[sid].name == sname:
                svc = services[sid]
        if svc is None:
            raise ValueError('config: plan names unknown service %r' % sname)
        objs = out[svc.sid] = {}
        for oname in plan[sname]:
            row = svc.named(oname)
            if row is None:
                raise ValueError('config: plan names unknown object %s.%s' % (sname, oname))
            objs[row[0]] = model.to_wire(row, plan[sname][oname])
    return out
