"""The fleet view's API: aggregates and plans in force across the fleet (routes under /api/v1/fleet).

    GET /api/v1/fleet/summary   counts by presence, active power by profile now and
                                over time, flexibility available now
    GET /api/v1/fleet/plans     plans queued or in force across the fleet (a timeline)

Every figure comes from SQL aggregates in the store (store_fleet); a non-operator
sees only the devices it is paired with (and no fleet-wide power series).
"""
from . import http_api as A
from . import http_views as V
from . import store_fleet as F

SERIES_WINDOW = 6 * 3600     # seconds of power series by default
PLANS_BEFORE = 3600          # the plan timeline's default window: an hour back ...
PLANS_AHEAD = 24 * 3600      # ... to a day ahead


def _scope(request):
    """(bridge, controller): controller None when the actor sees the whole fleet."""
    bridge = A._bridge(request)
    actor = request[A.ACTOR]
    everything = A._is_operator(bridge, actor) or actor in bridge.plugin_actors
    return bridge, None if everything else actor


async def summary(request):
    bridge, controller = _scope(request)
    now = bridge.clock()
    since = A._query_time(request, "since")
    if since is None:
        since = max(0, now - SERIES_WINDOW)
    totals = await F.fleet_totals(bridge.store, now, F.MAX_AGE, controller)
    presence = {p: totals["presence"].get(p, 0) for p in ("online", "sleeping", "offline")}
    series = None
    if controller is None:
        points = await F.power_series(bridge.store, since)
        series = {"step": F.SAMPLE_EVERY, "points": [
            {"t": t, "profile": V.service_name(sid), "service_id": sid, "w": w, "devices": n}
            for t, sid, w, n in points]}
    return A.ok({
        "time": now, "max_age": F.MAX_AGE, "devices": totals["devices"], "presence": presence,
        "power": [{"profile": V.service_name(sid), "service_id": sid, "w": x["w"],
                   "devices": x["devices"]} for sid, x in sorted(totals["power"].items())],
        "flexibility": totals["flexibility"],
        "series": series,
    })


async def plans(request):
    bridge, controller = _scope(request)
    now = bridge.clock()
    t_from = A._query_time(request, "from")
    t_to = A._query_time(request, "to")
    t_from = max(0, now - PLANS_BEFORE) if t_from is None else t_from
    t_to = now + PLANS_AHEAD if t_to is None else t_to
    if t_to <= t_from:
        raise V.bad("to must be after from")
    limit = A._query_int(request, "limit", 200, 1, 1000)
    rows = await F.plans_in_force(bridge.store, t_from, t_to, controller, limit)
    for r in rows:
        r["entries"] = V.entries_json(r["entries"])
    return A.ok({"time": now, "from": t_from, "to": t_to, "plans": rows})


def add_routes(router):
    router.add_get(A.API + "/fleet/summary", summary)
    router.add_get(A.API + "/fleet/plans", plans)
