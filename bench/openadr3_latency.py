"""OpenADR 3 event -> device plans: latency and bytes, against FakeVtn3 (a TEST DOUBLE VTN).

    python3 bench/openadr3_latency.py [--sizes 10,1000] [--coap-max 1000] [--poll 0.25]

No installable OpenADR 3 VTN exists; the VTN here is the tests' in-memory
double (tests/openadr3_vtn_double.py) on a loopback port, so the VTN's own
share is what that small aiohttp server costs, not a production VTN's.

For each fleet size and each path (webhook notification; polling only), a
fresh bridge (SQLite store) with the openadr3 plugin registers its VEN and
one resource per device; the simulated heat pumps are served over CoAP
(aiocoap, one endpoint per device, as `spot sim --connect`) up to --coap-max
devices and in-process above that. The VTN creates one SIMPLE level-2 event
for the program; measured from that moment:

- VEN applies: the plugin has the event translated and starts pushing plans
  (webhook: the notification's delivery; polling: the event is created just
  after a poll round ended, so this is a whole poll interval, the worst case);
- plans queued: every device's plan is in the bridge's command queue;
- all acknowledged: every device answered its plan (RESULT), command `done`.

Bytes: the event as JSON (the object, the notification carrying it, the
GET /events answer listing it) against what one device receives and sends
for it (the SPOT INVOKE plans.push frame and its RESULT).
"""
import asyncio
import json
import logging
import pathlib
import socket
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

from openadr3_vtn_double import FakeVtn3, event_object  # noqa: E402
from plan_bench import FleetOnBridge, arguments, bridge_with_plugin, free_port, until  # noqa: E402

from spot.cloud_bridge.plugins.openadr3 import factory  # noqa: E402
from spot.ports.cpython.fleet import Fleet  # noqa: E402


async def one_cell(n, coap, webhook, poll, data_dir):
    vtn = await FakeVtn3(free_port(socket.SOCK_STREAM)).start()
    program = vtn.add_program("bench")
    options = {"role": "aggregator", "ven_name": "bench", "vtn_url": vtn.url,
               "client_id": "ven-client", "client_secret": "ven-secret",
               "poll_interval": 3600 if webhook else poll, "report_interval": 3600}
    if webhook:
        options["webhook_listen"] = "127.0.0.1:%d" % free_port(socket.SOCK_STREAM)
    store, bridge, host, plugin = await bridge_with_plugin(data_dir, "openadr3", factory, options)
    ven = plugin.ven
    fleet = Fleet({"heat_pump": n}, seed=11, t0=int(time.time()), telemetry=None)
    attached = await FleetOnBridge(bridge, host, fleet, coap).start()
    ok = await until(lambda: len(bridge.known) == n and ven.synced.is_set(), 180)
    if not ok:
        raise RuntimeError("%d devices: only %d registered" % (n, len(bridge.known)))
    ven._wake.set()    # one more round: every device a resource at the VTN
    await until(lambda: len(vtn.resources) == n, 180)
    rounds = ven.syncs  # start right after a poll round ended: polling's worst case
    await until(lambda: ven.syncs > rounds, 60 + poll)
    attached.watch()
    t0 = time.monotonic()
    ev = await vtn.add_event(event_object(program["id"], "SIMPLE", [2], time.time() + 30, 1800))
    eid = ev["id"]
    await until(lambda: eid in ven.applied_at, 60)
    t_apply = ven.applied_at[eid] - t0
    await until(lambda: eid in ven.active, 180)
    t_queued = time.monotonic() - t0
    stored = vtn.events[eid]
    sizes = {"object": len(json.dumps(stored).encode()),
             "notification": len(json.dumps({"objectType": "EVENT", "operation": "POST",
                                             "object": stored}).encode()),
             "list": len(json.dumps([stored]).encode())}
    out = await attached.acknowledged_then_close(store, t0, 300)
    await vtn.stop()
    return dict(out, n=n, transport="CoAP" if coap else "in-process",
                path="webhook" if webhook else "poll %.2f s" % poll,
                apply=t_apply, queued=t_queued, **sizes)


def main(argv=None):
    args = arguments(argv, __doc__, "10,1000", 1000, "VEN")
    logging.getLogger("spot").setLevel(logging.ERROR)
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        for webhook in (True, False):
            with tempfile.TemporaryDirectory() as d:
                rows.append(asyncio.run(one_cell(n, n <= args.coap_max, webhook, args.poll, d)))
    print("event: SIMPLE level 2 to every device (heat pumps); VTN: FakeVtn3 (test double)\n")
    print("| devices | transport | path | VEN applies (s) | plans queued (s) "
          "| all acknowledged (s) | per device (ms) |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for r in rows:
        total = "%.2f" % r["all"] if r["all"] is not None else "not all (%d)" % r["acked"]
        per = "%.1f" % (1000 * (r["all"] - r["apply"]) / r["n"]) if r["all"] else "-"
        print("| %d | %s | %s | %.2f | %.2f | %s | %s |" % (
            r["n"], r["transport"], r["path"], r["apply"], r["queued"], total, per))
    r = rows[0]
    print("\n| one event | bytes |\n|---|---:|")
    print("| event object (JSON) | %d |" % r["object"])
    print("| notification carrying it (webhook POST body) | %d |" % r["notification"])
    print("| GET /events answer listing it | %d |" % r["list"])
    print("| SPOT INVOKE plans.push frame to one device | %d |" % r["push"])
    print("| SPOT RESULT frame from the device | %d |" % r["result"])
    print("| device side total (push + result) | %d |" % (r["push"] + r["result"]))


if __name__ == "__main__":
    main()
