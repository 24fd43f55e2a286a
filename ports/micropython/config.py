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

PATH = 'spot.json'

DEFAULTS = {
    'wifi': None,          # [ssid, key]; None: Ethernet or already up
    'eth': None,           # network.LAN arguments, e.g. {"mdc": 23, "mdio": 18,
                           # "phy_type": "PHY_LAN8720", "phy_addr": 1}: Ethernet
    'oscore': None,        # {secret, salt, sender, recipient[, context]} in hex
    'user': None,          # MQTT user name and password
    'password': None,
    'ca': None,            # CA certificate file (DER) for mqtts://
    'plan': None,          # default plan by names, SI units
    'comm_timeout': 900,   # s without the controller before the default plan governs
    'telemetry': 60,       # s between telemetry reports (0: none)
    'qos': 1,              # MQTT telemetry QoS: 1 queues while the link is down
    'lifetime': 300,       # s between CoAP registrations / MQTT keep-alive
    'port': 0,             # local UDP port for CoAP (0: any)
    'sleepy': False,       # wake, send what is queued, take what waits, sleep
    'awake_s': 10,         # s to stay awake after the link is up (sleepy)
    'sleep_s': 300,        # s of deep sleep between wakes (sleepy)
    'wdt_ms': 30000,       # watchdog timeout (0: no watchdog)
    'backoff_ms': [1000, 60000],  # first and longest delay between reconnects
}

SCHEMES = {'coap': 5683, 'mqtt': 1883, 'mqtts': 8883}


def parse_uri(uri):
    """(scheme, host, port) of a bridge URI such as coap://[::1]:5683; ValueError if bad."""
    i = uri.find('://') if isinstance(uri, str) else -1
    scheme = uri[:i] if i > 0 else None
    if scheme not in SCHEMES:
        raise ValueError('bridge must be coap://, mqtt:// or mqtts://HOST[:PORT]')
    rest = uri[i + 3:].split('/')[0]
    port = SCHEMES[scheme]
    if rest.startswith('['):
        j = rest.find(']')
        host, tail = rest[1:j], rest[j + 1:]
    else:
        j = rest.rfind(':')
        host, tail = (rest, '') if j < 0 else (rest[:j], rest[j:])
    if tail:
        if tail[0] != ':' or not tail[1:].isdigit() or not 0 < int(tail[1:]) < 65536:
            raise ValueError('bad port in %r' % uri)
        port = int(tail[1:])
    if not host:
        raise ValueError('no host in %r' % uri)
    return scheme, host, port


def check(cfg):
    """Raise ValueError naming the first field that is missing or wrong; return cfg."""
    for key in ('id', 'profile', 'bridge'):
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            raise ValueError('config: %s must be a non-empty string' % key)
    parse_uri(cfg['bridge'])
    for key in ('comm_timeout', 'telemetry', 'lifetime', 'port', 'awake_s', 'sleep_s',
                'wdt_ms', 'qos'):
        v = cfg[key]
        if type(v) is not int or v < 0:
            raise ValueError('config: %s must be an unsigned integer' % key)
    if cfg['qos'] > 1:
        raise ValueError('config: qos must be 0 or 1')
    b = cfg['backoff_ms']
    if (type(b) is not list or len(b) != 2 or type(b[0]) is not int
            or type(b[1]) is not int or not 0 < b[0] <= b[1]):
        raise ValueError('config: backoff_ms must be [first, longest] with 0 < first <= longest')
    w = cfg['wifi']
    if w is not None and (type(w) is not list or len(w) != 2):
        raise ValueError('config: wifi must be [ssid, key]')
    o = cfg['oscore']
    if o is not None:
        if type(o) is not dict:
            raise ValueError('config: oscore must be a map')
        for key in ('secret', 'sender', 'recipient'):
            if key not in o:
                raise ValueError('config: oscore.%s is missing' % key)
        for key in o:
            try:
                unhex(o[key])
            except (TypeError, ValueError):
                raise ValueError('config: oscore.%s must be hex' % key)
    p = cfg['plan']
    if p is not None and type(p) is not dict:
        raise ValueError('config: plan must be a map of service name to objects')
    return cfg


def unhex(text):
    """bytes of a hex string (empty string: b'')."""
    if type(text) is not str or len(text) & 1:
        raise ValueError('not hex')
    return bytes(int(text[i:i + 2], 16) for i in range(0, len(text), 2))


def load(path=PATH):
    """The checked configuration in `path` with defaults filled in.

    Raises OSError when the file is missing, ValueError when it is not valid."""
    with open(path) as f:
        text = f.read()
    try:
        cfg = json.loads(text)
    except ValueError:
        raise ValueError('config: %s is not JSON' % path)
    if type(cfg) is not dict:
        raise ValueError('config: %s must hold a JSON object' % path)
    return check(with_defaults(cfg))


def with_defaults(cfg):
    out = {}
    for k in DEFAULTS:
        out[k] = DEFAULTS[k]
    for k in cfg:
        out[k] = cfg[k]
    return out


def save(cfg, path=PATH):
    """Write cfg (checked) to path, through a temporary file so power loss keeps the old one."""
    check(with_defaults(cfg))
    import os
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(json.dumps(cfg))
    os.rename(tmp, path)


def plan_entries(plan, services):
    """Node default-plan entries {sid: {oid: wire value}} from the config's names.

    services maps sid -> core.model.Service (node.services). Unknown names raise
    ValueError; values are checked later by node.set_default_plan()."""
    from ...core.model import to_wire
    if not plan:
        return {}
    by_name = {}
    for sid in services:
        by_name[services[sid].name] = services[sid]
    out = {}
    for sname in plan:
        svc = by_name.get(sname)
        if svc is None:
            raise ValueError('config: plan names unknown service %r' % sname)
        objs = {}
        for oname in plan[sname]:
            row = svc.by_name.get(oname)
            if row is None:
                raise ValueError('config: plan names unknown object %s.%s' % (sname, oname))
            objs[row[0]] = to_wire(row, plan[sname][oname])
        out[svc.sid] = objs
    return out
