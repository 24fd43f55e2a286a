"""The bridge's HTTP side: JSON API under /api/v1, live event stream, dashboard, /metrics.

    app = make_app(bridge)            # an aiohttp web.Application
    web.run_app(app, host="127.0.0.1", port=8080)

Every API answer is JSON; every refusal is a 4xx/5xx status with
{"error": "<what is wrong>"}. Callers authenticate with
`Authorization: Bearer <token>`, mapped to an actor through the config's
[access] tokens; with no tokens configured every caller is the operator
(so the default bind address is 127.0.0.1). What an actor may do to a
device is decided by its pairing role (Bridge.submit, pair, ...): 403 if
not allowed. /api/v1/health, /api/v1/openapi.json, /metrics and the
dashboard's static files need no token; the dashboard asks for one when
the API answers 401 and keeps it in the browser's localStorage.

The live stream (/api/v1/events) is Server-Sent Events of the bridge's
EventHub; as browsers' EventSource cannot send headers, it also takes the
token as ?access_token=.
"""
import asyncio
import json
import logging
import math
import os

from aiohttp import web

from . import http_guard as G
from . import http_views as V
from . import store as S
from .openapi import document as openapi_document
from .service import Forbidden, BadRequest, Conflict, OWNER

log = logging.getLogger("spot.http")

API = "/api/v1"
DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard")
BRIDGE = web.AppKey("bridge", object)
STREAMS = web.AppKey("streams", set)
ACTOR = web.RequestKey("actor", str) if hasattr(web, "RequestKey") else "actor"
OPEN_PATHS = (API + "/health", API + "/openapi.json")
MANAGERS = (OWNER, "installer")     # roles that may pair and group a device
KEEPALIVE = 15.0                    # seconds between SSE comments on a quiet stream
MAX_STREAMS = 64                    # live event streams open at once (each holds a queue)
ROLE_RECHECK = 5.0                  # seconds a stream trusts its actor's role on a device
_CLOSE = {"type": "_close"}


def _reject_constant(name):
    raise ValueError("%s is not a JSON number" % name)


def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def ok(data, status=200):
    return web.json_response(data, status=status, dumps=dumps)


def fail(status, message, headers=None):
    return web.json_response({"error": message}, status=status, headers=headers, dumps=dumps)


async def read_json(request):
    """The request body as JSON (NaN and Infinity refused); 400 saying why not."""
    raw = await G.read_body(request)
    if not raw:
        raise V.bad("the request needs a JSON body")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant,
                          parse_float=G.json_float, parse_int=G.json_int)
    except UnicodeDecodeError:
        raise V.bad("the request body is not UTF-8")
    except RecursionError:
        raise V.bad("the request body is nested too deeply")
    except ValueError as e:
        raise V.bad("the request body is not valid JSON: %s" % e)
    G.check_body(data)
    return data


# ------------------------------------------------------------------ middleware

def _actor(bridge, request):
    tokens = bridge.config.tokens
    if not tokens:
        return bridge.config.operator
    header = request.headers.get("Authorization", "")
    token = None
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
    elif request.path == API + "/events":
        token = request.query.get("access_token")
    if token:
        found = None
        for known, actor in tokens.items():  # compare every token, in constant time each
            if G.same_secret(known, token):
                found = actor
        if found is not None:
            return found
    raise V.ApiError(401, "missing or unknown bearer token (Authorization: Bearer <token>)")


@web.middleware
async def api_middleware(request, handler):
    """Authentication, and every error as {"error": ...} with the right status."""
    bridge = request.app[BRIDGE]
    try:
        G.check_host_and_origin(request, bridge.config.hosts)
        if request.match_info.http_exception is None:
            G.check_content_type(request)
        if request.path.startswith(API + "/") and request.path not in OPEN_PATHS:
            request[ACTOR] = _actor(bridge, request)
        return await handler(request)
    except V.ApiError as e:
        if e.status in G.COUNTED:
            bridge.metrics.inc("http_refused", status=e.status)
        headers = {"WWW-Authenticate": 'Bearer realm="spot"'} if e.status == 401 else None
        return fail(e.status, e.message, headers)
    except Forbidden as e:
        return fail(403, str(e))
    except (S.UnknownDevice, S.UnknownCommand) as e:
        return fail(404, str(e))
    except Conflict as e:
        return fail(409, str(e))
    except S.StoreUnavailable as e:
        log.error("store unavailable in %s %r: %s", request.method, request.path, e)
        return fail(503, "store unavailable, try again later")
    except (BadRequest, S.InvalidValue) as e:
        return fail(400, str(e))
    except (KeyError, IndexError):  # a bug, not an unknown resource
        log.exception("error in %s %r", request.method, request.path)
        return fail(500, "internal error")
    except LookupError as e:        # Bridge.submit & co.: unknown device
        return fail(404, str(e.args[0]) if e.args else "not found")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k.lower() == "allow"}
        return fail(e.status, e.reason or "error", headers or None)
    except ValueError as e:
        return fail(400, str(e))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("error in %s %r", request.method, request.path)
        return fail(500, "internal error")


# ------------------------------------------------------------------ helpers

def _bridge(request):
    return request.app[BRIDGE]


def _is_operator(bridge, actor):
    return actor == bridge.config.operator


async def _device(request, need=None, gate=True):
    """(bridge, actor, Device) for the path's device: 404 unknown or not paired (the
    caller cannot tell which), 403 without a role in need.

    need: roles required (None: any pairing); gate=False: no role check here (the
    bridge decides, and audits what it refuses)."""
    bridge = _bridge(request)
    actor = request[ACTOR]
    device_id = request.match_info["id"]
    S.check_device(device_id)
    d = await bridge.store.get_device(device_id)
    if d is None:
        raise V.ApiError(404, "unknown device %r" % device_id)
    role = await bridge.store.role_of(device_id, actor) if gate else None
    if gate and role is None:   # as if there were no such device: ids are not confirmed
        raise V.ApiError(404, "unknown device %r" % device_id)
    if gate and need is not None and role not in need:
        raise Forbidden("%s may not manage %s (role: %s)" % (actor, device_id, role))
    return bridge, actor, d


def _last_seen(bridge, device_id):
    seen = getattr(bridge, "_seen", None)
    return seen.get(device_id) if isinstance(seen, dict) else None


def _query_int(request, name, default, lo, hi):
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise V.bad("%s must be an integer, not %s" % (name, V._show(raw)))
    if not lo <= v <= hi:
        raise V.bad("%s must be from %d to %d, not %s" % (name, lo, hi, V._show(raw)))
    return v


def _query_time(request, name):
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise V.bad("%s must be Unix seconds, not %s" % (name, V._show(raw)))
    if not math.isfinite(v) or not 0 <= v <= V.MAX_TIME:
        raise V.bad("%s must be Unix seconds from 0 to %d, not %s"
                    % (name, V.MAX_TIME, V._show(raw)))
    return int(v) if v.is_integer() else v


def _query_choice(request, name, choices):
    raw = request.query.get(name)
    if raw is not None and raw not in choices:
        raise V.bad("%s must be one of %s, not %s" % (name, ", ".join(choices), V._show(raw)))
    return raw


def _served(d):
    return {s[0] for s in d.services}


# ------------------------------------------------------------------ handlers

async def health(request):
    bridge = _bridge(request)
    try:
        await bridge.store.schema_version()
        store = "ok"
    except Exception as e:  # a health probe reports, it does not fail
        store = "unavailable: %s" % e.__class__.__name__
    if store == "ok" and getattr(bridge, "store_problem", None):   # e.g. failing sweeps
        store = "error: %s" % bridge.store_problem
    return ok({
        "status": "ok" if store == "ok" else "degraded", "store": store,
        "instance": bridge.config.instance, "time": bridge.clock(),
        "devices": len(bridge.known),
        "online": sum(1 for p in bridge.presence.values() if p == "online"),
        "auth": bool(bridge.config.tokens),
    }, 200 if store == "ok" else 503)


async def openapi(request):
    return ok(openapi_document(bool(_bridge(request).config.tokens)))


async def profiles(request):
    return ok([V.profile_json(s) for s in V.all_services()])


DEVICE_PAGE = 1000       # devices per page of GET /devices unless ?limit= says otherwise
MAX_DEVICE_PAGE = 10000


async def list_devices(request):
    """GET /devices: one page in id order (?limit=, ?after=<last id of the previous page>);
    a Link header (rel="next") names the next page while there may be one."""
    bridge = _bridge(request)
    actor = request[ACTOR]
    presence = _query_choice(request, "presence", S.PRESENCE)
    group = request.query.get("group")
    after = request.query.get("after")
    limit = _query_int(request, "limit", DEVICE_PAGE, 1, MAX_DEVICE_PAGE)
    profile = request.query.get("profile")
    profile = V.resolve_service(profile).sid if profile is not None else None
    alarm = _query_choice(request, "alarm", ("true", "false"))
    alarm = None if alarm is None else alarm == "true"
    sees_all = _is_operator(bridge, actor) or actor in bridge.plugin_actors
    devices = await bridge.store.list_devices_page(after, limit, presence, group,
                                                   None if sees_all else actor,
                                                   profile=profile, alarm=alarm)
    response = ok([V.device_json(d, _last_seen(bridge, d.id)) for d in devices])
    if len(devices) == limit:
        query = dict(request.query, after=devices[-1].id, limit=str(limit))
        response.headers["Link"] = '<%s>; rel="next"' % request.url.relative().with_query(query)
    return response


async def delete_device(request):
    """DELETE /devices/{id}: the operator or an owner forgets a device (audited)."""
    bridge = _bridge(request)
    device_id = request.match_info["id"]
    S.check_device(device_id)
    await bridge.delete_device(request[ACTOR], device_id)
    return web.Response(status=204)


async def get_device(request):
    bridge, actor, d = await _device(request)
    out = V.device_json(d, _last_seen(bridge, d.id))
    out["values"] = V.latest_json(await bridge.store.latest(d.id))
    out["role"] = await bridge.store.role_of(d.id, actor)
    return ok(out)


async def history(request):
    bridge, actor, d = await _device(request)
    for name in ("service", "object"):
        if not request.query.get(name):
            raise V.bad("history needs ?service= and ?object= (names or numbers)")
    svc = V.resolve_service(request.query["service"])
    row = V.resolve_object(svc, request.query["object"])
    t_from = _query_time(request, "from")
    t_to = _query_time(request, "to")
    limit = _query_int(request, "limit", 1000, 1, 10000)
    oid = row[0]
    if t_from is None:  # the newest points, oldest first
        rows = await bridge.store.history(d.id, svc.sid, oid, None, t_to, limit, descending=True)
        rows.reverse()
    else:
        rows = await bridge.store.history(d.id, svc.sid, oid, t_from, t_to, limit)
    return ok({
        "device": d.id, "service": svc.name, "service_id": svc.sid, "object": row[1],
        "object_id": oid, "unit": row[3],
        "points": [{"t": t, "value": V.si_value(row, v)} for t, v in rows],
    })


async def put_groups(request):
    bridge, actor, d = await _device(request, MANAGERS)
    data = V.body_object(await read_json(request), ("groups",), ("groups",))
    groups = data["groups"]
    if type(groups) is not list or len(groups) > 64:
        raise V.bad("groups must be a list of at most 64 names")
    for g in groups:
        S.check_name(g, "group")
    await bridge.store.set_groups(d.id, groups)
    await bridge.store.audit(actor, "groups", d.id, {"groups": sorted(set(groups))},
                             bridge.clock())
    d = await bridge.store.get_device(d.id)
    return ok(V.device_json(d, _last_seen(bridge, d.id)))


async def post_command(request):
    bridge, actor, d = await _device(request)
    sid, op, body, expires_in, timeout = V.build_command(await read_json(request))
    if sid not in _served(d):
        raise V.bad("device %s does not serve service %s" % (d.id, V.service_name(sid)))
    await G.check_queue_quota(bridge, actor, d.id)
    cmd = await bridge.submit(actor, d.id, sid, op, body, expires_in=expires_in, timeout=timeout)
    return ok(V.command_json(cmd), 202)


async def device_commands(request):
    bridge, actor, d = await _device(request)
    limit = _query_int(request, "limit", 100, 1, 1000)
    status = _query_choice(request, "status", S.COMMAND_STATUSES)
    cmds = await bridge.store.list_commands(d.id, limit=limit, status=status)
    return ok([V.command_json(c) for c in cmds])


async def get_command(request):
    bridge = _bridge(request)
    actor = request[ACTOR]
    raw = request.match_info["cid"]
    if not raw.isdigit() or not raw.isascii() or len(raw) > 18 or int(raw) < 1:
        raise V.bad("command id must be a positive integer, not %s" % V._show(raw))
    cmd = await bridge.store.get_command(int(raw))
    if cmd is None or await bridge.store.role_of(cmd.device, actor) is None:
        raise V.ApiError(404, "unknown command %s" % raw)
    return ok(V.command_json(cmd))


async def group_command(request):
    bridge = _bridge(request)
    actor = request[ACTOR]
    group = request.match_info["group"]
    S.check_name(group, "group")
    sid, op, body, expires_in, timeout = V.build_command(await read_json(request))
    done, refused = await bridge.submit_group(actor, group, sid, op, body,
                                              expires_in=expires_in, timeout=timeout)
    if not done and not refused:   # the group's members are read once, by submit_group
        raise V.ApiError(404, "no device in group %r" % group)
    # counts, not ids: refused devices may be ones the caller may not even see
    return ok({"group": group, "commands": V.commands_json(done),
               "queued": len(done), "refused": len(refused)}, 202)


async def device_subscriptions(request):
    """The subscriptions the bridge holds on the device: all for its managers, else
    the caller's own."""
    bridge, actor, d = await _device(request)
    manager = bridge.manages(actor, await bridge.store.role_of(d.id, actor))
    return ok([{"service": V.service_name(sid), "service_id": sid, "subscription": mid,
                "actor": who} for sid, mid, who in bridge.subscriptions_of(d.id)
               if manager or who == actor])


async def device_plans(request):
    bridge, actor, d = await _device(request)
    everything = _query_choice(request, "all", ("true", "false")) == "true"
    plans = await bridge.store.list_plans(d.id, bridge.clock(), include_inactive=everything)
    return ok([V.plan_json(p) for p in plans])


async def post_plan(request):
    bridge, actor, d = await _device(request)
    data = await read_json(request)
    pid, start, expiry, primacy, entries = V.build_plan(data, bridge.clock(), _served(d))
    now = bridge.clock()
    if expiry <= now:
        raise V.bad("the plan expired already: expiry %d is not after now (%d)" % (expiry, now))
    if expiry - now > V.MAX_HORIZON:
        raise V.bad("expiry is more than %d s (48 h) ahead: devices refuse such plans"
                    % V.MAX_HORIZON)
    expires_in = V.optional(data, "expires_in", 0, V.MAX_EXPIRES_IN, exclusive_lo=True)
    await G.check_queue_quota(bridge, actor, d.id)
    if pid is None:  # the next id this device has not used
        known = await bridge.store.list_plans(d.id, bridge.clock(), include_inactive=True)
        pid = max([p.plan_id for p in known] + [0]) + 1
        if pid > 0xFFFFFFFF:
            raise V.bad("no plan id left: give one")
    cmd = await bridge.push_plan(actor, d.id, pid, start, expiry, primacy, entries,
                                 expires_in=expires_in)
    plans = await bridge.store.list_plans(d.id, bridge.clock(), include_inactive=True)
    plan = next(p for p in plans if p.plan_id == pid)
    return ok({"plan": V.plan_json(plan), "command": V.command_json(cmd)}, 202)


async def delete_plan(request):
    bridge, actor, d = await _device(request)
    raw = request.match_info["plan_id"]
    if not raw.isdigit() or not raw.isascii() or len(raw) > 10 or not 1 <= int(raw) <= 0xFFFFFFFF:
        raise V.bad("plan id must be an integer from 1 to 4294967295, not %s" % V._show(raw))
    pid = int(raw)
    plans = await bridge.store.list_plans(d.id, bridge.clock(), include_inactive=True)
    if not any(p.plan_id == pid for p in plans):
        raise V.ApiError(404, "device %s has no plan %d" % (d.id, pid))
    cmd = await bridge.cancel_plan(actor, d.id, pid)
    return ok(V.command_json(cmd), 202)


async def get_pairings(request):
    bridge, actor, d = await _device(request, MANAGERS)
    return ok([V.pairing_json(p) for p in await bridge.store.pairings(d.id)])


async def post_pairing(request):
    bridge, actor, d = await _device(request, gate=False)   # Bridge.pair checks and audits
    data = V.body_object(await read_json(request), ("controller", "role", "credential"),
                         ("controller", "role"))
    controller, role, cred = data["controller"], data["role"], data.get("credential")
    S.check_name(controller, "controller")
    if type(role) is not str or role not in S.ROLES:
        raise V.bad("role must be one of %s, not %s" % (", ".join(S.ROLES), V._show(role)))
    if cred is not None:
        S.check_name(cred, "credential")
    issued = None
    if bridge.pairing is not None and bridge.pairing.keyring.has(d.id) and cred is None:
        issued = await bridge.pairing.pair(actor, d.id, controller, role)  # provisions the device
    else:
        await bridge.pair(actor, d.id, controller, role, cred)
    pairing = next(p for p in await bridge.store.pairings(d.id) if p.controller == controller)
    out = V.pairing_json(pairing)
    if issued is not None:
        out["oscore"] = issued["oscore"]   # the controller's credentials, given out only here
        out["command"] = issued["command"]
    return ok(out, 201)


async def delete_pairing(request):
    """DELETE .../pairings/{controller}, or .../pairings?controller=..."""
    bridge, actor, d = await _device(request, gate=False)   # Bridge.unpair checks, audits
    controller = request.match_info.get("controller", request.query.get("controller"))
    if controller is None:
        raise V.bad("which controller? DELETE .../pairings/{controller} or ?controller=")
    S.check_name(controller, "controller")
    if bridge.pairing is not None and bridge.pairing.keyring.has(d.id):
        try:
            await bridge.pairing.unpair(actor, d.id, controller)  # and removes it on the device
        except LookupError:
            raise V.ApiError(404, "%s is not paired with %s" % (controller, d.id))
    elif not await bridge.unpair(actor, d.id, controller):
        raise V.ApiError(404, "%s is not paired with %s" % (controller, d.id))
    return web.Response(status=204)


async def post_signal(request):
    bridge = _bridge(request)
    actor = request[ACTOR]
    svc = V.resolve_service(request.match_info["service"])
    if svc.sid not in V.INFORMATIONAL:
        raise V.bad("%s is not an informational service (price, weather, grid)" % svc.name)
    values, t = V.build_signal(svc, await read_json(request))
    t = int(bridge.clock()) if t is None else t
    frame = await bridge.broadcast(actor, svc.sid, values, t)
    consumers = [d.id for d in await bridge.store.list_devices() if svc.sid in d.consumes]
    return ok({"service": svc.name, "service_id": svc.sid, "t": t, "bytes": len(frame),
               "consumers": consumers}, 202)


async def audit(request):
    bridge = _bridge(request)
    actor = request[ACTOR]
    if not _is_operator(bridge, actor):
        raise Forbidden("only the operator may read the audit log")
    limit = _query_int(request, "limit", 100, 1, 1000)
    target = request.query.get("target")
    if target is not None:
        S.check_name(target, "target")
    return ok([V.audit_json(a) for a in await bridge.store.list_audit(limit, target)])


async def events(request):
    """Server-Sent Events: every hub event the actor may see (?device=, ?types=)."""
    bridge = _bridge(request)
    actor = request[ACTOR]
    only = request.query.get("device")
    if only is not None:
        S.check_device(only)
    types = request.query.get("types")
    wanted = None
    if types is not None:
        wanted = set(types.split(","))
        unknown = wanted - {"device", "presence", "telemetry", "command"}
        if unknown or not wanted:
            raise V.bad("types must be a comma-separated list of device, presence, telemetry, "
                        "command, not %r" % types)
    everything = _is_operator(bridge, actor) or actor in bridge.plugin_actors
    roles = {}      # device -> (role, loop time it was read): unpairing reaches open streams
    loop = asyncio.get_running_loop()
    if len(request.app[STREAMS]) >= MAX_STREAMS:
        raise V.ApiError(503, "too many live event streams open (%d): close one or try "
                              "again later" % MAX_STREAMS)
    queue = bridge.hub.subscribe()
    request.app[STREAMS].add(queue)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 2000\n: connected\n\n")
        while True:
            try:
                ev = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except asyncio.TimeoutError:
                await resp.write(b": keepalive\n\n")
                continue
            if ev is _CLOSE:
                break
            kind = ev.get("type")
            device = ev.get("device")
            if (wanted is not None and kind not in wanted) or (only is not None and device != only):
                continue
            if not everything:
                if device is None:
                    continue
                role, read_at = roles.get(device, (None, None))
                if read_at is None or loop.time() - read_at >= ROLE_RECHECK:
                    role = await bridge.store.role_of(device, actor)
                    roles[device] = (role, loop.time())
                if role is None:
                    continue
            data = dumps(V.event_json(ev))
            await resp.write(("event: %s\ndata: %s\n\n" % (kind, data)).encode("utf-8"))
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        bridge.hub.unsubscribe(queue)
        request.app[STREAMS].discard(queue)
    return resp


async def metrics(request):
    return web.Response(text=_bridge(request).metrics.render(),
                        content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


# ------------------------------------------------------------------ dashboard

def _static(name, content_type):
    path = os.path.join(DASHBOARD, name)

    async def serve(request):
        return web.FileResponse(path, headers={"Content-Type": content_type,
                                               "Cache-Control": "no-cache"})
    return serve


async def _close_streams(app):
    for q in list(app[STREAMS]):
        if q.full():
            q.get_nowait()
        q.put_nowait(_CLOSE)


def make_app(bridge):
    """The aiohttp application serving the API, the event stream, /metrics and the dashboard."""
    app = web.Application(middlewares=[api_middleware], client_max_size=256 * 1024)
    app[BRIDGE] = bridge
    app[STREAMS] = set()
    app.on_shutdown.append(_close_streams)
    app.on_response_prepare.append(G.add_security_headers)
    G.quiet_peer_errors()
    bridge.metrics.describe("http_refused", "HTTP requests refused by the guard or a quota, "
                                            "by status (403 Host/Origin, 408, 415, 429)")
    r = app.router
    r.add_get(API + "/health", health)
    r.add_get(API + "/openapi.json", openapi)
    r.add_get(API + "/profiles", profiles)
    r.add_get(API + "/devices", list_devices)
    r.add_get(API + "/devices/{id}", get_device)
    r.add_delete(API + "/devices/{id}", delete_device)
    r.add_get(API + "/devices/{id}/history", history)
    r.add_put(API + "/devices/{id}/groups", put_groups)
    r.add_get(API + "/devices/{id}/commands", device_commands)
    r.add_post(API + "/devices/{id}/commands", post_command)
    r.add_get(API + "/commands/{cid}", get_command)
    r.add_post(API + "/groups/{group}/commands", group_command)
    r.add_get(API + "/devices/{id}/plans", device_plans)
    r.add_get(API + "/devices/{id}/subscriptions", device_subscriptions)
    r.add_post(API + "/devices/{id}/plans", post_plan)
    r.add_delete(API + "/devices/{id}/plans/{plan_id}", delete_plan)
    r.add_get(API + "/devices/{id}/pairings", get_pairings)
    r.add_post(API + "/devices/{id}/pairings", post_pairing)
    r.add_delete(API + "/devices/{id}/pairings", delete_pairing)
    r.add_delete(API + "/devices/{id}/pairings/{controller}", delete_pairing)
    r.add_post(API + "/signals/{service}", post_signal)
    r.add_get(API + "/events", events)
    r.add_get(API + "/audit", audit)
    from .http_fleet import add_routes as add_fleet_routes   # it imports this module
    add_fleet_routes(r)
    r.add_get("/metrics", metrics)
    index = _static("index.html", "text/html; charset=utf-8")
    r.add_get("/", index)
    r.add_get("/device/{id}", index)
    r.add_get("/app.js", _static("app.js", "text/javascript; charset=utf-8"))
    r.add_get("/style.css", _static("style.css", "text/css; charset=utf-8"))
    return app
