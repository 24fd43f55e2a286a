"""OpenADR 2.0b events (as openleadr parses them) -> the flat event form of
plugins/dr_translate.py, which turns it into SPOT plans and price frames.

The translation itself (tables, grid, plans, prices) is shared with the
OpenADR 3 plugin and lives in dr_translate; its names are re-exported here
for the VEN and the tests.
"""
from datetime import datetime, timedelta

from ..dr_translate import (  # noqa: F401  (re-exported)
    EventError, MAX_PLAN_HORIZON, MAX_SLOTS, COMMANDS, PRICE_SIGNALS, PRICE_TYPES,
    PRICE_UNITS, DeviceView, _number, acts_on, capable, device_entries, needs_readings,
    plan_id, plans_for, price_values, primacy, readings_of, rules_for, select_devices,
    service, start_offset)


def _seconds(td, what):
    if not isinstance(td, timedelta):
        raise EventError("%s is missing or not a duration" % what)
    s = td.total_seconds()
    if s < 0 or s != s:
        raise EventError("%s is negative" % what)
    return int(round(s))


def parse_event(event):
    """A checked, flat form of an openleadr event dict; EventError if malformed.

    {"id", "mod", "status", "priority", "start", "duration", "startafter",
     "signals": [(name, type, [(offset s, duration s, value)], measurement)],
     "targets": [dict], "response_required", "market_context"}
    """
    if not isinstance(event, dict):
        raise EventError("event is not a map")
    desc = event.get("event_descriptor")
    if not isinstance(desc, dict) or not isinstance(desc.get("event_id"), str) \
            or not desc["event_id"]:
        raise EventError("event has no eventID")
    mod = desc.get("modification_number", 0)
    if type(mod) is not int or mod < 0:
        raise EventError("modificationNumber must be an unsigned integer")
    priority = desc.get("priority") or 0
    if type(priority) is not int or priority < 0:
        raise EventError("priority must be an unsigned integer")
    period = event.get("active_period")
    if not isinstance(period, dict) or not isinstance(period.get("dtstart"), datetime) \
            or period["dtstart"].tzinfo is None:
        raise EventError("event has no active period start (UTC)")
    start = int(period["dtstart"].timestamp())
    duration = _seconds(period.get("duration"), "active period duration")
    startafter = 0
    tol = period.get("tolerance")
    if isinstance(tol, dict):
        tol = tol.get("tolerate") if isinstance(tol.get("tolerate"), dict) else tol
        sa = tol.get("startafter")
        if sa is not None:
            startafter = _seconds(sa, "randomisation (startafter)")
    signals = []
    raw_signals = event.get("event_signals")
    if isinstance(raw_signals, dict):
        raw_signals = raw_signals.get("event_signals")
    if not isinstance(raw_signals, list) or not raw_signals:
        raise EventError("event has no signals")
    for sig in raw_signals:
        if not isinstance(sig, dict) or not isinstance(sig.get("signal_name"), str):
            raise EventError("signal without a name")
        name, stype = sig["signal_name"], sig.get("signal_type")
        ivs = sig.get("intervals")
        if not isinstance(ivs, list) or not ivs:
            raise EventError("signal %s has no intervals" % name)
        out, offset = [], 0
        for iv in ivs:   # in document order (uid order)
            if not isinstance(iv, dict):
                raise EventError("signal %s: interval is not a map" % name)
            d = _seconds(iv.get("duration"), "interval duration")
            if d == 0:
                raise EventError("signal %s: interval of zero duration" % name)
            out.append((offset, d, _number(iv.get("signal_payload"), "%s payload" % name)))
            offset += d
        if duration == 0:   # an open-ended period: the intervals say how long
            duration = offset
        signals.append((name, stype, out, sig.get("measurement")))
    if duration == 0:
        raise EventError("event of zero duration")
    targets = event.get("targets") or []
    if isinstance(targets, dict):
        targets = [targets]
    return {"id": desc["event_id"], "mod": mod, "status": desc.get("event_status"),
            "priority": priority, "start": start, "duration": duration,
            "startafter": startafter, "signals": signals,
            "targets": [t for t in targets if isinstance(t, dict)],
            "response_required": event.get("response_required", "always"),
            "market_context": desc.get("market_context")}
