"""`spot bridge` and `spot demo`: assemble the service and run it until stopped.

    async with running_bridge(config) as parts: ...     # tests and the demo
    run_bridge(config)                                  # the command: until Ctrl-C

The bridge = store + Bridge + CoAP link (always) + MQTT link (if configured)
+ plugins + HTTP server (API, dashboard, /metrics).
"""
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time

from aiohttp import web

from .banner import without_password
from .coap_link import CoapLink
from .peer_log import RateLimitFilter
from .plugin_api import PluginHost
from .service import Bridge
from .serving import tune_for_serving
from .store import open_store

log = logging.getLogger("spot.bridge")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (structured logs)."""

    def format(self, record):
        entry = {"t": round(record.created, 3), "level": record.levelname.lower(),
                 "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level="info", json_lines=True):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if json_lines else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_library_loggers()


def quiet_library_loggers():
    """aiocoap logs per request (info) and per bad datagram (warning): keep warnings,
    at most one line per message template a minute, never a traceback."""
    for name in ("coap-server", "coap"):
        logger = logging.getLogger(name)
        logger.setLevel("WARNING")
        logger.filters[:] = [RateLimitFilter()]


class Parts:
    """What a running bridge is made of (for tests and the demo)."""
    bridge = store = coap = mqtt = plugins = http = None
    instances = leadership = relay = None   # several instances on one PostgreSQL store
    http_url = ""
    listening = ()    # one line per address the bridge serves or connects to


def listening_lines(config, http_url):
    """Every address a bridge with this config is reachable on, one line each."""
    host, port = config.coap_addr
    hp = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    lines = ["http %s (API, dashboard, /metrics)" % http_url,
             "coap udp %s (devices; plain CoAP registration: %s%s)"
             % (hp, config.reg_plain, ", OSCORE" if config.keys else "")]
    if config.psk:
        lines.append("coaps udp %s (DTLS, %d PSK identities)"
                     % (hp[:hp.rindex(":")] + ":%d" % (port + 1), len(config.psk)))
    if config.mqtt_url:
        lines.append("mqtt client of %s (devices through the broker)"
                     % without_password(config.mqtt_url))
    return lines


@contextlib.asynccontextmanager
async def running_bridge(config, clock=time.time, plugin_factories=None):
    os.makedirs(config.data, exist_ok=True)
    p = Parts()
    p.store = await open_store(config.store_url)
    try:
        p.bridge = Bridge(config, p.store, clock=clock)
        p.plugins = PluginHost(p.bridge, config.plugins).load(plugin_factories)
        await p.bridge.start()
        if p.store.dialect == "postgresql":   # other instances may share it (scale-out.md)
            from .instances import Instances
            p.instances = p.bridge.instances = await Instances(p.bridge, p.store,
                                                               config.instance).start()
        else:   # one instance: what it claimed and never sent before it stopped goes out again
            freed = await p.store.release_claims(config.instance)
            if freed:
                log.warning("%d command(s) claimed before the bridge stopped and never sent "
                            "are queued again", len(freed))
        host, port = config.coap_addr
        creds = None
        if config.psk:
            from ..ports.cpython.coap_transport import dtls_credentials
            creds = dtls_credentials({k.encode(): bytes.fromhex(v) for k, v in config.psk.items()})
        keyring = None
        if config.keys:
            from .pairing import Keyring, PairingService
            keyring = Keyring(config.keys)
            p.bridge.pairing = PairingService(p.bridge, keyring)
        p.coap = await CoapLink(p.bridge, host, port, credentials=creds, keyring=keyring,
                                fast=config.coap_fast).start()
        if config.mqtt_url:
            from .mqtt_link import MqttLink
            p.mqtt = await MqttLink(p.bridge, config.mqtt_url, config.mqtt_ca or None,
                                    config.mqtt_share_group or None,
                                    client_id="spot-" + config.instance,
                                    max_packet=config.mqtt_max_packet).start()
        if p.instances is not None and p.plugins.plugins:   # one endpoint per deployment
            from .leader import Leadership
            p.leadership = await Leadership(p.store.conninfo, p.plugins.start, p.plugins.stop,
                                            name=config.instance).start()
            p.bridge.metrics.gauge("leader", lambda: int(p.leadership.leading),
                                   "1 while this instance runs the plugins (the leader)")
            from .event_relay import EventRelay   # the leader's plugins see every instance
            p.relay = await EventRelay(p.bridge, p.store, p.leadership, config.instance).start()
        else:
            await p.plugins.start()
        from .http_api import make_app
        from .http_guard import SERVER_OPTIONS
        runner = web.AppRunner(make_app(p.bridge), access_log=None, **SERVER_OPTIONS)
        await runner.setup()
        h_host, h_port = config.http_addr
        site = web.TCPSite(runner, h_host, h_port)
        await site.start()
        bound = runner.addresses[0]
        p.http = runner
        p.http_url = "http://%s:%d" % (bound[0] if ":" not in bound[0] else "[%s]" % bound[0],
                                       bound[1])
        p.listening = listening_lines(config, p.http_url)
        log.info("bridge %s: store %s", config.instance, config.store_url.split("@")[-1])
        for line in p.listening:
            log.info("listening: %s", line)
        yield p
    finally:
        for step in (p.relay and p.relay.stop,
                     p.leadership.stop if p.leadership else p.plugins and p.plugins.stop,
                     p.http and p.http.cleanup, p.mqtt and p.mqtt.stop, p.coap and p.coap.stop,
                     p.instances and p.instances.stop, p.bridge and p.bridge.stop):
            if step:
                try:
                    await step()
                except Exception:
                    log.exception("stopping")
        await p.store.close()


def store_problem_line(config, error):
    """One line saying what is wrong with the store a bridge could not start on, and
    how to recover (no traceback: the operator needs the what and the how)."""
    from .store import StoreCorrupt, SchemaError
    where = config.store_url.split("@")[-1]
    if isinstance(error, StoreCorrupt):
        path = where[len("sqlite://"):] if where.startswith("sqlite://") else where
        return ("the store %s is damaged (%s); to recover: stop every bridge using it, move "
                "%s and its -wal and -shm files aside, then restore a backup or start on an "
                "empty store (devices register again; `sqlite3 OLD .recover | sqlite3 NEW` may "
                "save the rest)" % (where, str(error).rsplit(": ", 1)[-1], path))
    if isinstance(error, SchemaError):
        return "the store %s: %s; run a bridge of that version or newer" % (where, error)
    return "the store %s is unavailable: %s" % (where, error)


async def serve_until_stopped(config, ready=None):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with running_bridge(config) as parts:
        tune_for_serving()
        if ready is not None:
            await ready(parts)
        await stop.wait()


def run_bridge(config, ready=None):
    asyncio.run(serve_until_stopped(config, ready))
