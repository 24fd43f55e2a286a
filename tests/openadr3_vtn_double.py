"""FakeVtn3: a TEST DOUBLE of an OpenADR 3.0.1 VTN, stateful and in memory.

No installable OpenADR 3 VTN exists, so the behaviour tests of the openadr3
plugin run against this small aiohttp server on 127.0.0.1, written for the
tests from the 3.0.1 OpenAPI document (tests/data/openadr3/oadr3.0.1.yaml).
It is not a peer: the request and response shapes the plugin uses are
checked against Prism serving that document (test_openadr3_contract.py).

What it does:
- /auth/token takes client credentials in a form body only (Basic auth is
  refused, as the document's token endpoint defines a form body); tokens
  expire after `token_ttl` seconds and are then refused with 401;
- programs, events, vens, resources, reports, subscriptions with the
  document's paths, skip/limit paging and 404s; every request body is
  validated against the document's schema and refused with 400 if it does
  not conform (the refusals are kept in `invalid`, which tests expect empty);
- the business side (tests) adds, changes and deletes programs and events
  in Python; subscribers are notified (POST to callbackUrl with their
  bearerToken) and the answers are kept in `deliveries`;
- `fault` spoils the next answer to GET /events ("json": not JSON, "500").
"""
import asyncio
import itertools
import json
import pathlib
import secrets
import time
from datetime import datetime, timedelta, timezone

import aiohttp
import yaml
from aiohttp import web
from openapi_schema_validator import OAS30WriteValidator

SPEC = pathlib.Path(__file__).parent / "data" / "openadr3" / "oadr3.0.1.yaml"
PREFIX = "/openadr3/3.0.1"
_spec_cache = {}


def spec():
    if "doc" not in _spec_cache:
        _spec_cache["doc"] = yaml.safe_load(SPEC.read_text())
    return _spec_cache["doc"]


def validator(schema_name):
    """A validator of the document's components/schemas/<schema_name> (OpenAPI 3.0 rules)."""
    return OAS30WriteValidator({"$ref": "#/components/schemas/" + schema_name,
                                "components": spec()["components"]})


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(t):
    """A date-time with milliseconds, as the VTN stamps created / modified objects."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def problem(status, title, detail=""):
    return web.json_response({"title": title, "status": status, "detail": detail}, status=status)


def event_object(program_id, payload_type, values, start, step, units=None, currency=None,
                 targets=None, priority=None, report=None, name=None):
    """An OpenADR 3 event (the business side's POST body): consecutive intervals of `step` s."""
    desc = {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": payload_type}
    if units:
        desc["units"] = units
    if currency:
        desc["currency"] = currency
    ev = {"objectType": "EVENT", "programID": program_id,
          "eventName": name or "%s-%d" % (payload_type.lower(), int(start)),
          "payloadDescriptors": [desc],
          "intervalPeriod": {"start": iso(start), "duration": "PT%dS" % step},
          "intervals": [{"id": k, "payloads": [{"type": payload_type, "values": [v]}]}
                        for k, v in enumerate(values)]}
    if targets is not None:
        ev["targets"] = targets
    if priority is not None:
        ev["priority"] = priority
    if report is not None:
        ev["reportDescriptors"] = [{"payloadType": p, "units": u} for p, u in report]
    return ev


class FakeVtn3:
    """Test double of an OpenADR 3.0.1 VTN (see the module docstring)."""

    def __init__(self, port, clients=None, token_ttl=3600.0):
        self.port = port
        self.url = "http://127.0.0.1:%d%s" % (port, PREFIX)
        self.clients = dict(clients or {"ven-client": "ven-secret"})
        self.token_ttl = token_ttl
        self.tokens = {}          # token -> (client id, expiry)
        self.token_requests = []  # (client id, ok)
        self.programs, self.events, self.vens = {}, {}, {}
        self.resources, self.reports, self.subscriptions = {}, {}, {}
        self.report_puts = 0
        self.invalid = []         # (method, path, validation message)
        self.deliveries = []      # (callback url, objectType, operation, HTTP status)
        self.requests = []        # (method, path)
        self.fault = None
        self._ids = itertools.count(1)
        self._validators = {n: validator(n) for n in
                            ("ven", "resource", "report", "subscription", "event", "program")}
        self._runner = None
        self._session = None

    # ------------------------------------------------------------ running

    async def start(self):
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_post(PREFIX + "/auth/token", self.token)
        r.add_get(PREFIX + "/programs", self.list_of("programs"))
        r.add_get(PREFIX + "/events", self.list_of("events", "programID"))
        r.add_get(PREFIX + "/vens", self.list_of("vens", "venName"))
        r.add_post(PREFIX + "/vens", self.create("vens", "ven"))
        r.add_get(PREFIX + "/vens/{venID}/resources", self.list_resources)
        r.add_post(PREFIX + "/vens/{venID}/resources", self.create_resource)
        r.add_get(PREFIX + "/reports", self.list_of("reports", "programID"))
        r.add_post(PREFIX + "/reports", self.create("reports", "report"))
        r.add_put(PREFIX + "/reports/{id}", self.update_report)
        r.add_get(PREFIX + "/subscriptions", self.list_of("subscriptions", "programID"))
        r.add_post(PREFIX + "/subscriptions", self.create("subscriptions", "subscription"))
        r.add_delete(PREFIX + "/subscriptions/{id}", self.delete_subscription)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self

    async def stop(self):
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ auth

    async def token(self, request):
        if request.content_type != "application/x-www-form-urlencoded":
            return web.json_response({"error": "invalid_request"}, status=400)
        form = await request.post()
        cid, secret = form.get("client_id"), form.get("client_secret")
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        ok = cid in self.clients and secrets.compare_digest(str(secret), self.clients[cid])
        self.token_requests.append((cid, ok))
        if not ok:
            return web.json_response({"error": "invalid_client"}, status=401)
        tok = secrets.token_urlsafe(16)
        self.tokens[tok] = (cid, time.monotonic() + self.token_ttl)
        return web.json_response({"access_token": tok, "token_type": "Bearer",
                                  "expires_in": int(self.token_ttl)})

    @web.middleware
    async def _auth(self, request, handler):
        self.requests.append((request.method, request.path))
        if request.path.endswith("/auth/token"):
            return await handler(request)
        auth = request.headers.get("Authorization", "")
        tok = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if tok is None or tok[1] < time.monotonic():
            return problem(401, "Unauthorized", "missing, unknown or expired token")
        return await handler(request)

    # ------------------------------------------------------------ objects

    def _new(self, table, obj, otype):
        oid = "%s-%d" % (table[:-1], next(self._ids))
        now = iso_ms(time.time())
        obj = dict(obj, id=oid, objectType=otype, createdDateTime=now, modificationDateTime=now)
        getattr(self, table)[oid] = obj
        return obj

    async def _body(self, request, schema):
        try:
            body = json.loads(await request.read())
        except ValueError as e:
            self.invalid.append((request.method, request.path, "not JSON: %s" % e))
            return None, problem(400, "Bad Request", "not JSON")
        errors = sorted(self._validators[schema].iter_errors(body), key=str)
        if errors:
            msg = "; ".join("%s at %s" % (e.message, "/".join(map(str, e.absolute_path)))
                            for e in errors)
            self.invalid.append((request.method, request.path, msg))
            return None, problem(400, "Bad Request", msg)
        return body, None

    def list_of(self, table, filter_key=None):
        async def handler(request):
            if table == "events" and self.fault:
                fault, self.fault = self.fault, None
                if fault == "json":
                    return web.Response(text="[{\"id\": \"ev", content_type="application/json")
                return problem(500, "Internal Server Error", "spoilt on purpose")
            items = list(getattr(self, table).values())
            want = request.query.get(filter_key) if filter_key else None
            if want is not None:
                items = [o for o in items if o.get(filter_key) == want]
            return self._page(request, items)
        return handler

    def _page(self, request, items):
        try:
            skip = int(request.query.get("skip", 0))
            limit = int(request.query.get("limit", 50))
        except ValueError:
            return problem(400, "Bad Request", "skip and limit are integers")
        if skip < 0 or not 0 <= limit <= 50:
            return problem(400, "Bad Request", "skip >= 0, 0 <= limit <= 50")
        return web.json_response(items[skip:skip + limit])

    def create(self, table, schema):
        async def handler(request):
            body, err = await self._body(request, schema)
            if err is not None:
                return err
            if table == "vens" and any(v["venName"] == body["venName"] for v in self.vens.values()):
                return problem(409, "Conflict", "venName taken")
            obj = self._new(table, body, schema.upper())
            return web.json_response(obj, status=201)
        return handler

    async def list_resources(self, request):
        vid = request.match_info["venID"]
        if vid not in self.vens:
            return problem(404, "Not Found", "no VEN " + vid)
        return self._page(request, [r for r in self.resources.values() if r["venID"] == vid])

    async def create_resource(self, request):
        vid = request.match_info["venID"]
        if vid not in self.vens:
            return problem(404, "Not Found", "no VEN " + vid)
        body, err = await self._body(request, "resource")
        if err is not None:
            return err
        return web.json_response(self._new("resources", dict(body, venID=vid), "RESOURCE"),
                                 status=201)

    async def update_report(self, request):
        rid = request.match_info["id"]
        if rid not in self.reports:
            return problem(404, "Not Found", "no report " + rid)
        body, err = await self._body(request, "report")
        if err is not None:
            return err
        old = self.reports[rid]
        self.reports[rid] = dict(body, id=rid, objectType="REPORT",
                                 createdDateTime=old["createdDateTime"],
                                 modificationDateTime=iso_ms(time.time()))
        self.report_puts += 1
        return web.json_response(self.reports[rid])

    async def delete_subscription(self, request):
        sub = self.subscriptions.pop(request.match_info["id"], None)
        if sub is None:
            return problem(404, "Not Found", "no such subscription")
        return web.json_response(sub)

    # ------------------------------------------------------------ the business side

    def add_program(self, name):
        return self._new("programs", {"programName": name}, "PROGRAM")

    async def add_event(self, event):
        errors = list(self._validators["event"].iter_errors(event))
        assert not errors, errors
        obj = self._new("events", event, "EVENT")
        await self.notify("EVENT", "POST", obj)
        return obj

    async def change_event(self, event_id, **changes):
        obj = dict(self.events[event_id], **changes)
        obj["modificationDateTime"] = iso_ms(time.time() + 0.002)
        self.events[event_id] = obj
        await self.notify("EVENT", "PUT", obj)
        return obj

    async def delete_event(self, event_id, notify=True):
        obj = self.events.pop(event_id)
        if notify:
            await self.notify("EVENT", "DELETE", obj)
        return obj

    def put_raw_event(self, obj):
        """Store an event as given, unchecked (malformed input for the VEN)."""
        self.events[obj["id"]] = obj
        return obj

    async def notify(self, otype, operation, obj):
        """POST a notification to every subscription of the object's program."""
        for sub in list(self.subscriptions.values()):
            if sub["programID"] != obj.get("programID"):
                continue
            for oo in sub["objectOperations"]:
                if otype in oo["objects"] and operation in oo["operations"]:
                    await self.deliver(oo["callbackUrl"], oo.get("bearerToken"),
                                       {"objectType": otype, "operation": operation,
                                        "object": obj})

    async def deliver(self, url, bearer, body, raw=None):
        headers = {"Content-Type": "application/json"}
        if bearer:
            headers["Authorization"] = "Bearer " + bearer
        data = raw if raw is not None else json.dumps(body)
        try:
            async with self._session.post(url, data=data, headers=headers) as r:
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            status = None
        self.deliveries.append((url, body.get("objectType") if body else None,
                                body.get("operation") if body else None, status))
        return status


def in_seconds(s):
    return (datetime.now(timezone.utc) + timedelta(seconds=s)).timestamp()
