"""Bytes on the wire for four payloads, in SPOT and in the encodings it competes with.

    python3 bench/wire_size.py            # markdown tables for docs/benchmarks.md

Payloads (same information in every encoding):
  telemetry  a heat pump's 9 measurements with a timestamp
  setpoint   one set-point write (flow temperature 21.5 Cel)
  schedule   a plan with 24 hourly power limits (id, start, expiry, primacy)
  forecast   a 96-slot quarter-hour price forecast

Encodings: the SPOT frame (header included); JSON (compact, readable names);
SenML-JSON and SenML-CBOR (RFC 8428) with readable names; SenML-CBOR with
LwM2M-style short paths (IPSO object/instance/resource, as LwM2M 1.1 sends);
and a raw packed C struct carrying the same fields in natural fixed widths
plus the same 4 bytes of op/service/message id: the floor.
Also: frames encoded and decoded per second on CPython, against cbor2 alone
on the same bodies, in one run.
"""
import json
import os
import struct
import sys
import timeit

import cbor2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from spot.core import frame as F  # noqa: E402
from spot.core import model  # noqa: E402
from spot.core import plans as P  # noqa: E402
from spot.core.services import HEAT_PUMP, PLANS, PRICE  # noqa: E402
from spot.profiles import heat_pump, price  # noqa: E402

T0 = 1700000000
HP = model.service_of(heat_pump)

# ---------------------------------------------------------------- payloads (SI)

TELEMETRY = [  # (object name, SI value, unit, LwM2M path, packed format)
    ("p", 1234, "W", "/3305/0/5800", "i"),
    ("q", -80, "var", "/3305/0/5810", "i"),
    ("v", 230.1, "V", "/3316/0/5700", "H"),
    ("i", 5.36, "A", "/3317/0/5700", "h"),
    ("flow_temp", 35.2, "Cel", "/3303/0/5700", "h"),
    ("dhw_temp", 48.1, "Cel", "/3303/1/5700", "h"),
    ("outdoor_temp", -5.2, "Cel", "/3303/2/5700", "h"),
    ("room_temp", 21.4, "Cel", "/3303/3/5700", "h"),
    ("thermal_power", 4520, "W", "/3305/1/5800", "i"),
]
SETPOINT = ("flow_setpoint", 21.5, "Cel", "/3308/0/5900")
SCHEDULE_LIMITS = [1500, 1500, 1500, 1500, 1500, 3000, 4500, 4500, 3000, 2000, 2000, 2000,
                   1500, 1500, 1500, 2000, 3000, 4500, 4500, 4500, 3000, 2000, 1500, 1500]
PLAN = (7, T0, T0 + 86400, 10)  # id, start, expiry, primacy
FORECAST = [round(85 + 40 * ((i % 48) / 48.0) - 25 * (i // 48) + (i * 7 % 11) * 1.3, 1)
            for i in range(96)]


def _row(svc, name):
    return svc.by_name[name]


def _price_forecast_row():
    svc = model.service_of(price)
    for r in svc.rows:
        if r[model.TYPE] == model.SCHEDULE:
            return svc, r
    raise SystemExit("price profile has no schedule object")


# ---------------------------------------------------------------- SPOT


def spot_frames():
    tel = {}
    for name, v, *_ in TELEMETRY:
        r = _row(HP, name)
        tel[r[model.ID]] = model.to_wire(r, v)
    sp = _row(HP, SETPOINT[0])
    limit = _row(HP, "power_limit")
    sched = [T0, 3600, [model.to_wire(limit, v) for v in SCHEDULE_LIMITS]]
    psvc, prow = _price_forecast_row()
    fc = model.to_wire(prow, [T0, 900, FORECAST])
    return {
        "telemetry": F.encode(F.NOTIFY, HEAT_PUMP, 0, [T0, tel]),
        "setpoint": F.encode(F.WRITE, HEAT_PUMP, 42, {sp[model.ID]: model.to_wire(sp, SETPOINT[1])}),
        "schedule": F.encode(F.INVOKE, PLANS, 43, [P.PUSH, list(PLAN) + [{HEAT_PUMP: {limit[model.ID]: sched}}]]),
        "forecast": F.encode(F.NOTIFY, PRICE, 0, [T0, {prow[model.ID]: fc}]),
    }


# ---------------------------------------------------------------- JSON


def json_docs():
    dump = lambda o: json.dumps(o, separators=(",", ":")).encode()  # noqa: E731
    tel = {"device": "hp-1", "time": T0}
    for name, v, *_ in TELEMETRY:
        tel[name] = v
    return {
        "telemetry": dump(tel),
        "setpoint": dump({"device": "hp-1", "flow_setpoint": SETPOINT[1]}),
        "schedule": dump({"plan": PLAN[0], "start": PLAN[1], "expiry": PLAN[2], "primacy": PLAN[3],
                          "object": "power_limit", "step": 3600, "values": SCHEDULE_LIMITS}),
        "forecast": dump({"time": T0, "start": T0, "step": 900, "unit": "EUR/MWh",
                          "price": FORECAST}),
    }


# ---------------------------------------------------------------- SenML (RFC 8428)

BN, BT, BU, N, U, V, T = -2, -3, -4, 0, 1, 2, 6
JSON_LABELS = {BN: "bn", BT: "bt", BU: "bu", N: "n", U: "u", V: "v", T: "t"}


def senml_records(short_paths):
    def name(readable, path):
        return path if short_paths else readable
    tel = []
    for k, (nm, v, unit, path, _) in enumerate(TELEMETRY):
        rec = {N: name(nm, path), V: v}
        if not short_paths:
            rec[U] = unit
        if k == 0:
            rec[BN] = "" if short_paths else "urn:dev:hp-1:"
            rec[BT] = T0
        tel.append(rec)
    sp = [{N: name(SETPOINT[0], SETPOINT[3]), V: SETPOINT[1]}]
    sched = [{BN: "" if short_paths else "urn:dev:hp-1:", BT: T0,
              N: name("plan_id", "/9990/0/1"), V: PLAN[0]},
             {N: name("expiry", "/9990/0/2"), V: PLAN[2]},
             {N: name("primacy", "/9990/0/3"), V: PLAN[3]}]
    for i, v in enumerate(SCHEDULE_LIMITS):
        sched.append({N: name("power_limit", "/3305/0/5900"), T: i * 3600, V: v})
    fc = [{BN: "" if short_paths else "urn:dev:price:", BT: T0, BU: "EUR/MWh",
           N: name("price", "/9991/0/1"), V: FORECAST[0]}]
    for i, v in enumerate(FORECAST[1:], 1):
        fc.append({T: i * 900, V: v})
    if short_paths:  # LwM2M: base name carries the common prefix, no units
        for recs in (tel, sched, fc):
            for r in recs:
                r.pop(U, None)
                r.pop(BU, None)
    return {"telemetry": tel, "setpoint": sp, "schedule": sched, "forecast": fc}


def senml_json():
    out = {}
    for k, recs in senml_records(False).items():
        out[k] = json.dumps([{JSON_LABELS[l]: v for l, v in r.items()} for r in recs],
                            separators=(",", ":")).encode()
    return out


def senml_cbor(short_paths):
    return {k: cbor2.dumps(recs, canonical=True) for k, recs in senml_records(short_paths).items()}


# ---------------------------------------------------------------- packed struct (floor)


def packed():
    head = struct.pack(">BBH", 0x16, HEAT_PUMP, 0)  # the same op/service/mid a frame has
    tel = head + struct.pack(">I", T0)
    for name, v, _, _, fmt in TELEMETRY:
        tel += struct.pack(">" + fmt, model.to_wire(_row(HP, name), v))
    sp = head + struct.pack(">Bh", 7, 215)
    sched = head + struct.pack(">IIIBBBH", PLAN[0], PLAN[1], PLAN[2], PLAN[3], HEAT_PUMP, 17, 3600)
    sched += struct.pack(">24H", *SCHEDULE_LIMITS)
    _, prow = _price_forecast_row()
    fc = head + struct.pack(">IIH", T0, T0, 900)
    fc += struct.pack(">96h", *model.to_wire(prow, [T0, 900, FORECAST])[2])
    return {"telemetry": tel, "setpoint": sp, "schedule": sched, "forecast": fc}


# ---------------------------------------------------------------- throughput


def throughput(n=20000):
    frames = list(spot_frames().values())
    bodies = [F.decode(f)[3] for f in frames]

    def ours():
        for f in frames:
            op, sid, mid, body = F.decode(f)
            F.encode(op, sid, mid, body)

    def theirs():
        for b in bodies:
            cbor2.loads(cbor2.dumps(b, canonical=True))

    t_ours = min(timeit.repeat(ours, number=n // 4, repeat=3)) / (n // 4 * len(frames))
    t_cbor2 = min(timeit.repeat(theirs, number=n // 4, repeat=3)) / (n // 4 * len(frames))
    return 1 / t_ours, 1 / t_cbor2


PAYLOADS = ("telemetry", "setpoint", "schedule", "forecast")


def sizes():
    return {
        "SPOT frame": spot_frames(),
        "JSON": json_docs(),
        "SenML-JSON": senml_json(),
        "SenML-CBOR": senml_cbor(False),
        "SenML-CBOR, LwM2M paths": senml_cbor(True),
        "packed struct (floor)": packed(),
    }


def main():
    table = sizes()
    spot = table["SPOT frame"]
    print("| encoding | " + " | ".join(PAYLOADS) + " |")
    print("|---|" + "---:|" * len(PAYLOADS))
    for enc, docs in table.items():
        print("| %s | %s |" % (enc, " | ".join(str(len(docs[p])) for p in PAYLOADS)))
    print()
    print("| ratio | " + " | ".join(PAYLOADS) + " |")
    print("|---|" + "---:|" * len(PAYLOADS))
    for enc in ("packed struct (floor)", "SenML-CBOR", "SenML-CBOR, LwM2M paths"):
        print("| SPOT / %s | %s |" % (enc, " | ".join(
            "%.2f" % (len(spot[p]) / len(table[enc][p])) for p in PAYLOADS)))
    print()
    ours, theirs = throughput()
    print("| codec (encode + decode, same 4 payloads) | per second |")
    print("|---|---:|")
    print("| SPOT frame codec (pure Python) | %.0f |" % ours)
    from importlib.metadata import version
    print("| cbor2 %s (C extension), body only | %.0f |" % (version("cbor2"), theirs))
    print("| ratio SPOT / cbor2 | %.2f |" % (ours / theirs))


if __name__ == "__main__":
    main()
