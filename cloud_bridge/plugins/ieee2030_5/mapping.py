"""IEEE 2030.5 DERControls -> SPOT plans, and which Response each control is owed. No I/O.

RULES says, per DERControlBase mode and device profile, which writable
objects a control sets and how (kinds below). A DERControl becomes one
temporary plan per device [id, start, expiry, primacy, entries]: the plan id
comes from the control's mRID (stable across re-reads), start and expiry
from its interval shifted by a per-device offset inside randomizeStart /
randomizeDuration, primacy from its DERProgram (2030.5 primacy: lower number
wins; SPOT: higher wins). A DefaultDERControl becomes a plan of the lowest
primacy that any event plan overrides, renewed before it expires.

decide(known, control, now) is the client's event state machine: given
what was already done for a control (None, "planned", "started", ...) and
its current EventStatus and interval, it returns the next step.
"""
import zlib

from ....core import model as M
from ....core.services import HEAT_PUMP, PV_INVERTER, BATTERY, EV_CHARGER, GENERATOR, ENERGY_MANAGER
from ..dr_translate import (DeviceView, service, readings_of, start_offset, MAX_PLAN_HORIZON,
                            NOMINAL_VOLTAGE, _wire as wire_value)
from . import sep_xml as X

__all__ = ["RULES", "DeviceView", "readings_of", "plan_id", "primacy", "entries_for",
           "plan_for", "default_plan_for", "decide", "overlaps", "MappingError"]

DEFAULT_PRIMACY = 1           # DefaultDERControl: under every event plan
DEFAULT_RENEW = 86400         # its plan runs for MAX_PLAN_HORIZON, re-pushed after a day


class MappingError(ValueError):
    """A control no targeted device can carry out as sent."""


# Rule kinds and what the mode's value x becomes:
#   bool          x (True / False)
#   const         args[0] whatever x is (a mode that goes with another rule)
#   pct           x in % as is, clamped to >= 0
#   pct_rating    x % of the device's rating object args[0]
#   watts         x W times args[0], >= 0
#   signed_watts  x W times args[0]
#   amps          x W as a current on the device's phases, >= 0
#   pf            x a signed power factor
#   var_pct       x % of the rating object args[0], as var
RULES = {
    "opModConnect": {
        PV_INVERTER: (("connect", "bool"),),
        EV_CHARGER: (("enabled", "bool"),),
    },
    "opModEnergize": {
        PV_INVERTER: (("connect", "bool"),),
        EV_CHARGER: (("enabled", "bool"),),
    },
    "opModMaxLimW": {
        PV_INVERTER: (("power_limit_pct", "pct"),),
        BATTERY: (("discharge_limit", "pct_rating", "max_discharge_power"),),
        GENERATOR: (("p_setpoint", "pct_rating", "rated_power"),),
    },
    "opModFixedW": {
        PV_INVERTER: (("power_limit_pct", "pct"),),
        BATTERY: (("mode", "const", 4),
                  ("power_setpoint", "pct_rating_neg", "max_discharge_power")),
    },
    "opModTargetW": {       # + injects into the grid; SPOT p and set-points: + consumes
        PV_INVERTER: (("power_limit", "watts", 1.0),),
        BATTERY: (("mode", "const", 4), ("power_setpoint", "signed_watts", -1.0)),
        GENERATOR: (("p_setpoint", "watts", 1.0),),
        EV_CHARGER: (("power_setpoint", "signed_watts", -1.0),),
        HEAT_PUMP: (("power_limit", "watts", -1.0),),           # a negative target: a load cap
        ENERGY_MANAGER: (("import_limit", "watts", -1.0),),
    },
    "opModFixedPFInjectW": {
        PV_INVERTER: (("q_mode", "const", 1), ("power_factor", "pf")),
    },
    "opModFixedVar": {
        PV_INVERTER: (("q_mode", "const", 3), ("q_setpoint", "var_pct", "rated_power")),
        BATTERY: (("q_setpoint", "var_pct", "max_discharge_power"),),
    },
    "opModTargetVar": {
        PV_INVERTER: (("q_mode", "const", 3), ("q_setpoint", "signed_watts", 1.0)),
        BATTERY: (("q_setpoint", "signed_watts", 1.0),),
        GENERATOR: (("q_setpoint", "signed_watts", 1.0),),
    },
}


# ----------------------------------------------------------------- identity

def plan_id(mrid):
    """The plan id of a control on every device (from its mRID; stable across polls)."""
    return (zlib.crc32(b"ieee2030_5:" + mrid.upper().encode()) & 0x7FFFFFFF) or 1


def primacy(program_primacy, base=100):
    """SPOT primacy from 2030.5 program primacy (0 highest): base + 100 - primacy, in [2, 255]."""
    return max(DEFAULT_PRIMACY + 1, min(255, base + 100 - int(program_primacy)))


# ----------------------------------------------------------------- entries

def _value(rule, x, view):
    kind = rule[1]
    if kind == "bool":
        return bool(x)
    if kind == "const":
        return rule[2]
    if kind == "pct":
        return max(0.0, x)
    if kind in ("pct_rating", "pct_rating_neg", "var_pct"):
        rating = view.readings.get(rule[2])
        if rating is None:
            return None
        v = float(rating) * x / 100.0
        if kind == "pct_rating":
            return max(0.0, v)
        return -v if kind == "pct_rating_neg" else v
    if kind == "watts":
        return max(0.0, rule[2] * x)
    if kind == "signed_watts":
        return rule[2] * x
    if kind == "amps":
        phases = view.readings.get("phases") or 1
        return max(0.0, x / ((view.readings.get("v") or NOMINAL_VOLTAGE) * phases))
    if kind == "pf":
        return x
    raise MappingError("unknown rule kind %r" % kind)


def entries_for(base, view):
    """Plan entries {sid: {oid: wire value}} of a control's modes for one device, or None.

    opModConnect and opModEnergize both set the connection: a device is
    connected only if neither says false.
    """
    svc = service(view.sid)
    if svc is None:
        return None
    objs = {}
    for mode, x in sorted(base.items()):
        for rule in RULES.get(mode, {}).get(view.sid, ()):
            row = svc.by_name.get(rule[0])
            if row is None or not row[M.ACCESS] & M.W:
                continue
            v = _value(rule, x, view)
            if v is None:
                continue
            w = wire_value(row, v)
            if row[M.TYPE] == M.BINARY and row[M.ID] in objs:
                w = objs[row[M.ID]] and w
            objs[row[M.ID]] = w
    return {view.sid: objs} if objs else None


def _offset(mrid, device, window):
    if not window:
        return 0
    off = start_offset(mrid + "/" + ("s" if window > 0 else "n"), device, abs(window))
    return off if window > 0 else -off


def plan_for(ctrl, view, prim, now):
    """[id, start, expiry, primacy, entries] of a DERControl for one device, or None
    (nothing it can act on, or over already for this device)."""
    entries = entries_for(ctrl["base"], view)
    if entries is None:
        return None
    start = max(0, ctrl["start"] + _offset(ctrl["mrid"], view.id, ctrl["randomize_start"]))
    duration = ctrl["duration"] + _offset(ctrl["mrid"] + "/d", view.id,
                                          ctrl["randomize_duration"])
    expiry = start + max(1, duration)
    if expiry <= now:
        return None
    expiry = min(expiry, int(now) + MAX_PLAN_HORIZON)
    return [plan_id(ctrl["mrid"]), int(start), int(expiry), prim, entries]


def default_plan_for(ctrl, view, now):
    """The plan of a DefaultDERControl for one device (lowest primacy, 48 h), or None."""
    entries = entries_for(ctrl["base"], view)
    if entries is None:
        return None
    return [plan_id(ctrl["mrid"]), int(now), int(now) + MAX_PLAN_HORIZON, DEFAULT_PRIMACY,
            entries]


# ----------------------------------------------------------------- events

def overlaps(a, b):
    return a["start"] < b["start"] + b["duration"] and b["start"] < a["start"] + a["duration"]


def superseded_by(ctrl, others):
    """The control of the same program superseding ctrl (overlapping, created later), or None."""
    for o in others:
        if o["mrid"] != ctrl["mrid"] and overlaps(ctrl, o) and o["status"] in (
                X.SCHEDULED, X.ACTIVE) and (o["creation"], o["mrid"]) > (ctrl["creation"],
                                                                          ctrl["mrid"]):
            return o
    return None


def decide(state, ctrl, now, superseder=None):
    """The next step for a control: (new state, action, response status or None).

    state: None (never seen), "planned", "started", or a final one
    ("completed", "cancelled", "superseded", "expired", "rejected").
    action: "plan" (push plans), "withdraw" (cancel plans), None.
    """
    final = ("completed", "cancelled", "superseded", "expired", "rejected")
    if state in final:
        return state, None, None
    end = ctrl["start"] + ctrl["duration"]
    status = ctrl["status"]
    if status in (X.EV_CANCELLED, X.EV_CANCELLED_RANDOM):
        if state is None:
            return "cancelled", None, X.CANCELLED
        return "cancelled", "withdraw", X.CANCELLED
    if status == X.EV_SUPERSEDED or superseder is not None:
        return "superseded", ("withdraw" if state is not None else None), X.SUPERSEDED
    if state is None:
        if end <= now:
            return "expired", None, X.REJECTED_EXPIRED
        return "planned", "plan", X.RECEIVED
    if state == "planned" and now >= ctrl["start"]:
        if end <= now:
            return "completed", None, X.COMPLETED
        return "started", None, X.STARTED
    if state == "started" and end <= now:
        return "completed", None, X.COMPLETED
    return state, None, None


def owes_response(ctrl, status):
    """Does the control ask for a Response of this status (responseRequired bits)?"""
    rr = ctrl.get("response_required") or 0
    if not ctrl.get("reply_to") or not rr:
        return False
    if status == X.RECEIVED:
        return bool(rr & X.RR_RECEIVED)
    return bool(rr & (X.RR_SPECIFIC | X.RR_OPT))
