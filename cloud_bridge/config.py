"""Bridge configuration: embedded defaults, a TOML file, then command-line flags.

    [bridge]
    data = "spot-data"                  # data directory (SQLite store, logs)
    store = "sqlite:spot-data/bridge.db"      # or "postgresql://user@host:5432/db"
    http = "127.0.0.1:8080"             # API, dashboard, /metrics
    coap = "127.0.0.1:5683"             # devices; DTLS on the next port ("0.0.0.0:5683": all)
    coap_fast = true                    # coap:// on SPOT's endpoint; false: on aiocoap
    instance = "bridge-1"               # this instance's id, unique among those sharing a
                                        #   PostgreSQL store (docs/scale-out.md)
    keys = "spot-data/keys"             # OSCORE keyring: commissioned devices (optional)
    retention_days = 30                 # telemetry history kept
    offline_after = 900                 # seconds without traffic: offline (sleepy: sleeping)
    command_timeout = 30                # seconds a sent command waits for its RESULT
    command_expiry = 172800             # seconds a queued command waits for its device
    commands_in_flight = 256            # commands sent and not yet answered, all devices

    [mqtt]                              # optional: devices over an MQTT broker
    url = "mqtt://127.0.0.1:1883"       # mqtts:// for TLS
    ca = "ca.pem"                       # CA for mqtts://
    share_group = "spot-bridge"         # scale out: instances split device traffic
    max_packet = 65536                  # bytes: a longer message is dropped unread and
                                        #   acknowledged (refused in the log and /metrics)

    [registration]                      # who may register device ids (docs/security-transports.md)
    plain = "loopback"                  # plain CoAP: "off", "loopback" (only 127.0.0.0/8, ::1), "open"
    allow = ["hp-*"]                    # allow-list of ids or patterns (empty: any id)
    source_burst = 4                    # new ids one source may register at once,
    source_interval = 60                #   then one per this many seconds
    total_burst = 1000                  # new ids all CoAP sources may register at once,
    total_per_second = 100              #   then this many per second
    max_plain = 10000                   # devices registered over plain CoAP, at most
    refresh_burst = 4                   # re-registrations of one known id written at once,
    refresh_interval = 30               #   then one per this many seconds; an unchanged one
                                        #   this soon after its write is answered unwritten

    [access]
    operator = "operator"               # actor paired as owner with every device
    tokens = { "s3cret" = "alice" }     # API bearer tokens -> actor (none: all callers are the operator)
    hosts = ["bridge.example.net"]      # names the API answers to besides its socket's address

    [plugins.example]                   # plugins found through entry points, enabled here
    role = "aggregator"
"""
import os
import re
import tomllib
from urllib.parse import quote
from dataclasses import dataclass, field

from ..core.mqtt import MAX_REMAINING_LENGTH
from .mqtt_session import MAX_PACKET as MQTT_MAX_PACKET


INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def split_hostport(text, default_host="127.0.0.1"):
    """("host", port) from "host:port", "[v6]:port" or ":port"."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("expected HOST:PORT, got %r" % text)
    host = host.strip("[]") or default_host
    return host, int(port)


@dataclass
class Config:
    data: str = "spot-data"
    store: str = ""
    http: str = "127.0.0.1:8080"
    coap: str = "127.0.0.1:5683"
    coap_fast: bool = True      # plain coap:// on SPOT's endpoint (cloud_bridge.coap_fast)
    instance: str = "bridge-1"
    keys: str = ""
    retention_days: float = 30
    offline_after: float = 900
    command_timeout: float = 30
    command_expiry: float = 172800
    commands_in_flight: int = 256
    mqtt_url: str = ""
    mqtt_ca: str = ""
    mqtt_share_group: str = ""
    mqtt_max_packet: int = MQTT_MAX_PACKET
    operator: str = "operator"
    tokens: dict = field(default_factory=dict)
    hosts: list = field(default_factory=list)     # Host/Origin names besides the socket's
    psk: dict = field(default_factory=dict)       # DTLS identity -> key (hex)
    plugins: dict = field(default_factory=dict)   # name -> options
    reg_plain: str = "loopback"                   # [registration] (cloud_bridge.registration)
    reg_allow: list = field(default_factory=list)
    reg_source_burst: int = 4
    reg_source_interval: float = 60
    reg_total_burst: int = 1000
    reg_total_per_second: float = 100
    reg_max_plain: int = 10000
    reg_refresh_burst: int = 4
    reg_refresh_interval: float = 30

    @property
    def store_url(self):
        return self.store or "sqlite://" + quote(os.path.abspath(os.path.join(self.data,
                                                                             "bridge.db")))

    @property
    def http_addr(self):
        return split_hostport(self.http)

    @property
    def coap_addr(self):
        return split_hostport(self.coap)


_SECTIONS = {
    "bridge": ("data", "store", "http", "coap", "coap_fast", "instance", "keys", "retention_days",
               "offline_after", "command_timeout", "command_expiry", "commands_in_flight"),
    "mqtt": {"url": "mqtt_url", "ca": "mqtt_ca", "share_group": "mqtt_share_group",
             "max_packet": "mqtt_max_packet"},
    "access": ("operator", "tokens", "hosts"),
    "dtls": {"psk": "psk"},
    "registration": {k: "reg_" + k for k in ("plain", "allow", "source_burst", "source_interval",
                                             "total_burst", "total_per_second", "max_plain",
                                             "refresh_burst", "refresh_interval")},
}


def load(path=None, **overrides):
    """A Config from defaults, the TOML file at path (if any), then overrides (None skipped)."""
    cfg = Config()
    if path:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        for section, keys in _SECTIONS.items():
            table = doc.get(section, {})
            names = keys if isinstance(keys, dict) else {k: k for k in keys}
            for key, value in table.items():
                if key not in names:
                    raise ValueError("unknown setting [%s] %s in %s" % (section, key, path))
                setattr(cfg, names[key], value)
        cfg.plugins = dict(doc.get("plugins", {}))
        unknown = set(doc) - set(_SECTIONS) - {"plugins"}
        if unknown:
            raise ValueError("unknown section(s) %s in %s" % (sorted(unknown), path))
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
    from .http_guard import check_exposure, check_hosts
    check_exposure(split_hostport(cfg.http)[0], cfg.tokens)
    check_hosts(cfg.hosts)
    if type(cfg.commands_in_flight) is not int or cfg.commands_in_flight < 1:
        raise ValueError("commands_in_flight must be a positive integer, got %r"
                         % (cfg.commands_in_flight,))
    largest = MAX_REMAINING_LENGTH + 5   # MQTT's largest packet
    if type(cfg.mqtt_max_packet) is not int or not 1024 <= cfg.mqtt_max_packet <= largest:
        raise ValueError("[mqtt] max_packet must be a whole number of bytes from 1024 to %d "
                         "(MQTT's largest packet), got %r" % (largest, cfg.mqtt_max_packet))
    if type(cfg.coap_fast) is not bool:
        raise ValueError("coap_fast must be true or false, got %r" % (cfg.coap_fast,))
    _check_registration(cfg)
    if type(cfg.instance) is not str or not INSTANCE_ID.fullmatch(cfg.instance):
        raise ValueError("[bridge] instance must be 1..64 letters, digits, '.', '_' or '-' "
                         "(it names the MQTT client and the instance's routes), not %r"
                         % (cfg.instance,))
    coap_host = split_hostport(cfg.coap)[0]
    if cfg.psk and coap_host in ("0.0.0.0", "::", ""):
        raise ValueError("DTLS ([dtls] psk) listens on one address only: set coap to the "
                         "address devices reach, e.g. coap = \"192.0.2.10:5683\" (coaps:// is "
                         "then on port 5684), not the any-address %r" % cfg.coap)
    if cfg.psk:
        from ..ports.cpython.dtls_link import dtls_available
        missing = dtls_available()
        if missing:
            raise ValueError("[dtls] psk: " + missing)
    return cfg


def _check_registration(cfg):
    """ValueError saying which [registration] setting is wrong."""
    from .registration import PLAIN_POLICIES
    if cfg.reg_plain not in PLAIN_POLICIES:
        raise ValueError("[registration] plain must be one of %s, not %r"
                         % (", ".join(PLAIN_POLICIES), cfg.reg_plain))
    if type(cfg.reg_allow) is not list or not all(type(p) is str for p in cfg.reg_allow):
        raise ValueError("[registration] allow must be a list of device ids or patterns")
    for name in ("source_burst", "source_interval", "total_burst", "total_per_second",
                 "max_plain", "refresh_interval"):
        v = getattr(cfg, "reg_" + name)
        if type(v) not in (int, float) or not v > 0:
            raise ValueError("[registration] %s must be a positive number, not %r" % (name, v))
    if type(cfg.reg_refresh_burst) is not int or cfg.reg_refresh_burst < 1:
        # (below one, no re-registration of a known id could ever be written)
        raise ValueError("[registration] refresh_burst must be a whole number of at least 1, "
                         "not %r" % (cfg.reg_refresh_burst,))
