"""Fleet-wide figures from the store, as SQL aggregates (never one device at a time).

    totals = await fleet_totals(store, now)           # presence counts, power, flexibility
    await sample_power(store, now)                    # one point of the power-by-profile series
    series = await power_series(store, t_from)        # [(t, service id, W, devices), ...]
    plans = await plans_in_force(store, t_from, t_to) # plans across the fleet, by source

Every figure is computed by the database from the stored latest values
(`latest`), the device table and the plan table: the bridge never loads every
device to add them up, so a fleet page costs the same with 100 000 devices
as with ten. Only values fresher than `max_age` seconds count ("now" means
reported recently); `controller` (optional) restricts everything to the
devices that actor is paired with. On PostgreSQL's one latest row per device
(schema 3) they read the columns the store keeps beside the points: `fleet`
(the points these figures and alarm_point_sql read) and `alarm`.

What the flexibility figures add up is data (FLEX below), per profile object:
deferrable energy (heat pumps' and energy managers' deferrable_energy, plus
what EV sessions still want: energy_requested minus session_energy), battery
headroom (capacity minus stored energy to charge; stored energy to give) and
controllable load (the positive active power of heat pumps, EV chargers and
charging batteries, plus energy managers' deferrable power).

The power series is sampled: `sample_power` (the bridge calls it once a
`SAMPLE_EVERY` seconds of its clock) writes one row per profile into
`fleet_power`, the sum of the fresh latest active powers; the series is read
from there, so a page never scans telemetry.
"""
from .store import Q, check_time, check_name, check_limit, t_out, load_value
from .http_views import service_table
from ..core import model as M
from ..core.services import ALARMS, HEAT_PUMP, BATTERY, EV_CHARGER, ENERGY_MANAGER

P = 1                    # active power (W, scale 0), the same object id in every device profile
MAX_AGE = 900.0          # seconds: an older latest value is not "now"
SAMPLE_EVERY = 60.0      # seconds (bridge clock) between points of the power series
PROFILES = tuple(range(0x10, 0xC0))   # device profile service ids

# figure -> ((service, object name, how: "sum" | "pos" | "neg"), ...): the
# figure is the sum over the fleet of each term ("pos": only positive values,
# "neg": subtracted)
FLEX = {
    "deferrable_energy_wh": ((HEAT_PUMP, "deferrable_energy", "sum"),
                             (ENERGY_MANAGER, "deferrable_energy", "sum"),
                             (EV_CHARGER, "energy_requested", "sum"),
                             (EV_CHARGER, "session_energy", "neg")),
    "battery_charge_headroom_wh": ((BATTERY, "capacity", "sum"),
                                   (BATTERY, "stored_energy", "neg")),
    "battery_discharge_headroom_wh": ((BATTERY, "stored_energy", "sum"),),
    "controllable_load_w": ((HEAT_PUMP, "p", "pos"), (EV_CHARGER, "p", "pos"),
                            (BATTERY, "p", "pos"), (ENERGY_MANAGER, "deferrable_power", "sum")),
}

# an active alarm: alarms.active_count > 0, or an alarm-type object whose "active" flag is set
ALARM_COUNT = (ALARMS, 2)


def _object_id(sid, name):
    return service_table(sid).by_name[name][M.ID]


def _scale(sid, oid):
    row = service_table(sid).by_id.get(oid)
    return 10.0 ** row[M.SCALE] if row is not None else 1.0


def alarm_objects():
    """[(service, object)] of every alarm-type object a device profile reports."""
    out = []
    for sid in PROFILES:
        t = service_table(sid)
        if t is None:
            continue
        out.extend((sid, row[M.ID]) for row in t.rows if M.TYPE_NAMES[row[M.TYPE]] == "alarm")
    return out


def num(dialect, col):
    """SQL for a stored JSON value as a number (NULL if it is not one)."""
    if dialect == "postgresql":
        return "CASE WHEN json_typeof(%s) = 'number' THEN (%s::text)::float8 END" % (col, col)
    return "CASE WHEN json_type(%s) IN ('integer', 'real') THEN CAST(%s AS REAL) END" % (col, col)


def alarm_point_sql(dialect, l="l", keys_only=False):
    """SQL true when the latest value `l` (columns service, object, value) is an active
    alarm: the alarms service's active_count above 0, or an alarm-type object whose
    "active" flag is set (keys_only: when it is one of those objects, active or not)."""
    if keys_only:
        return "((%s.service, %s.object) IN (%s))" % (l, l, ", ".join(
            "(%d, %d)" % x for x in [ALARM_COUNT] + alarm_objects()))
    if dialect == "postgresql":
        flag = "(%s.value->>3) = 'true'" % l
        kind = "json_typeof(%s.value) = 'array'" % l
        # numeric, not float8: any JSON number compares (1e400 too)
        count = ("CASE WHEN json_typeof(%s.value) = 'number' THEN (%s.value::text)::numeric END"
                 % (l, l))
    else:
        flag = "json_extract(%s.value, '$[3]') = 1" % l
        kind = "json_type(%s.value) = 'array'" % l
        count = num(dialect, l + ".value")
    terms = ["(%s.service = %d AND %s.object = %d AND %s > 0)"
             % ((l, ALARM_COUNT[0], l, ALARM_COUNT[1], count))]
    for sid, oid in alarm_objects():
        terms.append("(%s.service = %d AND %s.object = %d AND %s AND %s)"
                     % (l, sid, l, oid, kind, flag))
    return "(" + " OR ".join(terms) + ")"


def alarm_sql(store, device_col):
    """SQL (and its parameters) true when the device has an active alarm in its latest
    values; one row per device (PostgreSQL schema 3) keeps it as the column `alarm`."""
    if getattr(store, "latest_per_device", False):
        return ("EXISTS (SELECT 1 FROM latest_device a WHERE a.device = %s AND a.alarm)"
                % device_col, [])
    return ("EXISTS (SELECT 1 FROM %s l WHERE l.device = %s AND %s)"
            % (getattr(store, "fleet_latest", "latest"), device_col,
               alarm_point_sql(store.dialect)), [])


def fleet_point_sql(l="l"):
    """PostgreSQL: true for the latest values the fleet figures read (every profile's
    active power, the FLEX terms); one row per device keeps them as the column `fleet`."""
    flex = sorted({(sid, _object_id(sid, name)) for terms in FLEX.values()
                   for sid, name, _ in terms})
    return ("((%s.object = %d AND %s.service >= %d AND %s.service < %d) OR (%s.service, %s.object)"
            " IN (%s))" % (l, P, l, PROFILES[0], l, PROFILES[-1] + 1, l, l,
                           ", ".join("(%d, %d)" % x for x in flex)))


def _latest(store):
    """The latest values the fleet figures read, as `l` (device, service, object, t, value)."""
    if getattr(store, "latest_per_device", False):
        # unnest in the select list: no function scan set up per device
        return ("(SELECT x.device, (x.f).service, (x.f).object, (x.f).t, (x.f).value "
                "FROM (SELECT d.device, unnest(d.fleet) AS f FROM latest_device d) x) l")
    # SQLite's latest values one row per device keep these one row per value too
    return getattr(store, "fleet_latest", "latest") + " l"


def _terms():
    """{(service, object id)} every totals query reads: each profile's p and the FLEX terms."""
    pairs = {(sid, P) for sid in PROFILES if service_table(sid) is not None}
    for terms in FLEX.values():
        pairs.update((sid, _object_id(sid, name)) for sid, name, _ in terms)
    return pairs


async def fleet_totals(store, now, max_age=MAX_AGE, controller=None):
    """{"devices", "presence": {state: n}, "power": {sid: {"w", "devices"}}, "flexibility": {}}."""
    check_time(now, "now")
    if controller is not None:
        check_name(controller, "controller")
    pairs = sorted(_terms())
    services = sorted({s for s, _ in pairs})
    objects = sorted({o for _, o in pairs})
    v = num(store.dialect, "l.value")
    join = (" JOIN pairings pr ON pr.device = {} AND pr.controller = ?" if controller
            else "{}")
    values_sql = (
        "SELECT service, object, SUM(v), SUM(CASE WHEN v > 0 THEN v ELSE 0 END), COUNT(v) "
        "FROM (SELECT l.service AS service, l.object AS object, %s AS v FROM %s%s "
        "WHERE l.object IN (%s) AND l.service IN (%s) AND l.t >= ?) x GROUP BY service, object"
        % (v, _latest(store), join.format("l.device") if controller else "", ",".join("?" * len(objects)), ",".join("?" * len(services))))
    values_params = (([controller] if controller else []) + objects + services
                     + [float(now) - max_age])
    presence_sql = ("SELECT d.presence, COUNT(*) FROM devices d%s GROUP BY d.presence"
                    % (join.format("d.id") if controller else ""))
    presence_params = (controller,) if controller else ()

    def script():
        r = yield Q(presence_sql, presence_params)
        presence = {p: n for p, n in r.rows}
        r = yield Q(values_sql, tuple(values_params))
        return presence, r.rows
    presence, rows = await store._run(script, write=False)
    got = {}
    for sid, oid, total, positive, count in rows:
        k = _scale(sid, oid)
        got[(sid, oid)] = (float(total or 0) * k, float(positive or 0) * k, int(count))
    power = {}
    for (sid, oid), (total, _, count) in got.items():
        if oid == P and count:
            power[sid] = {"w": total, "devices": count}
    flex = {}
    for figure, terms in FLEX.items():
        x = 0.0
        for sid, name, how in terms:
            total, positive, _ = got.get((sid, _object_id(sid, name)), (0.0, 0.0, 0))
            x += positive if how == "pos" else -total if how == "neg" else total
        flex[figure] = max(0.0, x)
    return {"devices": sum(presence.values()), "presence": presence, "power": power,
            "flexibility": flex}


async def sample_power(store, now, max_age=MAX_AGE):
    """Write one point of the power series: per profile, the sum of fresh latest p."""
    check_time(now, "now")
    v = num(store.dialect, "l.value")
    sql = ("INSERT INTO fleet_power (t, service, watts, devices) "
           "SELECT ?, l.service, COALESCE(SUM(%s), 0), COUNT(*) FROM %s "
           "WHERE l.object = ? AND l.service >= ? AND l.service < ? AND l.t >= ? "
           "GROUP BY l.service ON CONFLICT (t, service) DO NOTHING" % (v, _latest(store)))
    params = (float(now), P, PROFILES[0], PROFILES[-1] + 1, float(now) - max_age)

    def script():
        r = yield Q(sql, params)
        return r.count
    return await store._run(script)


async def prune_power(store, before_t):
    """Delete points of the power series older than before_t; how many went."""
    check_time(before_t, "before_t")

    def script():
        r = yield Q("DELETE FROM fleet_power WHERE t < ?", (float(before_t),))
        return r.count
    return await store._run(script)


async def power_series(store, t_from, t_to=None, limit=10000):
    """[(t, service id, watts, devices), ...] with t_from <= t (< t_to), oldest first."""
    check_time(t_from, "t_from")
    if t_to is not None:
        check_time(t_to, "t_to")
    check_limit(limit)
    sql = "SELECT t, service, watts, devices FROM fleet_power WHERE t >= ?"
    params = [float(t_from)]
    if t_to is not None:
        sql += " AND t < ?"
        params.append(float(t_to))
    # the newest points when there are more than limit
    sql = ("SELECT * FROM (" + sql + " ORDER BY t DESC, service LIMIT ?) x "
           "ORDER BY t, service")
    params.append(limit)

    def script():
        r = yield Q(sql, tuple(params))
        return [(t_out(t), sid, float(w), int(n)) for t, sid, w, n in r.rows]
    return await store._run(script, write=False)


async def plans_in_force(store, t_from, t_to, controller=None, limit=200):
    """Plans queued or accepted overlapping [t_from, t_to), across the fleet, one entry per
    (actor, plan id): {"actor", "plan_id", "start", "expiry", "devices", "accepted",
    "primacy", "entries"} (entries: one device's, as a sample), by start."""
    check_time(t_from, "t_from")
    check_time(t_to, "t_to")
    check_limit(limit)
    if controller is not None:
        check_name(controller, "controller")
    entries = "MIN(p.entries::text)" if store.dialect == "postgresql" else "MIN(p.entries)"
    join = " JOIN pairings pr ON pr.device = p.device AND pr.controller = ?" if controller else ""
    sql = ("SELECT p.actor, p.plan_id, MIN(p.start), MAX(p.expiry), COUNT(*), "
           "SUM(CASE WHEN p.status = 'accepted' THEN 1 ELSE 0 END), MIN(p.primacy), %s "
           "FROM plans p%s WHERE p.expiry > ? AND p.start < ? "
           "AND p.status IN ('queued', 'accepted') "
           "GROUP BY p.actor, p.plan_id ORDER BY MIN(p.start), p.actor, p.plan_id LIMIT ?"
           % (entries, join))
    params = ([controller] if controller else []) + [float(t_from), float(t_to), limit]

    def script():
        r = yield Q(sql, tuple(params))
        return [{"actor": a, "plan_id": pid, "start": t_out(s), "expiry": t_out(e),
                 "devices": int(n), "accepted": int(acc or 0), "primacy": pr,
                 "entries": load_value(ent)} for a, pid, s, e, n, acc, pr, ent in r.rows]
    return await store._run(script, write=False)
