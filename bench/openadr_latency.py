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
import asyncio
import logging
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

from openleadr import OpenADRServer, objects, utils as outils
from openleadr.messaging import create_message

from spot.cloud_bridge.plugins.openadr import factory
from spot.ports.cpython.fleet import Fleet

# free_port, until: openadr3_latency.py imports them from here
from plan_bench import (FleetOnBridge, arguments, bridge_with_plugin,  # noqa: F401
                        free_port, until)

VEN_ID = "ven-bench"


async def one_size(n, coap, poll, data_dir):
    vtn_port = free_port(__import__("socket").SOCK_STREAM)
    server = OpenADRServer(vtn_id="BENCH-VTN", http_port=vtn_port, http_host="127.0.0.1",
                           show_fingerprint=False, requested_poll_freq=timedelta(seconds=1))
    server.add_handler("on_create_party_registration", lambda p: (VEN_ID, "reg-1"))
    await server.run()
    options = {"role": "aggregator", "ven_name": "bench",
               "vtn_url": "http://127.0.0.1:%d/OpenADR2/Simple/2.0b" % vtn_port,
               "poll_interval": poll, "report_min": 60}
    store, bridge, host, plugin = await bridge_with_plugin(data_dir, "openadr", factory, options)
    ven = plugin.vens[0]
    xml = {}
    ven.client.on_message = lambda mtype, content: xml.__setitem__(mtype, len(content))
    fleet = Fleet({"heat_pump": n}, seed=11, t0=int(time.time()), telemetry=None)
    t_setup = time.monotonic()
    on = await FleetOnBridge(bridge, host, fleet, coap).start()
    ok = await until(lambda: len(bridge.known) == n and ven.client.registered.is_set(), 120)
    setup = time.monotonic() - t_setup
    if not ok:
        raise RuntimeError("%d devices: only %d registered" % (n, len(bridge.known)))
    on.watch()
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
    out = await on.acknowledged_then_close(store, t0)
    await server.stop()
    return dict(out, n=n, transport="CoAP" if coap else "in-process", setup=setup,
                recv=t_recv, queued=t_queued, xml=xml.get("oadrDistributeEvent"))


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
    args = arguments(argv, __doc__, "10,100,1000", 1000, "VEN")
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
