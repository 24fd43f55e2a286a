"""OpenADR 3 JSON (programs, events, notifications) <-> plain data, no I/O.

Events become the flat event of plugins/dr_translate.py, which the OpenADR
2.0b plugin uses too, so both versions map to the same plans and price
frames. PAYLOADS says which OpenADR 3 payload type becomes which signal:

| payload type               | signal (dr_translate)           | value            |
|----------------------------|---------------------------------|------------------|
| SIMPLE                     | SIMPLE / level                  | level 0-3        |
| PRICE                      | ELECTRICITY_PRICE / price       | currency per unit|
| IMPORT_CAPACITY_LIMIT      | IMPORT_CAPACITY_LIMIT/setpoint  | kW -> W          |
| EXPORT_CAPACITY_LIMIT      | EXPORT_CAPACITY_LIMIT/setpoint  | kW -> W          |
| DISPATCH_SETPOINT          | LOAD_DISPATCH / setpoint        | kW -> W          |
| DISPATCH_SETPOINT_RELATIVE | LOAD_DISPATCH / delta           | kW -> W          |

Other payload types are carried through and act on nothing. Times: an
interval's own intervalPeriod wins over the event's; an interval without a
start follows the previous one. OpenADR 3 priority (0 highest, null none)
becomes 2.0b priority + 1 (1 highest, 0 none). Targets (RESOURCE_NAME,
GROUP, VEN_NAME) become dr_translate targets (resource_id, group_id, ven_id).

Reports go the other way: report_body() builds a report from store sums
(dr_readings.aggregate) for the payload types an event's reportDescriptors
ask for.
"""
import json
import re
import zlib
from datetime import datetime, timezone

from ..dr_translate import EventError, PRICE_UNITS, _number

# payload type -> (signal name, signal type, factor to the signal's unit or None)
PAYLOADS = {
    "SIMPLE": ("SIMPLE", "level", 1.0),
    "PRICE": ("ELECTRICITY_PRICE", "price", None),
    "IMPORT_CAPACITY_LIMIT": ("IMPORT_CAPACITY_LIMIT", "setpoint", "power"),
    "EXPORT_CAPACITY_LIMIT": ("EXPORT_CAPACITY_LIMIT", "setpoint", "power"),
    "DISPATCH_SETPOINT": ("LOAD_DISPATCH", "setpoint", "power"),
    "DISPATCH_SETPOINT_RELATIVE": ("LOAD_DISPATCH", "delta", "power"),
}
POWER_UNITS = {"KW": 1000.0, "W": 1.0, "MW": 1e6}   # payloadDescriptor units -> W
PRICE_PER = {"KWH": "currencyPerKWh", "MWH": "currencyPerMWh", "WH": "currencyPerWh"}
TARGETS = {"RESOURCE_NAME": "resource_id", "GROUP": "group_id", "VEN_NAME": "ven_id"}

# report payload type -> (store sum, units, factor from the sum's unit)
REPORTS = {
    "DEMAND": ("power", "KW", 0.001),
    "USAGE": ("energy", "KWH", 0.001),
}
AGGREGATE_RESOURCE = "AGGREGATED_REPORT"

_OBJECT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_DURATION = re.compile(r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                       r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


# ----------------------------------------------------------------- scalars

def object_id(x, what):
    if not isinstance(x, str) or not _OBJECT_ID.match(x):
        raise EventError("%s is not an object id: %r" % (what, x))
    return x


def parse_time(s, what="time"):
    """Unix seconds of an RFC 3339 date-time with a zone; EventError otherwise."""
    return int(_instant(s, what))


def _instant(s, what="time"):
    if not isinstance(s, str):
        raise EventError("%s is not a date-time: %r" % (what, s))
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise EventError("%s is not a date-time: %r" % (what, s)) from None
    if t.tzinfo is None:
        raise EventError("%s has no time zone: %r" % (what, s))
    return t.timestamp()


def format_time(t):
    return datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(s, what="duration"):
    """Seconds of an ISO 8601 duration (weeks, days, hours, minutes, seconds).

    Years and months have no fixed length and are refused; so are negative
    durations.
    """
    if not isinstance(s, str):
        raise EventError("%s is not a duration: %r" % (what, s))
    m = _DURATION.match(s)
    if m is None:
        raise EventError("%s is not an ISO 8601 duration: %r" % (what, s))
    y, mo, w, d, h, mi, sec = m.groups()
    if (y and int(y)) or (mo and int(mo)):
        raise EventError("%s in years or months has no fixed length: %r" % (what, s))
    total = (int(w or 0) * 7 + int(d or 0)) * 86400 + int(h or 0) * 3600 \
        + int(mi or 0) * 60 + float(sec or 0)
    return int(round(total))


def format_duration(seconds):
    return "PT%dS" % int(seconds)


# ----------------------------------------------------------------- targets

def targets_of(maps, what="targets"):
    """dr_translate targets ([{kind: [values]}]) from OpenADR 3 valuesMaps.

    Target types this VEN does not know (postal codes, service areas) leave
    no device: an event aimed at something we cannot place acts on nothing.
    """
    if maps is None:
        return []
    if not isinstance(maps, list):
        raise EventError("%s is not a list" % what)
    out = []
    for m in maps:
        if not isinstance(m, dict) or not isinstance(m.get("type"), str) \
                or not isinstance(m.get("values"), list):
            raise EventError("%s: a target is not {type, values}" % what)
        kind = TARGETS.get(m["type"], "unknown:" + m["type"])
        out.append({kind: [v for v in m["values"] if isinstance(v, str)]})
    return out


# ----------------------------------------------------------------- programs

def parse_program(obj):
    """{"id", "name", "targets"} of a program object; EventError if malformed."""
    if not isinstance(obj, dict):
        raise EventError("program is not an object")
    name = obj.get("programName")
    if not isinstance(name, str) or not 1 <= len(name) <= 128:
        raise EventError("program has no programName")
    return {"id": object_id(obj.get("id"), "program id"), "name": name,
            "targets": targets_of(obj.get("targets"), "program targets")}


# ----------------------------------------------------------------- events

def _descriptors(obj):
    out = {}
    descs = obj.get("payloadDescriptors")
    if descs is None:
        return out
    if not isinstance(descs, list):
        raise EventError("payloadDescriptors is not a list")
    for d in descs:
        if not isinstance(d, dict) or not isinstance(d.get("payloadType"), str):
            raise EventError("payload descriptor without a payloadType")
        out[d["payloadType"]] = d
    return out


def _period(p, what):
    """(start or None, duration or None, randomize) of an intervalPeriod."""
    if p is None:
        return None, None, 0
    if not isinstance(p, dict):
        raise EventError("%s is not an object" % what)
    start = parse_time(p.get("start"), what + " start")
    dur = p.get("duration")
    dur = None if dur is None else parse_duration(dur, what + " duration")
    rnd = p.get("randomizeStart")
    rnd = 0 if rnd is None else parse_duration(rnd, what + " randomizeStart")
    return start, dur, rnd


def _signal(ptype, desc, defaults):
    """(name, type, factor, measurement) for a payload type, or None if carried through."""
    spec = PAYLOADS.get(ptype)
    if spec is None:
        return (ptype, None, 1.0, None)
    name, stype, factor = spec
    units = (desc or {}).get("units")
    if factor == "power":
        unit = units or "KW"
        if unit not in POWER_UNITS:
            raise EventError("%s: unit %r is not a power unit (KW, W, MW)" % (ptype, unit))
        return (name, stype, POWER_UNITS[unit], None)
    if factor is None:   # price: the unit names the energy it is per, plus a currency
        per = PRICE_PER.get(units or "KWH")
        if per is None or per not in PRICE_UNITS:
            raise EventError("PRICE: unit %r is not per energy (KWH, MWH, WH)" % units)
        currency = (desc or {}).get("currency") or defaults.get("currency")
        if currency is not None and (not isinstance(currency, str) or len(currency) != 3):
            raise EventError("PRICE: currency %r is not an ISO 4217 code" % currency)
        return (name, stype, 1.0, {"name": per, "unit": currency})
    return (name, stype, factor, None)


def parse_event(obj, defaults=None):
    """The flat event (dr_translate) of an OpenADR 3 event object; EventError if malformed.

    Adds "program" (programID), "name" and "modified" (modificationDateTime,
    Unix s, None if absent) to the flat form; "mod" is a number that changes
    with the content.
    """
    defaults = defaults or {}
    if not isinstance(obj, dict):
        raise EventError("event is not an object")
    eid = object_id(obj.get("id"), "event id")
    program = object_id(obj.get("programID"), "event %s programID" % eid)
    priority = obj.get("priority")
    if priority is not None and (type(priority) is not int or priority < 0):
        raise EventError("event %s: priority must be an unsigned integer" % eid)
    e_start, e_dur, e_rnd = _period(obj.get("intervalPeriod"), "event intervalPeriod")
    descs = _descriptors(obj)
    ivs = obj.get("intervals")
    if not isinstance(ivs, list) or not ivs:
        raise EventError("event %s has no intervals" % eid)
    per_type = {}      # payload type -> [(start, duration, value)]
    ids = set()
    cursor, randomize = e_start, e_rnd
    for iv in ivs:
        if not isinstance(iv, dict) or type(iv.get("id")) is not int:
            raise EventError("event %s: interval without an integer id" % eid)
        if iv["id"] in ids:
            raise EventError("event %s: interval id %d twice" % (eid, iv["id"]))
        ids.add(iv["id"])
        start, dur, rnd = _period(iv.get("intervalPeriod"), "interval %d period" % iv["id"])
        start = cursor if start is None else start
        dur = e_dur if dur is None else dur
        randomize = max(randomize, rnd)
        if start is None:
            raise EventError("event %s: interval %d has no start" % (eid, iv["id"]))
        if not dur:
            raise EventError("event %s: interval %d has no duration (open-ended intervals "
                             "are not supported)" % (eid, iv["id"]))
        cursor = start + dur
        payloads = iv.get("payloads")
        if not isinstance(payloads, list) or not payloads:
            raise EventError("event %s: interval %d has no payloads" % (eid, iv["id"]))
        for p in payloads:
            if not isinstance(p, dict) or not isinstance(p.get("type"), str) \
                    or not isinstance(p.get("values"), list):
                raise EventError("event %s: interval %d: payload is not {type, values}"
                                 % (eid, iv["id"]))
            if p["type"] not in PAYLOADS:    # carried, not read: no value to check
                per_type.setdefault(p["type"], []).append((start, dur, None))
                continue
            if len(p["values"]) != 1:
                raise EventError("event %s: %s needs one value per interval, got %d"
                                 % (eid, p["type"], len(p["values"])))
            x = _number(p["values"][0], "event %s %s value" % (eid, p["type"]))
            per_type.setdefault(p["type"], []).append((start, dur, x))
    spans = [(s, s + d) for vals in per_type.values() for s, d, _ in vals]
    t0, t1 = min(s for s, _ in spans), max(e for _, e in spans)
    signals = []
    for ptype, vals in per_type.items():
        name, stype, factor, meas = _signal(ptype, descs.get(ptype), defaults)
        vals = sorted(vals, key=lambda v: v[:2])
        for (s0, d0, _), (s1, _, _) in zip(vals, vals[1:]):
            if s1 < s0 + d0 and stype is not None:
                raise EventError("event %s: %s intervals overlap" % (eid, ptype))
        signals.append((name, stype, [(s - t0, d, None if x is None else x * factor)
                                      for s, d, x in vals], meas))
    try:
        modified = _instant(obj.get("modificationDateTime"))
    except EventError:
        modified = None          # VTN bookkeeping: not a reason to refuse the event
    return {"id": eid, "mod": fingerprint(obj), "status": "active",
            "priority": 0 if priority is None else min(priority + 1, 255),
            "start": t0, "duration": t1 - t0, "startafter": randomize, "signals": signals,
            "targets": targets_of(obj.get("targets"), "event %s targets" % eid),
            "response_required": "never", "market_context": program,
            "program": program, "name": obj.get("eventName"),
            "modified": modified}


def fingerprint(obj):
    """A number that changes whenever the event's content does (its modification number)."""
    return zlib.crc32(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()) & 0x7FFFFFFF


def end_of(ev):
    return ev["start"] + ev["startafter"] + ev["duration"]


def overlapping(events):
    """[(id a, id b)] of events at the same priority whose times overlap and that
    carry the same signal: the devices will follow the one pushed last."""
    out = []
    evs = sorted(events, key=lambda e: e["id"])
    for i, a in enumerate(evs):
        kinds_a = {(n, t) for n, t, _, _ in a["signals"] if t is not None}
        for b in evs[i + 1:]:
            if a["priority"] != b["priority"]:
                continue
            if not kinds_a & {(n, t) for n, t, _, _ in b["signals"]}:
                continue
            if a["start"] < end_of(b) and b["start"] < end_of(a):
                out.append((a["id"], b["id"]))
    return out


# ----------------------------------------------------------------- notifications

NOTIFY_OBJECTS = ("PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE")
NOTIFY_OPERATIONS = ("GET", "POST", "PUT", "DELETE")


def parse_notification(body):
    """(objectType, operation, object) of a notification body (bytes); EventError if malformed."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise EventError("notification is not JSON: %s" % e) from None
    if not isinstance(doc, dict):
        raise EventError("notification is not an object")
    otype, op, obj = doc.get("objectType"), doc.get("operation"), doc.get("object")
    if otype not in NOTIFY_OBJECTS:
        raise EventError("notification objectType %r is not one of %s"
                         % (otype, ", ".join(NOTIFY_OBJECTS)))
    if op not in NOTIFY_OPERATIONS:
        raise EventError("notification operation %r is not one of %s"
                         % (op, ", ".join(NOTIFY_OPERATIONS)))
    if not isinstance(obj, dict):
        raise EventError("notification has no object")
    if obj.get("objectType") not in (None, otype):
        raise EventError("notification object is a %s, not a %s" % (obj.get("objectType"), otype))
    return otype, op, obj


# ----------------------------------------------------------------- reports

def wanted_reports(event_obj):
    """Payload types of the event's reportDescriptors this VEN can report."""
    out = []
    for d in event_obj.get("reportDescriptors") or ():
        if isinstance(d, dict) and d.get("payloadType") in REPORTS \
                and d["payloadType"] not in out:
            out.append(d["payloadType"])
    return out


def report_interval(k, t, period, sums, types):
    """One report interval (id k, starting t) with a payload per type from store sums."""
    return {"id": k, "intervalPeriod": {"start": format_time(t),
                                        "duration": format_duration(period)},
            "payloads": [{"type": p, "values": [round(sums[REPORTS[p][0]] * REPORTS[p][2], 6)]}
                         for p in types]}


def report_body(program_id, event_id, client_name, types, intervals):
    """A report object (for POST /reports or PUT /reports/{id}) of aggregated intervals."""
    return {"programID": program_id, "eventID": event_id, "clientName": client_name,
            "reportName": "spot-%s" % event_id,
            "payloadDescriptors": [{"payloadType": p, "readingType": "DIRECT_READ",
                                    "units": REPORTS[p][1]} for p in types],
            "resources": [{"resourceName": AGGREGATE_RESOURCE, "intervals": list(intervals)}]}
