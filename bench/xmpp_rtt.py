"""XMPP (IEC 61850-8-2 style) round trips, report latency and bytes, through a real Prosody.

    python3 bench/xmpp_rtt.py [--sizes 10,1000] [--reads 50] [--controls 20]

A fresh Prosody (tests/prosody.py: STARTTLS, SASL, loopback), a bridge
(SQLite store) with the xmpp plugin, N simulated heat pumps on the bridge's
in-process transport (SimDevice; no CoAP, so the device side costs nothing),
and an operator client in its own process (tests/xmpp_operator.py, slixmpp).
Measured from the bench process, which writes the operator's requests and
reads its stanzas through a pipe:

- GetDataValues: one MMS read of MMET1$MX$EnvTmp$mag$f, answer back (sequential);
- control: one Oper of DRCC1$CO$OutWSet (APC, direct control) to the answer,
  which the bridge sends once the device has executed the WRITE it queued;
- report latency: every device sends one telemetry NOTIFY at once; time from
  handing the NOTIFY to the bridge to the operator holding the device's
  informationReport message (median and last).

Per-device presence (one XMPP session per device) is on at 10 devices and off
above 100 (one gateway session carries the reports), see docs/xmpp.md.

Bytes for one telemetry report: the SPOT NOTIFY frame, the MMS
informationReport PDU in BER (what an IEC 61850-8-1 stack puts in its
presentation layer) and in XER, and the whole message stanza as the operator
received it.
"""
import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from prosody import Prosody  # noqa: E402  (tests/prosody.py)
from waiting import until  # noqa: E402
from xmpp_rig import (OPERATOR, OperatorProcess, XmppBridge, read, write,  # noqa: E402
                      oper_value, mms_of, XPNS)
from spot.cloud_bridge.iec61850.model import ld_inst  # noqa: E402
from spot.cloud_bridge.local_transport import LocalTransport  # noqa: E402
from spot.cloud_bridge.plugins.xmpp import xer  # noqa: E402
from spot.ports.cpython.simulator import SimDevice  # noqa: E402


def ms(values):
    values = sorted(values)
    return "%.1f / %.1f" % (statistics.median(values) * 1000, values[int(len(values) * 0.95) - 1] * 1000)


async def one_size(n, reads, controls):
    prosody = Prosody().start()
    tmp = tempfile.mkdtemp(prefix="spot-bench-xmpp-")
    prosody.register(OPERATOR, OPERATOR + "-pw")
    from pathlib import Path
    rig = XmppBridge(Path(tmp), prosody, per_device_presence=n <= 100, rate=1000, burst=1000)
    await rig.start(offline_after=3600)
    local = LocalTransport(rig.bridge)
    t0 = int(time.time())
    devs = {}
    for i in range(n):
        dev_id = "hp-%04d" % (i + 1)
        d = SimDevice("heat_pump", dev_id, seed=i, t0=t0, telemetry=60)
        await local.connect(dev_id, d)
        devs[dev_id] = d
    captured = {}
    send_report = rig.plugin._send_report

    def capture(device, pdu):
        captured.setdefault(device, pdu)
        send_report(device, pdu)
    rig.plugin._send_report = capture
    op = await OperatorProcess(prosody, OPERATOR, OPERATOR + "-pw").ready()
    out = {"devices": n}
    try:
        op.command(op="subscribe", to=rig.jid)
        op.command(op="presence")
        assert await until(lambda: rig.plugin.listeners, 20), "operator presence not seen"
        if n <= 100:
            assert await until(lambda: all(s.up.is_set() for s in rig.plugin.sessions.values()), 60)
        domain = "SPOT" + ld_inst("hp-0001")
        # reads
        times = []
        for i in range(reads):
            start = time.monotonic()
            answer = await op.ask(rig.full_jid(), read(i + 1, (domain, "MMET1$MX$EnvTmp$mag$f")))
            times.append(op.answered_at - start)
            assert answer.get("type") == "result"
        out["read"] = ms(times)
        # controls
        times = []
        for i in range(controls):
            start = time.monotonic()
            answer = await op.ask(rig.full_jid(), write(1000 + i, domain, "DRCC1$CO$OutWSet$Oper",
                                                        oper_value(3000.0 + 100 * (i % 2))), "set")
            times.append(op.answered_at - start)
            assert mms_of(answer).find(".//m:write/m:success", XPNS) is not None, answer
        out["control"] = ms(times)
        # reports: one NOTIFY per device, all at once
        frames = {dev_id: d.advance(t0 + 60) for dev_id, d in devs.items()}
        already = len(op.stanzas("message"))
        start = time.monotonic()
        await asyncio.gather(*(local.uplink(dev_id, fr) for dev_id, fr in frames.items()))
        assert await until(lambda: len(op.stanzas("message")) - already >= n, 120), \
            "%d of %d reports" % (len(op.stanzas("message")) - already, n)
        arrivals = sorted(e["at"] - start for e in op.events
                          if e["ev"] == "stanza" and e["kind"] == "message")[-n:]
        out["report"] = "%.1f / %.1f" % (statistics.median(arrivals) * 1000, arrivals[-1] * 1000)
        # bytes of one report
        pdu = captured["hp-0001"]
        msg = next(e["xml"] for e in op.events if e["ev"] == "stanza" and e["kind"] == "message")
        out["bytes"] = {"spot": len(frames["hp-0001"][0][1]), "ber": len(xer.encode(pdu, "ber")),
                        "xer": len(xer.encode(pdu)), "stanza": len(msg.encode())}
    finally:
        op.stop()
        await rig.stop()
        prosody.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,1000")
    ap.add_argument("--reads", type=int, default=50)
    ap.add_argument("--controls", type=int, default=20)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print("| devices | GetDataValues median / p95 (ms) | control median / p95 (ms) | "
          "report median / last (ms) |")
    print("|---:|---:|---:|---:|")
    sizes = []
    for n in [int(x) for x in args.sizes.split(",")]:
        r = asyncio.run(one_size(n, args.reads, args.controls))
        sizes.append(r)
        print("| %d | %s | %s | %s |" % (n, r["read"], r["control"], r["report"]), flush=True)
    b = sizes[0]["bytes"]
    print()
    print("| one telemetry report | bytes |")
    print("|---|---:|")
    print("| SPOT NOTIFY frame | %d |" % b["spot"])
    print("| MMS informationReport, BER (IEC 61850-8-1 PDU, without the OSI layers) | %d |" % b["ber"])
    print("| MMS informationReport, XER | %d |" % b["xer"])
    print("| XMPP message stanza as the operator received it | %d |" % b["stanza"])


if __name__ == "__main__":
    main()
