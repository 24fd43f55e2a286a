"""Demand-response events -> SPOT plans and informational signals, as data tables.

Shared by the OpenADR 2.0b plugin (plugins/openadr) and the OpenADR 3 plugin
(plugins/openadr3): each parses its own wire form into the flat event below,
and this module, pure functions and no I/O, turns it and a view of the
targeted devices into a temporary plan per device ([id, start, expiry,
primacy, entries], core/plans.py) and, for price signals, one informational
price frame covering the event's whole horizon.

The flat event (what a parser returns):

    {"id", "mod", "status", "priority", "start" (Unix s), "duration" (s),
     "startafter" (s), "signals": [(name, type, [(offset s, duration s, value)],
     measurement)], "targets": [dict], "response_required", "market_context"}

Signals and what they become:

- ELECTRICITY_PRICE / ENERGY_PRICE (signal type `price`): price.price_forecast,
  one schedule for the whole event, broadcast to every device consuming the
  price service; nothing is commanded.
- SIMPLE levels, LOAD_DISPATCH and LOAD_CONTROL: commandable; COMMANDS says,
  per signal and profile, which writable objects are set and how the
  interval payload becomes their value. Level 0 (normal) and rules without a
  value leave the object to the device's default plan.

The event's intervals become plan schedules [start, step, [slots]] on one
grid (the greatest common divisor of the interval durations); an object with
the same value in every slot is sent as a constant. A device's plan is
shifted by a per-device offset within the event's randomisation window
(startafter), so thousands of devices do not switch in the same second.
OpenADR priority (1 highest, 0 unspecified) becomes plan primacy.
"""
import math
import zlib

from ...core import model as M
from ...core.services import (HEAT_PUMP, PV_INVERTER, BATTERY, EV_CHARGER, GENERATOR,
                               ENERGY_MANAGER, PRICE)
from ...profiles import registry

MAX_SLOTS = M.MAX_SLOTS
MAX_PLAN_HORIZON = 172800     # core.plans: a node refuses plans ending later than this
NOMINAL_VOLTAGE = 230.0


class EventError(ValueError):
    """An event that cannot be carried out as sent (malformed, out of range)."""


# ----------------------------------------------------------------- tables

# Rules: (object name, kind, args...). Kinds and what the interval value x becomes:
#   level           x is a SIMPLE level 0-3: args[0][x]
#   level_x_rating  args[0][x] * the device's rating object args[1] (None stays None)
#   offset_level    x is a level offset: args[0].get(x)
#   const           args[0], whatever x is (a mode that goes with another rule)
#   watts           the device's share of a power target (W), times args[0], >= 0
#   signed_watts    the device's share of a power target (W), as is (+ charge / - discharge)
#   amps            the device's share of a power target (W) as a current (A) on its phases
#   x_rating        x is a fraction 0-1 of the rating object args[0]
#   percent         x is a fraction 0-1: 100 x (%)
#   offset_x_rating x is a change in %: rating args[0] * (1 + x / 100)
#   offset_pct      x is a change in %: 100 + x (%)
#   neg             -x (a reduction in % from a change in %)
#   value           x as is (a temperature set-point)

_DISPATCH = {
    HEAT_PUMP: (("power_limit", "watts", 1.0),),
    EV_CHARGER: (("current_limit", "amps"),),
    BATTERY: (("mode", "const", 4), ("power_setpoint", "signed_watts")),  # follow set-point
    PV_INVERTER: (("power_limit", "watts", -1.0),),     # export limit: generation is p < 0
    GENERATOR: (("p_setpoint", "watts", -1.0),),
    ENERGY_MANAGER: (("import_limit", "watts", 1.0),),
}

COMMANDS = {
    ("SIMPLE", "level"): {
        # level:            0 normal, 1 moderate, 2 high, 3 special
        HEAT_PUMP: (("sg_ready", "level", (None, 1, 1, 1)),),          # SG-Ready blocked
        EV_CHARGER: (("current_limit", "level_x_rating", (None, 0.5, 0.0, 0.0), "max_current"),),
        BATTERY: (("mode", "level", (None, 0, 2, 2)),),                # idle, then discharge
        ENERGY_MANAGER: (("reduction", "level", (None, 30.0, 60.0, 100.0)),),
    },
    ("LOAD_DISPATCH", "setpoint"): _DISPATCH,
    ("LOAD_DISPATCH", "delta"): _DISPATCH,
    ("LOAD_DISPATCH", "multiplier"): _DISPATCH,
    ("LOAD_CONTROL", "x-loadControlCapacity"): {
        HEAT_PUMP: (("power_limit", "x_rating", "power_limit"),),
        EV_CHARGER: (("current_limit", "x_rating", "max_current"),),
        BATTERY: (("charge_limit", "x_rating", "max_charge_power"),),
        PV_INVERTER: (("power_limit_pct", "percent"),),
        ENERGY_MANAGER: (("import_limit", "x_rating", "import_limit"),),
    },
    ("LOAD_CONTROL", "x-loadControlPercentOffset"): {
        HEAT_PUMP: (("power_limit", "offset_x_rating", "power_limit"),),
        EV_CHARGER: (("current_limit", "offset_x_rating", "max_current"),),
        PV_INVERTER: (("power_limit_pct", "offset_pct"),),
        ENERGY_MANAGER: (("reduction", "neg"),),
    },
    ("LOAD_CONTROL", "x-loadControlLevelOffset"): {
        HEAT_PUMP: (("sg_ready", "offset_level", {-1: 1, 0: None, 1: 3, 2: 4}),),
    },
    ("LOAD_CONTROL", "x-loadControlSetpoint"): {
        HEAT_PUMP: (("room_setpoint", "value"),),
    },
    # OpenADR 3 capacity limits (W, for the targeted devices together, shared like a
    # dispatch set-point): an import limit caps consumption, an export limit generation
    ("IMPORT_CAPACITY_LIMIT", "setpoint"): {
        HEAT_PUMP: (("power_limit", "watts", 1.0),),
        EV_CHARGER: (("current_limit", "amps"),),
        BATTERY: (("charge_limit", "watts", 1.0),),
        ENERGY_MANAGER: (("import_limit", "watts", 1.0),),
    },
    ("EXPORT_CAPACITY_LIMIT", "setpoint"): {
        PV_INVERTER: (("power_limit", "watts", 1.0),),
        BATTERY: (("discharge_limit", "watts", 1.0),),
        ENERGY_MANAGER: (("export_limit", "watts", 1.0),),
    },
}

# price signal name -> price object it fills (ELECTRICITY_PRICE wins over ENERGY_PRICE)
PRICE_SIGNALS = {"ELECTRICITY_PRICE": "price_forecast", "ENERGY_PRICE": "price_forecast"}
PRICE_TYPES = ("price",)
# OpenADR price measurement -> factor to the price profile's currency per MWh
PRICE_UNITS = {"currencyPerKWh": 1000.0, "currencyPerMWh": 1.0, "currencyPerWh": 1e6}

# rules of these kinds need the device's latest readings
_NEEDS_READINGS = ("level_x_rating", "watts", "signed_watts", "amps", "x_rating",
                   "offset_x_rating")


# ----------------------------------------------------------------- numbers

def _number(x, what):
    if type(x) is bool or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise EventError("%s is not a finite number: %r" % (what, x))
    return float(x)


# ----------------------------------------------------------------- identity

def plan_id(event_id):
    """The plan id a VEN uses for an event on every device (stable across modifications)."""
    return (zlib.crc32(b"openadr:" + event_id.encode()) & 0x7FFFFFFF) or 1


def primacy(priority, base=100):
    """SPOT primacy (higher wins) from OpenADR priority (1 highest, 0 unspecified)."""
    if not priority:
        return base
    return max(base + 1, min(255, base + 100 - priority))


def start_offset(event_id, device, window):
    """Seconds a device's plan starts after the event: spread evenly over [0, window]."""
    if window <= 0:
        return 0
    return zlib.crc32(("%s/%s" % (event_id, device)).encode()) % (window + 1)


# ----------------------------------------------------------------- targets

def select_devices(targets, members, ven_id=None, groups=None):
    """Ids of member devices the event's targets name (all of them for a VEN/party target).

    members: ids of the VEN's devices; groups: {group id: [device ids]}.
    """
    members = list(members)
    if not targets:
        return sorted(members)
    chosen = set()
    inside = set(members)
    for t in targets:
        for kind, value in t.items():
            if value is None:
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            if kind in ("ven_id", "party_id"):
                if kind == "party_id" or ven_id is None or ven_id in values:
                    return sorted(members)
            elif kind == "resource_id":
                chosen.update(v for v in values if v in inside)
            elif kind == "group_id":
                for g in values:
                    chosen.update(d for d in (groups or {}).get(g, ()) if d in inside)
    return sorted(chosen)


# ----------------------------------------------------------------- grid

def _grid(ev):
    """(step, slots) of the common grid of every signal's intervals."""
    step = ev["duration"]
    for _, _, ivs, _ in ev["signals"]:
        for off, d, _ in ivs:
            step = math.gcd(step, math.gcd(off, d) if off else d)
    step = max(step, 1)
    slots = -(-ev["duration"] // step)
    if slots > MAX_SLOTS:
        raise EventError("event needs %d schedule slots of %d s (at most %d)"
                         % (slots, step, MAX_SLOTS))
    return step, slots


def _slot_values(ivs, step, slots):
    out = [None] * slots
    for off, d, x in ivs:
        for k in range(off // step, min(slots, (off + d) // step)):
            out[k] = x
    return out


# ----------------------------------------------------------------- devices

class DeviceView:
    """What translation needs of a device: id, main profile, readings (SI, by name)."""

    __slots__ = ("id", "sid", "consumes", "readings")

    def __init__(self, id, sid, consumes=(), readings=None):
        self.id = id
        self.sid = sid
        self.consumes = tuple(consumes or ())
        self.readings = readings or {}


_SERVICES = {}


def service(sid):
    """core.model Service of a profile (cached), or None."""
    svc = _SERVICES.get(sid)
    if svc is None:
        mod = registry.by_service(sid)
        if mod is None:
            return None
        svc = _SERVICES[sid] = M.service_of(mod)
    return svc


def readings_of(sid, latest):
    """{object name: SI value} of a device's main profile from store.latest()."""
    svc = service(sid)
    out = {}
    if svc is None:
        return out
    for (s, oid), (value, _t) in latest.items():
        row = svc.by_id.get(oid) if s == sid else None
        if row is not None and value is not None and row[M.TYPE] in (M.ANALOG, M.COUNTER,
                                                                     M.ENUM, M.BINARY):
            out[row[M.NAME]] = M.from_wire(row, value)
    return out


def rules_for(ev, sid):
    """[(signal index, rule)] that act on profile sid for this event."""
    out = []
    for k, (name, stype, _, _) in enumerate(ev["signals"]):
        table = COMMANDS.get((name, stype))
        if table is not None:
            for rule in table.get(sid, ()):
                out.append((k, rule))
    return out


def needs_readings(ev, sid):
    return any(rule[1] in _NEEDS_READINGS for _, rule in rules_for(ev, sid))


def capable(ev, sid):
    """Can a device of profile sid act on some signal of the event?"""
    return bool(rules_for(ev, sid))


def _shares(ev, k, views):
    """Per-device power targets (W) of LOAD_DISPATCH signal k, per slot value x."""
    name, stype, _, _ = ev["signals"][k]
    p = {v.id: float(v.readings.get("p") or 0.0) for v in views}
    total = sum(abs(x) for x in p.values())
    n = len(views) or 1
    weight = {d: (abs(x) / total if total > 0 else 1.0 / n) for d, x in p.items()}

    def target(device, x):
        if stype == "setpoint":
            return x * weight[device]
        if stype == "delta":
            return p[device] + x * weight[device]
        return p[device] * x          # multiplier
    return target


def _rating(view, name):
    r = view.readings.get(name)
    return None if r is None else float(r)


def _apply(rule, x, view, target):
    kind = rule[1]
    if x is None:
        return None
    if kind == "level" or kind == "level_x_rating":
        lv = int(x)
        if lv != x or not 0 <= lv <= 3:
            raise EventError("SIMPLE level must be 0-3, got %r" % x)
        v = rule[2][lv]
        if v is None or kind == "level":
            return v
        rating = _rating(view, rule[3])
        return None if rating is None else v * rating
    if kind == "offset_level":
        return rule[2].get(int(x))
    if kind == "const":
        return rule[2]
    if kind in ("watts", "signed_watts", "amps"):
        w = target(view.id, x)
        if kind == "watts":
            return max(0.0, rule[2] * w)
        if kind == "signed_watts":
            return w
        phases = view.readings.get("phases") or 1
        volts = view.readings.get("v") or NOMINAL_VOLTAGE
        return max(0.0, w / (volts * phases))
    if kind == "x_rating":
        rating = _rating(view, rule[2])
        return None if rating is None else max(0.0, x) * rating
    if kind == "percent":
        return 100.0 * x
    if kind == "offset_x_rating":
        rating = _rating(view, rule[2])
        return None if rating is None else rating * (1.0 + x / 100.0)
    if kind == "offset_pct":
        return 100.0 + x
    if kind == "neg":
        return -x
    if kind == "value":
        return x
    raise EventError("unknown rule kind %r" % kind)


def _wire(row, v):
    """Wire value of SI v for row, saturated to the object's range."""
    t = row[M.TYPE]
    if t == M.BINARY:
        return bool(v)
    lo, hi = row[M.LO], row[M.HI]
    if lo is not None and v < lo:
        v = lo
    if hi is not None and v > hi:
        v = hi
    if t == M.ENUM:
        return int(round(v))
    return M.to_wire(row, v)


def device_entries(ev, view, views=None, step=None, slots=None):
    """Plan entries {sid: {oid: value or schedule}} for one device (None: nothing to do)."""
    if step is None:
        step, slots = _grid(ev)
    svc = service(view.sid)
    if svc is None:
        return None
    targets = {}
    per_obj = {}
    for k, rule in rules_for(ev, view.sid):
        name = rule[0]
        row = svc.by_name.get(name)
        if row is None or not row[M.ACCESS] & M.W:
            continue
        target = None
        if rule[1] in ("watts", "signed_watts", "amps"):
            if k not in targets:
                targets[k] = _shares(ev, k, views or [view])
            target = targets[k]
        xs = _slot_values(ev["signals"][k][2], step, slots)
        vals = [_apply(rule, x, view, target) for x in xs]
        cur = per_obj.get(row[M.ID])
        if cur is None:
            per_obj[row[M.ID]] = (row, vals)
        else:   # a later signal overrides where it has a value
            per_obj[row[M.ID]] = (row, [b if b is not None else a for a, b in zip(cur[1], vals)])
    objs = {}
    for oid, (row, vals) in per_obj.items():
        if all(v is None for v in vals):
            continue
        wires = [None if v is None else _wire(row, v) for v in vals]
        if all(w == wires[0] for w in wires):
            objs[oid] = wires[0]
        else:
            objs[oid] = [0, step, wires]   # start filled in per device
    return {view.sid: objs} if objs else None


def plans_for(ev, views, now, base_primacy=100):
    """{device id: plan [id, start, expiry, primacy, entries]} for the targeted views.

    Plans already over at `now` are left out; a plan reaching beyond the
    node's horizon (48 h) is cut there.
    """
    step, slots = _grid(ev)
    pid = plan_id(ev["id"])
    prim = primacy(ev["priority"], base_primacy)
    out = {}
    by_profile = {}
    for v in views:
        by_profile.setdefault(v.sid, []).append(v)
    for v in views:
        entries = device_entries(ev, v, by_profile[v.sid], step, slots)
        if entries is None:
            continue
        start = ev["start"] + start_offset(ev["id"], v.id, ev["startafter"])
        expiry = start + ev["duration"]
        if expiry <= now:
            continue
        expiry = min(expiry, int(now) + MAX_PLAN_HORIZON)
        for objs in entries.values():
            for oid, val in objs.items():
                if type(val) is list and len(val) == 3 and val[0] == 0:
                    objs[oid] = [start, val[1], val[2]]
        out[v.id] = [pid, start, expiry, prim, entries]
    return out


# ----------------------------------------------------------------- prices

def price_values(ev, currency="EUR", default_unit="currencyPerKWh"):
    """{object id: wire value} of the price service for the event's price signal (or None).

    One schedule covers the whole event horizon (one frame for all of it).
    """
    chosen = None
    for name, stype, ivs, meas in ev["signals"]:
        if name in PRICE_SIGNALS and stype in PRICE_TYPES:
            if chosen is None or name == "ELECTRICITY_PRICE":
                chosen = (name, ivs, meas)
    if chosen is None:
        return None
    name, ivs, meas = chosen
    unit, cur = default_unit, currency
    if isinstance(meas, dict):
        unit = meas.get("name") or unit
        if isinstance(meas.get("unit"), str) and len(meas["unit"]) == 3:
            cur = meas["unit"]
    factor = PRICE_UNITS.get(unit)
    if factor is None:
        raise EventError("price unit %r is not supported" % unit)
    svc = service(PRICE)
    row = svc.by_name[PRICE_SIGNALS[name]]
    step, slots = _grid(ev)
    vals = _slot_values(ivs, step, slots)
    si = [None if x is None else x * factor for x in vals]
    for x in si:
        if x is not None and not row[M.LO] <= x <= row[M.HI]:
            raise EventError("price %.1f %s/MWh out of range" % (x, cur))
    sched = M.to_wire(row, [ev["start"], step, si])
    return {row[M.ID]: sched, svc.by_name["currency"][M.ID]: cur[:3]}


def acts_on(ev):
    """(commands?, price?): what kinds of signal the event carries that we translate."""
    cmd = any((n, t) in COMMANDS for n, t, _, _ in ev["signals"])
    price = any(n in PRICE_SIGNALS and t in PRICE_TYPES for n, t, _, _ in ev["signals"])
    return cmd, price
