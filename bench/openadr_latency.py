"""OpenADR event -> device plans: latency and bytes, against a real openleadr VTN.

    python3 bench/openadr_latency.py [--sizes 10,100,1000] [--coap-max 1000] [--poll 0.25]

For each fleet size a fresh bridge (SQLite store) with the openadr plugin
registers as a VEN with openleadr's OpenADRServer on a loopback port; the
simulated heat pumps are served over CoAP (aiocoap, one endpoint per device,
as `spot sim --connect`) up to --coap-max devices and in-process
(LocalTransport) above that. The VTN publishes one SIMPLE level-2 event
for the whole VEN; measured:

- VEN receives: VTN add_event -> the plugin holds the parsed event (the
  VEN's poll interval is most of it);
- plans queued: -> every device's plan is in the bridge's command queue;
- all acknowledged: -> every targeted device answered its plan (RESULT),
  the command log shows it "done".

Bytes: the oadrDistributeEvent XML the VEN received (and, for comparison,
the same event signed with XML-DSig) against what one device receives and
sends for it (the SPOT INVOKE plans.push frame and its RESULT).
"""
import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

from openleadr import OpenADRServer, objects, utils as outils
from openleadr.messaging import create_message

from spot.cloud_bridge import config as C
from spot.cloud_bridge.coap_link import CoapLink
from spot.cloud_bridge.local_transport import LocalTransport
from spot.cloud_bridge.plugin_api import PluginHost
from spot.cloud_bridge.plugins.openadr import factory
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store
from spot.core import frame as F
from spot.core.plans import PUSH
from spot.core.services import PLANS
from spot.ports.cpython.fleet import Fleet
from spot.ports.cpython.fleet_links import serve_fleet_coap, close_links

VEN_ID = "ven-bench"


def free_port(kind):
    import socket
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def until(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.01)
    return False


async def one_size(n, coap, poll, data_dir):
    vtn_port = free_port(__import__("socket").SOCK_STREAM)
    server = OpenADRServer(vtn_id="BENCH-VTN", http_port=vtn_port, http_host="127.0.0.1",
                           show_fingerprint=False, requested_poll_freq=timedelta(seconds=1))
    server.add_handler("on_create_party_registration", lambda p: (VEN_ID, "reg-1"))
    await server.run()
    options = {"role": "aggregator", "ven_name": "bench",
               "vtn_url": "http://127.0.0.1:%d/OpenADR2/Simple/2.0b" % vtn_port,
               "poll_interval": poll, "report_min": 60}
    config = C.load(None, data=data_dir, offline_after=3600, command_timeout=60,
                    plugins={"openadr": options},
                    reg_total_burst=1000000, reg_max_plain=1000000)  # the fleet joins at once
    store = await open_store(config.store_url)
    bridge = Bridge(config, store)
    await bridge.start()
    host = PluginHost(bridge, config.plugins).load(factories={"openadr": factory})
    ven = host.plugins["openadr"][0].vens[0]
    xml = {}
    ven.client.on_message = lambda mtype, content: xml.__setitem__(mtype, len(content))
    fleet = Fleet({"heat_pump": n}, seed=11, t0=int(time.time()), telemetry=None)
    servers, link, running = {}, None, None
    t_setup = time.monotonic()
    if coap:
        port = free_port(__import__("socket").SOCK_DGRAM)
        link = await CoapLink(bridge, "127.0.0.1", port).start()
        await host.start()
        servers, send = await serve_fleet_coap(fleet, bridge=("127.0.0.1", port))
        running = asyncio.ensure_future(fleet.run(tick=1.0, on_frames=send))
    else:
        local = LocalTransport(bridge)
        await host.start()
        for d in fleet.devices:
            await local.connect(d.device_id, d)
    ok = await until(lambda: len(bridge.known) == n and ven.client.registered.is_set(), 120)
    setup = time.monotonic() - t_setup
    if not ok:
        raise RuntimeError("%d devices: only %d registered" % (n, len(bridge.known)))
    done = set()
    queue = bridge.hub.subscribe()
    plan_cmds = set()

    async def watch():
        while True:
            e = await queue.get()
            if e["type"] == "command":
                if e["status"] == "queued":
                    plan_cmds.add(e["id"])
                elif e["status"] == "done" and e["id"] in plan_cmds:
                    done.add(e["device"])
    watcher = asyncio.ensure_future(watch())
    start = datetime.now(timezone.utc) + timedelta(seconds=30)
    t0 = time.monotonic()
    eid = server.add_event(VEN_ID, "SIMPLE", "level",
                           [objects.Interval(dtstart=start, duration=timedelta(minutes=30),
                                             signal_payload=2.0)],
                           callback=lambda ven_id, event_id, opt_type: None)
    await until(lambda: eid in ven.applied, 30)
    t_recv = ven.applied[eid][0] - t0
    await until(lambda: ven.applied[eid][1] is not None, 120)
    t_queued = ven.applied[eid][1] - t0
    acked = await until(lambda: len(done) == n, 180)
    t_all = time.monotonic() - t0
    # bytes: one device's plan frame and its answer
    cmds = [c for c in await store.list_commands(fleet.devices[0].device_id)
            if c.service == PLANS]
    push = F.encode(F.INVOKE, PLANS, 0x1234, [PUSH, cmds[0].body[1]])
    result = F.encode(F.RESULT, PLANS, 0x1234, None)
    watcher.cancel()
    if running is not None:
        running.cancel()
    await close_links(servers)
    await host.stop()
    if link is not None:
        await link.stop()
    await bridge.stop()
    await store.close()
    await server.stop()
    return {"n": n, "transport": "CoAP" if coap else "in-process", "setup": setup,
            "recv": t_recv, "queued": t_queued, "all": t_all if acked else None,
            "acked": len(done), "xml": xml.get("oadrDistributeEvent"), "push": len(push),
            "result": len(result)}


def signed_size():
    """Size of a comparable oadrDistributeEvent signed with XML-DSig (ECDSA P-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench vtn")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    start = now + timedelta(seconds=30)
    event = objects.Event(
        event_descriptor=objects.EventDescriptor(event_id=outils.generate_id(),
                                                 modification_number=0, event_status="far",
                                                 market_context="oadr://unknown.context",
                                                 created_date_time=now, priority=0),
        active_period=objects.ActivePeriod(dtstart=start, duration=timedelta(minutes=30)),
        event_signals=[objects.EventSignal(
            intervals=[objects.Interval(dtstart=start, duration=timedelta(minutes=30),
                                        signal_payload=2.0)],
            signal_name="SIMPLE", signal_type="level", signal_id=outils.generate_id())],
        targets=[{"ven_id": VEN_ID}], response_required="always")
    kw = dict(response={"response_code": 200, "response_description": "OK", "request_id": "r"},
              request_id="r", vtn_id="BENCH-VTN", events=[event])
    plain = create_message("oadrDistributeEvent", **kw)
    signed = create_message("oadrDistributeEvent",
                            cert=cert.public_bytes(serialization.Encoding.PEM),
                            key=key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), **kw)
    return len(plain.encode()), len(signed.encode())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--coap-max", type=int, default=1000,
                    help="largest fleet served over CoAP; larger ones are in-process")
    ap.add_argument("--poll", type=float, default=0.25, help="VEN poll interval, s")
    args = ap.parse_args(argv)
    logging.getLogger("openleadr").setLevel(logging.ERROR)
    logging.getLogger("spot").setLevel(logging.ERROR)
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as d:
            sys.stdout.flush()
            null = open(os.devnull, "w")
            real = sys.stdout
            sys.stdout = null         # openleadr prints banners
            try:
                rows.append(asyncio.run(one_size(n, n <= args.coap_max, args.poll, d)))
            finally:
                sys.stdout = real
                null.close()
    plain, signed = signed_size()
    print("VEN poll interval %.2f s; event: SIMPLE level 2 to every device (heat pumps)\n"
          % args.poll)
    print("| devices | transport | VEN receives (s) | plans queued (s) "
          "| all acknowledged (s) | per device (ms) |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        total = "%.2f" % r["all"] if r["all"] is not None else "not all (%d)" % r["acked"]
        per = "%.1f" % (1000 * (r["all"] - r["recv"]) / r["n"]) if r["all"] else "-"
        print("| %d | %s | %.2f | %.2f | %s | %s |" % (r["n"], r["transport"], r["recv"],
                                                     r["queued"], total, per))
    r = rows[0]
    print("\n| one event | bytes |\n|---|---:|")
    print("| oadrDistributeEvent XML as received (unsigned) | %d |" % r["xml"])
    print("| the same event signed (XML-DSig, ECDSA P-256, certificate inline) | %d |" % signed)
    print("| SPOT INVOKE plans.push frame to one device | %d |" % r["push"])
    print("| SPOT RESULT frame from the device | %d |" % r["result"])
    print("| device side total (push + result) | %d |" % (r["push"] + r["result"]))
    print("\n(plain create_message of the same event: %d bytes)" % plain)


if __name__ == "__main__":
    main()
