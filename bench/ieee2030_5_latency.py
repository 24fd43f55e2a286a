"""IEEE 2030.5 DERControl -> device plans: latency and bytes, against a real 2030.5 server.

    python3 bench/ieee2030_5_latency.py [--sizes 10,1000] [--coap-max 100] [--poll 0.25]

The server is gridappsd-2030-5 on a loopback port (tests/ieee2030_5_peer.py
installs and starts it). For each fleet size a fresh bridge (SQLite store)
with the ieee2030_5 plugin polls it over mutual TLS; simulated PV inverters
are served over CoAP (one endpoint per device, as `spot sim --connect`) up to
--coap-max devices and in-process (LocalTransport) above that. One DERControl
(opModMaxLimW 50 %) is created through the server's admin API; measured from
the admin API's answer to:

- client holds it: the plugin has parsed the control (its poll interval is most of it);
- all acknowledged: every device answered its plan (RESULT), command "done".

Bytes: what one poll reads from the server (DeviceCapability to DERControlList,
every resource the walk needs), the DERControlList holding the control,
and the Response the client posts, against the SPOT INVOKE plans.push frame
and RESULT one device receives and sends.
"""
import asyncio
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from ieee2030_5_peer import GridappsdServer  # noqa: E402
from plan_bench import FleetOnBridge, arguments, bridge_with_plugin, free_port, until  # noqa: E402
from spot.cloud_bridge.plugins.ieee2030_5 import factory, sep_xml as X  # noqa: E402
from spot.ports.cpython.fleet import Fleet  # noqa: E402


async def one_size(n, coap, poll, server, data_dir, mrid):
    os.makedirs(data_dir, exist_ok=True)
    options = {"role": "aggregator", "server_url": server.url, "cert": server.cert,
               "key": server.key, "ca": server.ca, "poll_interval": poll, "post_interval": 0}
    store, bridge, host, plugin = await bridge_with_plugin(data_dir, "ieee2030_5", factory,
                                                           options)
    client = plugin.client
    poll_bytes, by_path = [], {}
    request = client._request

    async def counting(method, path, body=None):      # bytes read per poll
        status, content, location = await request(method, path, body)
        if path == client.opts["dcap_path"]:
            poll_bytes.append(0)
        if poll_bytes:
            poll_bytes[-1] += len(content)
        by_path[path.split("?")[0]] = len(content)
        return status, content, location
    client._request = counting
    fleet = Fleet({"pv_inverter": n}, seed=11, t0=int(time.time()), telemetry=None)
    on = await FleetOnBridge(bridge, host, fleet, coap).start()
    if not await until(lambda: len(bridge.known) == n and client.polls >= 1, 120):
        raise RuntimeError("%d devices: only %d registered" % (n, len(bridge.known)))
    on.watch()
    await server.add_control(mrid=mrid, start=int(time.time()) + 60, duration=1800,
                             base={"opModMaxLimW": "5000"}, reply_to=None)
    t0 = time.monotonic()
    await until(lambda: mrid in client.events, 30)
    t_recv = time.monotonic() - t0
    out = await on.acknowledged_then_close(store, t0)
    return dict(out, n=n, transport="CoAP" if coap else "in-process", recv=t_recv,
                poll=poll_bytes[-1] if poll_bytes else None, lfdi=client.lfdi,
                requests=len(by_path), list=by_path.get("/derp_0_derc"))


def main(argv=None):
    args = arguments(argv, __doc__, "10,1000", 100, "client")
    logging.getLogger("spot").setLevel(logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        server = GridappsdServer(os.path.join(d, "server"), free_port(
            __import__("socket").SOCK_STREAM)).start()
        try:
            for k, n in enumerate(int(x) for x in args.sizes.split(",")):
                mrid = "BE%030X" % (k + 1)
                rows.append(asyncio.run(one_size(n, n <= args.coap_max, args.poll, server,
                                                 os.path.join(d, "bridge-%d" % n), mrid)))
        finally:
            server.stop()
    print("client poll interval %.2f s; one DERControl (opModMaxLimW 50 %%) to every device "
          "(PV inverters)\n" % args.poll)
    print("| devices | transport | client holds it (s) | all acknowledged (s) "
          "| per device (ms) |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        total = "%.2f" % r["all"] if r["all"] is not None else "not all (%d)" % r["acked"]
        per = "%.1f" % (1000 * (r["all"] - r["recv"]) / r["n"]) if r["all"] else "-"
        print("| %d | %s | %.2f | %s | %s |" % (r["n"], r["transport"], r["recv"], total, per))
    r = rows[0]
    resp = len(X.response(r["lfdi"], "BE%030X" % 1, X.RECEIVED, time.time()))
    print("\n| one control | bytes |\n|---|---:|")
    print("| one poll, DeviceCapability to DERControlList: %d resources, XML bodies | %d |"
          % (r["requests"], r["poll"]))
    print("| the DERControlList holding the one control, as served | %d |" % r["list"])
    print("| a DERControlResponse the client posts | %d |" % resp)
    print("| SPOT INVOKE plans.push frame to one device | %d |" % r["push"])
    print("| SPOT RESULT frame from the device | %d |" % r["result"])


if __name__ == "__main__":
    main()
