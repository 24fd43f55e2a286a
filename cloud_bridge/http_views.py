"""JSON views for the HTTP API: profiles by name, SI values, request bodies, records.

The API speaks names and SI units (what docs/profiles.md shows); devices
speak service and object ids and scaled wire values. Everything that moves
between the two lives here, with the checks a request must pass before it
is queued: a write or a plan with an unknown object, a read-only object, a
value of the wrong type or out of range is refused with ApiError(400) and
a message that names the object and the rule it breaks.
"""
import base64
import json
import math

from ..core import frame as F
from ..core import model as M
from ..core import plans as core_plans
from ..core.errors import SpotError, NAMES as ERROR_NAMES
from ..core.node import TIME_OBJECTS
from ..core.services import TIME, PLANS, PRICE, WEATHER, GRID
from ..profiles import registry
from ..profiles import meanings as MEANINGS
from . import store as S

OPS = {"read": F.READ, "write": F.WRITE, "invoke": F.INVOKE, "subscribe": F.SUBSCRIBE,
       "unsubscribe": F.UNSUBSCRIBE}
OP_OF = {v: k for k, v in OPS.items()}
ACCESS_NAMES = {M.R: "R", M.RW: "RW", M.X: "X", M.RX: "RX", M.W: "W", 7: "RWX", 6: "WX"}
MAX_EXPIRES_IN = 31536000.0     # a queued command waits at most a year
MAX_TIMEOUT = 3600.0            # a sent command waits at most an hour for its answer
MAX_HORIZON = 172800            # how far ahead a plan may expire (a node's default horizon)
MAX_TIME = 10 ** 11             # Unix seconds accepted in queries and plans (year 5138)
INFORMATIONAL = (PRICE, WEATHER, GRID)   # services broadcast as signals
SUBSCRIBE_ATTRS = {"pmin": 0, "pmax": 1, "step": 2, "gt": 3, "lt": 4}
_ATTRIBUTE_NAMES = {v: k for k, v in SUBSCRIBE_ATTRS.items()}


class ApiError(Exception):
    """A request the API refuses: HTTP status and a message saying what is wrong."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def bad(message):
    return ApiError(400, message)


# ------------------------------------------------------------------ profiles

_TABLES = {}


def _tables():
    if not _TABLES:
        for sid in registry.SERVICES:
            _TABLES[sid] = M.service_of(registry.by_service(sid))
        _TABLES[PLANS] = M.service_of(core_plans)
        _TABLES[TIME] = M.Service(TIME, "time", (1, 0), TIME_OBJECTS)
    return _TABLES


def service_table(sid):
    """The model.Service for a service id, or None if this bridge does not know it."""
    return _tables().get(sid)


def service_name(sid):
    svc = service_table(sid)
    return svc.name if svc is not None else None


def all_services():
    t = _tables()
    return [t[sid] for sid in sorted(t)]


def _ref(ref, what):
    """(int id, None) or (None, name) from an id, a decimal string or a name."""
    if type(ref) is int:
        return ref, None
    if type(ref) is str and ref:
        if ref.isdigit() and ref.isascii() and len(ref) < 12:
            return int(ref), None
        return None, ref
    raise bad("%s must be a name or a number, not %s" % (what, _show(ref)))


def resolve_service(ref):
    """The model.Service named or numbered by ref; 400 if unknown."""
    sid, name = _ref(ref, "service")
    if sid is not None:
        svc = service_table(sid)
    else:
        svc = next((s for s in _tables().values() if s.name == name), None)
    if svc is None:
        raise bad("unknown service %s (known: %s)" % (_show(ref), ", ".join(
            s.name for s in all_services())))
    return svc


def resolve_object(svc, ref):
    """The object row of svc named or numbered by ref; 400 if unknown."""
    oid, name = _ref(ref, "object")
    row = svc.by_id.get(oid) if oid is not None else svc.by_name.get(name)
    if row is None:
        raise bad("unknown object %s in service %s" % (_show(ref), svc.name))
    return row


def _show(v, limit=60):
    try:
        s = json.dumps(v, ensure_ascii=False)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _num(v):
    return v if v is None or type(v) is int else (int(v) if float(v).is_integer()
                                                 and abs(v) < 2 ** 53 else v)


def object_json(sid, row):
    """One profile object: name, type, unit, access, range (SI), scale, meaning."""
    labels = MEANINGS.VALUES.get((sid, row[M.ID]))
    return {
        "id": row[M.ID], "name": row[M.NAME], "type": M.TYPE_NAMES[row[M.TYPE]],
        "unit": row[M.UNIT], "access": ACCESS_NAMES.get(row[M.ACCESS], str(row[M.ACCESS])),
        "writable": bool(row[M.ACCESS] & M.W), "mandatory": bool(row[M.MANDATORY]),
        "min": _num(row[M.LO]), "max": _num(row[M.HI]), "scale": row[M.SCALE],
        "meaning": MEANINGS.MEANINGS.get((sid, row[M.ID])),
        "labels": None if labels is None else {str(k): v for k, v in sorted(labels.items())},
    }


def profile_json(svc):
    return {"id": svc.sid, "name": svc.name, "version": "%d.%d" % tuple(svc.version),
            "objects": [object_json(svc.sid, r) for r in svc.rows]}


# ------------------------------------------------------------------ values

def jsonable(v, depth=0):
    """A wire value as JSON: map keys as strings, bytes as {"b64": ...}, NaN as null."""
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        return v
    if t is float:
        return v if math.isfinite(v) else None
    if depth > 64:
        return None
    if t is list or t is tuple:
        return [jsonable(x, depth + 1) for x in v]
    if t is dict:
        return {str(k): jsonable(x, depth + 1) for k, x in v.items()}
    if t is bytes or t is bytearray or t is memoryview:
        return {"b64": base64.b64encode(bytes(v)).decode("ascii")}
    return str(v)


def si_value(row, wire):
    """The SI value of a stored wire value (the wire value itself if it does not fit)."""
    if row is None:
        return jsonable(wire)
    try:
        M.check(row, wire)
        return jsonable(M.from_wire(row, wire))
    except (SpotError, TypeError, ValueError, IndexError):
        return jsonable(wire)


# what a value of each object type must look like, for 400 messages; {r} is its range
_EXPECTED = {
    M.ANALOG: "a number{r}",
    M.BINARY: "true or false",
    M.ENUM: "an integer{r}",
    M.COUNTER: "an unsigned integer{r}",
    M.TIME: "Unix seconds (an unsigned integer)",
    M.SCHEDULE: "a schedule [start, step, [values]] with values{r}",
    M.CURVE: "a curve [x0, y0, x1, y1, ...] of 2 to %d points with coordinates{r}" % M.MAX_POINTS,
    M.ALARM: "an alarm [time, code, severity, active]",
    M.NONE: "null (no argument)",
    M.MAP: "a map",
}


def _expected(row):
    t = row[M.TYPE]
    lo, hi, unit = _num(row[M.LO]), _num(row[M.HI]), row[M.UNIT]
    if t == M.TEXT:
        return "a string" + ("" if hi is None else " of at most %s characters" % hi)
    rng = ""
    if lo is not None or hi is not None:
        rng = " from %s to %s%s" % ("-inf" if lo is None else lo, "inf" if hi is None else hi,
                                    " " + unit if unit else "")
    return _EXPECTED.get(t, "a plan [id, start, expiry, primacy, entries]").format(r=rng)


def _is_number(v):
    return (type(v) is int or type(v) is float) and math.isfinite(v)


def _int_keys(v, depth=0):
    # JSON maps have string keys; SPOT maps (plan entries) have integer ones
    if depth > 16:
        raise ValueError("nested too deeply")
    if type(v) is dict:
        return {(int(k) if type(k) is str and k.isdigit() and k.isascii() else k):
                _int_keys(x, depth + 1) for k, x in v.items()}
    if type(v) is list:
        return [_int_keys(x, depth + 1) for x in v]
    return v


def to_wire(svc, row, value, what=None):
    """The checked wire value of SI `value` for object row; 400 saying why not."""
    name = what or "%s.%s" % (svc.name, row[M.NAME])
    t = row[M.TYPE]
    wrong = bad("%s: %s is the wrong type, expected %s" % (name, _show(value), _expected(row)))
    try:
        if t in (M.ANALOG, M.COUNTER, M.ENUM):
            if not _is_number(value):
                raise wrong
            if t == M.ENUM and type(value) is float:
                if not value.is_integer():
                    raise wrong
                value = int(value)
        elif t == M.SCHEDULE:
            if (type(value) is not list or len(value) != 3 or type(value[2]) is not list
                    or not all(x is None or _is_number(x) for x in value[2])):
                raise wrong
        elif t == M.CURVE:
            if type(value) is not list or not all(_is_number(x) for x in value):
                raise wrong
        elif t == M.MAP:
            value = _int_keys(value)
        wire = M.to_wire(row, value)
        M.check(row, wire)
    except SpotError as e:
        if e.code == 4:
            raise bad("%s: %s is out of range, expected %s" % (name, _show(value), _expected(row)))
        if e.code == 7:
            raise bad("%s: %s is too large, expected %s" % (name, _show(value), _expected(row)))
        raise wrong
    except (TypeError, ValueError, OverflowError, IndexError):
        raise wrong
    return wire


def wire_values(svc, values, writing=False):
    """{object id: wire value} of {object: SI value} (not empty); writing: every
    object must be writable."""
    if type(values) is not dict or not values:
        raise bad("values must be a non-empty object {object: SI value}")
    out = {}
    for ref, v in values.items():
        row = resolve_object(svc, ref)
        if writing:
            need_access(svc, row, M.W, "written")
        out[row[M.ID]] = to_wire(svc, row, v)
    return out


def need_access(svc, row, bit, verb):
    if not row[M.ACCESS] & bit:
        what = {M.W: "read-only", M.X: "not an action", M.R: "not readable"}[bit]
        raise bad("%s.%s is %s (access %s): it cannot be %s" % (
            svc.name, row[M.NAME], what, ACCESS_NAMES.get(row[M.ACCESS], row[M.ACCESS]), verb))


# ------------------------------------------------------------------ request bodies

def body_object(data, allowed, required=()):
    """Check a decoded JSON body is an object with only allowed keys and the required ones."""
    if type(data) is not dict:
        raise bad("the request body must be a JSON object")
    unknown = sorted(k for k in data if k not in allowed)
    if unknown:
        raise bad("unknown field %s (allowed: %s)"
                  % (_show(unknown[0]), ", ".join(sorted(allowed))))
    for k in required:
        if k not in data:
            raise bad("missing field %r" % k)
    return data


def number(v, what, lo=None, hi=None, integer=False, exclusive_lo=False):
    if integer:
        if type(v) is float and v.is_integer():
            v = int(v)
        if type(v) is not int:
            raise bad("%s must be an integer, not %s" % (what, _show(v)))
    elif not _is_number(v):
        raise bad("%s must be a number, not %s" % (what, _show(v)))
    if lo is not None and (v <= lo if exclusive_lo else v < lo):
        raise bad("%s must be %s %s, not %s" % (what, "above" if exclusive_lo else "at least",
                                                 lo, _show(v)))
    if hi is not None and v > hi:
        raise bad("%s must be at most %s, not %s" % (what, hi, _show(v)))
    return v


def optional(data, key, lo=None, hi=None, integer=False, exclusive_lo=False, default=None):
    """data[key] checked as number() if the key is there (null is not absence), else default."""
    if key not in data:
        return default
    return number(data[key], key, lo, hi, integer, exclusive_lo)


_COMMAND_FIELDS = {
    "read": ("objects",),
    "write": ("values",),
    "invoke": ("object", "argument"),
    "subscribe": ("objects", "attributes"),
    "unsubscribe": ("subscription",),
}
_COMMON_FIELDS = ("service", "op", "expires_in", "timeout")


def build_command(data):
    """(service id, op, wire body, expires_in, timeout) from a command request body."""
    if type(data) is not dict:
        raise bad("the request body must be a JSON object")
    op_name = data.get("op")
    if type(op_name) is not str or op_name not in OPS:
        raise bad("op must be one of %s, not %s" % (", ".join(OPS), _show(op_name)))
    body_object(data, _COMMON_FIELDS + _COMMAND_FIELDS[op_name], ("service", "op"))
    if op_name == "write" and "values" not in data:
        raise bad("a write needs values: {object: SI value}")
    if op_name == "invoke" and "object" not in data:
        raise bad("an invoke needs an object (the action)")
    if op_name == "subscribe" and "objects" not in data:
        raise bad("a subscribe needs objects: [object, ...]")
    svc = resolve_service(data["service"])
    expires_in = optional(data, "expires_in", 0, MAX_EXPIRES_IN, exclusive_lo=True)
    timeout = optional(data, "timeout", 0, MAX_TIMEOUT, exclusive_lo=True)
    op = OPS[op_name]
    if op == F.READ:
        body = None
        if "objects" in data:
            body = [r[M.ID] for r in _rows(svc, data["objects"], M.R, "read")]
    elif op == F.WRITE:
        body = wire_values(svc, data["values"], writing=True)
    elif op == F.INVOKE:
        row = resolve_object(svc, data["object"])
        need_access(svc, row, M.X, "invoked")
        arg = data.get("argument")
        if row[M.TYPE] == M.NONE:
            if arg is not None:
                raise bad("%s.%s takes no argument" % (svc.name, row[M.NAME]))
            body = [row[M.ID]]
        else:
            if "argument" not in data:
                raise bad("%s.%s needs an argument: %s" % (svc.name, row[M.NAME], _expected(row)))
            body = [row[M.ID], to_wire(svc, row, arg)]
    elif op == F.SUBSCRIBE:
        attrs = _attributes(data["attributes"]) if "attributes" in data else {}
        body = {}
        for row in _rows(svc, data["objects"], M.R, "subscribed to"):
            a = {}
            for k, v in attrs.items():
                if k >= 2 and row[M.TYPE] in (M.ANALOG, M.COUNTER):
                    try:
                        v = M.to_wire(row, v) if k != 2 else abs(M.to_wire(row, v))
                    except (OverflowError, ValueError, SpotError):
                        raise bad("attributes.%s: %s is too large for %s.%s"
                                  % (_ATTRIBUTE_NAMES[k], _show(v), svc.name, row[M.NAME]))
                a[k] = v
            body[row[M.ID]] = a
    else:
        body = optional(data, "subscription", 0, 0xFFFF, integer=True)
    return svc.sid, op, body, expires_in, timeout


def _rows(svc, refs, bit, verb):
    if type(refs) is not list or not refs:
        raise bad("objects must be a non-empty list of object names or ids")
    if len(refs) > 256:
        raise bad("at most 256 objects")
    rows = []
    for ref in refs:
        row = resolve_object(svc, ref)
        need_access(svc, row, bit, verb)
        rows.append(row)
    return rows


def _attributes(attrs):
    if type(attrs) is not dict:
        raise bad("attributes must be an object {pmin, pmax, step, gt, lt}")
    body_object(attrs, tuple(SUBSCRIBE_ATTRS))
    out = {}
    for k, v in attrs.items():
        if k in ("pmin", "pmax"):
            out[SUBSCRIBE_ATTRS[k]] = number(v, "attributes." + k, 0, 604800, integer=True)
        else:
            out[SUBSCRIBE_ATTRS[k]] = number(v, "attributes." + k)
    if 1 in out and 0 in out and out[1] < out[0]:
        raise bad("attributes.pmax must not be below pmin")
    return out


def build_plan(data, now, served=None):
    """(plan id or None, start, expiry, primacy, wire entries) from a plan request body.

    start defaults to now; expiry or duration (seconds after start) is required.
    served: the device's service ids (entries for other services are refused).
    """
    body_object(data, ("id", "start", "expiry", "duration", "primacy", "entries", "expires_in"),
                ("entries",))
    pid = optional(data, "id", 1, 0xFFFFFFFF, integer=True)
    start = optional(data, "start", 0, MAX_TIME, integer=True, default=int(now))
    if "expiry" in data and "duration" in data:
        raise bad("give expiry or duration, not both")
    if "expiry" in data:
        expiry = number(data["expiry"], "expiry", 0, MAX_TIME, integer=True)
    elif "duration" in data:
        expiry = start + number(data["duration"], "duration", 1, MAX_HORIZON, integer=True)
    else:
        raise bad("a plan needs expiry (Unix seconds) or duration (seconds)")
    if expiry <= start:
        raise bad("expiry must be after start")
    primacy = optional(data, "primacy", 0, core_plans.MAX_PRIMACY, integer=True, default=100)
    entries = data["entries"]
    if type(entries) is not dict or not entries:
        raise bad("entries must be a non-empty object {service: {object: value or schedule}}")
    wire = {}
    for sref, objs in entries.items():
        svc = resolve_service(sref)
        if svc.sid == PLANS:
            raise bad("a plan cannot set the plans service")
        if served is not None and svc.sid not in served:
            raise bad("the device does not serve service %s" % svc.name)
        if type(objs) is not dict or not objs:
            raise bad("entries.%s must be a non-empty object {object: value or schedule}"
                      % svc.name)
        out = {}
        for oref, v in objs.items():
            row = resolve_object(svc, oref)
            need_access(svc, row, M.W, "set by a plan")
            out[row[M.ID]] = plan_value(svc, row, v)
        wire[svc.sid] = out
    return pid, start, expiry, primacy, wire


def plan_value(svc, row, v):
    """A plan entry: a constant, or (for non-series objects) a schedule of SI values."""
    name = "%s.%s" % (svc.name, row[M.NAME])
    if not core_plans.is_series(row) and type(v) is list:
        if (len(v) != 3 or type(v[2]) is not list or type(v[0]) is not int or v[0] < 0
                or type(v[1]) is not int or v[1] <= 0):
            raise bad("%s: a schedule is [start, step, [values]] with unsigned integer start "
                      "and a positive step, not %s" % (name, _show(v)))
        if len(v[2]) > M.MAX_SLOTS:
            raise bad("%s: a schedule has at most %d slots" % (name, M.MAX_SLOTS))
        return [v[0], v[1], [None if x is None else to_wire(svc, row, x, name + " slot")
                             for x in v[2]]]
    return to_wire(svc, row, v)


def build_signal(svc, data):
    """(wire values, t) from a signal body {"values": {object: SI value}, "t": seconds}."""
    body_object(data, ("values", "t"), ("values",))
    return wire_values(svc, data["values"]), optional(data, "t", 0, MAX_TIME, integer=True)


# ------------------------------------------------------------------ records

def _t(x):
    return S.t_out(x) if x is not None else None


def services_json(services):
    out = []
    for s in services:
        sid, major, minor = s[0], s[1], s[2]
        out.append({"id": sid, "name": service_name(sid), "version": "%d.%d" % (major, minor)})
    return out


def main_profile(services):
    """The name of the device's main profile (its first device service), or None."""
    for s in services:
        if 0x10 <= s[0] <= 0xBF:
            return service_name(s[0])
    return None


def device_json(d, last_seen=None):
    return {
        "id": d.id, "profile": main_profile(d.services), "profiles": services_json(d.services),
        "consumes": [{"id": sid, "name": service_name(sid)} for sid in d.consumes],
        "sleepy": d.sleepy, "presence": d.presence, "presence_at": _t(d.presence_at),
        "first_seen": _t(d.first_seen),
        "last_seen": _t(max(d.last_seen, last_seen) if last_seen else d.last_seen),
        "groups": list(d.groups),
    }


def latest_json(latest):
    """The latest values {(sid, oid): (wire, t)} as a sorted list of named SI values."""
    out = []
    for (sid, oid), (wire, t) in sorted(latest.items()):
        svc = service_table(sid)
        row = svc.by_id.get(oid) if svc is not None else None
        out.append({
            "service": svc.name if svc is not None else None, "service_id": sid,
            "object": row[M.NAME] if row is not None else None, "object_id": oid,
            "unit": row[M.UNIT] if row is not None else None,
            "value": si_value(row, wire), "wire": jsonable(wire), "t": _t(t),
        })
    return out


def named_si(sid, values):
    """{object name (or id): SI value} of a wire map {oid: value}."""
    svc = service_table(sid)
    out = {}
    for oid, wire in values.items():
        key = int(oid) if type(oid) is str and oid.isdigit() else oid
        row = svc.by_id.get(key) if svc is not None else None
        out[row[M.NAME] if row is not None else str(oid)] = si_value(row, wire)
    return out


def error_text(status, result, sid=None):
    """Why a command did not end done, in words (None if it did or is open)."""
    if status == "error":
        if type(result) is list and result and type(result[0]) is int:
            text = ERROR_NAMES.get(result[0], "error %d" % result[0])
            if len(result) > 1 and result[1] is not None:
                detail = result[1]
                svc = service_table(sid) if sid is not None else None
                if type(detail) is int and svc is not None and detail in svc.by_id:
                    detail = svc.by_id[detail][M.NAME]
                text += ": %s" % (detail,)
            return text
        return "error: %s" % _show(jsonable(result))
    if status == "timeout":
        return "no answer in time" + (": %s" % result if type(result) is str and result else "")
    if status == "expired":
        return "not delivered before it expired"
    if status == "rejected":
        return "rejected" + (": %s" % result if type(result) is str and result else "")
    return None


def command_summary(sid, op, body):
    """A short human description: 'write heat_pump flow_setpoint=45 Cel'."""
    svc = service_table(sid)
    sname = svc.name if svc is not None else "service %d" % sid
    op_name = OP_OF.get(op, str(op))

    def oname(oid):
        row = svc.by_id.get(oid) if svc is not None and type(oid) is int else None
        return (row[M.NAME] if row is not None else str(oid)), row

    if op == F.WRITE and type(body) is dict:
        parts = []
        for oid, v in body.items():
            n, row = oname(oid)
            si = si_value(row, v)
            unit = row[M.UNIT] if row is not None else ""
            parts.append("%s=%s%s" % (n, _show(_num(si) if type(si) is float else si, 40),
                                      " " + unit if unit and unit != "1" else ""))
        return "%s %s %s" % (op_name, sname, ", ".join(parts))
    if op == F.INVOKE and type(body) is list and body:
        if sid == PLANS and body[0] == core_plans.PUSH and len(body) > 1 and type(body[1]) is list:
            return "push plan %s" % (body[1][0],)
        if sid == PLANS and body[0] == core_plans.CANCEL and len(body) > 1:
            return "cancel plan %s" % (body[1],)
        n, row = oname(body[0])
        arg = "" if len(body) < 2 else "(%s)" % _show(si_value(row, body[1]), 40)
        return "invoke %s %s%s" % (sname, n, arg)
    if op in (F.READ, F.SUBSCRIBE) and body is not None:
        oids = body if type(body) is list else list(body) if type(body) is dict else []
        return "%s %s %s" % (op_name, sname, ", ".join(oname(o)[0] for o in oids))
    return "%s %s" % (op_name, sname)


def command_json(c):
    return {
        "id": c.id, "device": c.device, "service": service_name(c.service),
        "service_id": c.service, "op": OP_OF.get(c.op, str(c.op)),
        "summary": command_summary(c.service, c.op, c.body), "body": jsonable(c.body),
        "actor": c.actor, "status": c.status, "created_at": _t(c.created_at),
        "expires_at": _t(c.expires_at), "timeout": c.timeout, "sent_at": _t(c.sent_at),
        "completed_at": _t(c.completed_at), "result": jsonable(c.result),
        "error": error_text(c.status, c.result, c.service),
        # a SUBSCRIBE's id (its message id), for an UNSUBSCRIBE of just this one
        "subscription": c.mid if c.op == F.SUBSCRIBE and c.status == "done" else None,
        "values": result_values(c),
    }


def commands_json(cs):
    """[command_json(c) for c in cs], faster for a group command's: a command that
    differs from the one before it only in id and device (the same body and result
    objects, equal other fields) gets a copy of that one's JSON with its own two."""
    out, last, shared = [], None, None
    for c in cs:
        if last is None or not (c.body is last.body and c.result is last.result
                                and _rest(c) == _rest(last)):
            shared = command_json(c)
        out.append(dict(shared, id=c.id, device=c.device))
        last = c
    return out


# a Command's fields other than id, device, body and result (compared by identity)
_REST = tuple(f for f in S.Command.__slots__ if f not in ("id", "device", "body", "result"))


def _rest(c):
    return tuple(getattr(c, f) for f in _REST)


def result_values(c):
    """A done READ's or SUBSCRIBE's result by object name: {name: {value (SI), unit}};
    None for other commands ("result" keeps the wire form)."""
    if c.op not in (F.READ, F.SUBSCRIBE) or c.status != "done" or type(c.result) is not dict:
        return None
    svc = service_table(c.service)
    out = {}
    for oid, wire in c.result.items():
        row = svc.by_id.get(oid) if svc is not None and type(oid) is int else None
        out[row[M.NAME] if row is not None else str(oid)] = {
            "value": jsonable(si_value(row, wire)),
            "unit": row[M.UNIT] if row is not None else None}
    return out


def entries_json(entries):
    """Plan entries {sid: {oid: wire}} as {service name: {object name: SI or schedule}}."""
    out = {}
    for sid, objs in (entries or {}).items():
        svc = service_table(sid) if type(sid) is int else None
        named = {}
        for oid, v in (objs.items() if type(objs) is dict else ()):
            row = svc.by_id.get(oid) if svc is not None and type(oid) is int else None
            if row is not None and not core_plans.is_series(row) and type(v) is list \
                    and len(v) == 3 and type(v[2]) is list:
                si = [v[0], v[1], [None if x is None else si_value(row, x) for x in v[2]]]
            else:
                si = si_value(row, v)
            named[row[M.NAME] if row is not None else str(oid)] = si
        out[svc.name if svc is not None else str(sid)] = named
    return out


def plan_json(p):
    return {
        "id": p.plan_id, "device": p.device, "start": _t(p.start), "expiry": _t(p.expiry),
        "primacy": p.primacy, "entries": entries_json(p.entries), "actor": p.actor,
        "status": p.status, "command_id": p.command_id, "created_at": _t(p.created_at),
        "updated_at": _t(p.updated_at),
    }


def credential_json(c):
    if c is None or type(c) is str:
        return c
    return base64.b64encode(bytes(c)).decode("ascii")


def pairing_json(p):
    return {"device": p.device, "controller": p.controller, "role": p.role,
            "credential": credential_json(p.credential), "created_at": _t(p.created_at)}


def audit_json(a):
    return {"id": a.id, "at": _t(a.at), "actor": a.actor, "action": a.action,
            "target": a.target, "detail": jsonable(a.detail)}


def event_json(ev):
    """A hub event for the live stream, with names and SI values added to telemetry."""
    out = {k: jsonable(v) for k, v in ev.items()}
    kind = ev.get("type")
    if kind == "telemetry":
        sid = ev.get("service")
        out["service_name"] = service_name(sid) if type(sid) is int else None
        vals = ev.get("values")
        out["si"] = named_si(sid, vals) if type(vals) is dict else {}
    elif kind == "command":
        out["error"] = error_text(ev.get("status"), ev.get("result"))
    elif kind == "device":
        svcs = ev.get("services") or []
        out["profile"] = main_profile(svcs)
        out["profiles"] = services_json(svcs)
    return out
