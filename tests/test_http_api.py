"""The bridge's HTTP API over a real aiohttp server on 127.0.0.1: a Bridge with a
SQLite store in tmp_path and simulated devices attached through LocalTransport."""
import asyncio
import contextlib
import json

import aiohttp
import pytest
from aiohttp import web

from spot.cloud_bridge import config as C
from spot.cloud_bridge.http_api import make_app
from spot.cloud_bridge.local_transport import LocalTransport
from spot.cloud_bridge.openapi import document
from spot.cloud_bridge.service import Bridge
from spot.cloud_bridge.store import open_store
from spot.core.services import HEAT_PUMP, PRICE
from spot.ports.cpython.simulator import SimDevice

T0 = 1704067200
OPERATOR = "op-token"
WATCHER = "watch-token"
STRANGER = "stranger-token"
TOKENS = {OPERATOR: "operator", WATCHER: "watcher", STRANGER: "stranger"}


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


class Api:
    """A running bridge + HTTP server, and a client speaking to it."""

    def __init__(self, bridge, local, clock, base, session, token):
        self.bridge, self.local, self.clock = bridge, local, clock
        self.base, self.session, self.token = base, session, token
        self.devices = {}
        self.notifies = 0       # NOTIFY frames handed to the bridge
        self.runner = None

    async def call(self, method, path, body=None, token=None, raw=None, headers=None):
        h = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            h["Authorization"] = "Bearer " + tok
        if raw is not None:     # raw bytes are sent as JSON unless the test says otherwise
            h.setdefault("Content-Type", "application/json")
        kw = {"data": raw} if raw is not None else ({"json": body} if body is not None else {})
        async with self.session.request(method, self.base + path, headers=h, **kw) as r:
            text = await r.text()
            ctype = r.headers.get("Content-Type", "")
            data = json.loads(text) if ctype.startswith("application/json") else text
            return r.status, data

    async def get(self, path, **kw):
        return await self.call("GET", path, **kw)

    async def post(self, path, body=None, **kw):
        return await self.call("POST", path, body, **kw)

    async def attach(self, profile, device_id, seed=1):
        dev = SimDevice(profile, device_id, seed=seed, t0=T0)
        await self.local.connect(device_id, dev)
        self.devices[device_id] = dev
        return dev

    async def report(self, device_id, dt=60):
        """Advance the simulated device and hand its telemetry to the bridge."""
        self.clock.t += dt
        frames = self.devices[device_id].advance(self.clock.t)
        self.notifies += len(frames)
        await self.local.uplink(device_id, frames)

    async def finished(self, cid, timeout=5.0):
        """The command once it reached a final status."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            status, cmd = await self.get("/api/v1/commands/%d" % cid)
            assert status == 200, cmd
            if cmd["status"] not in ("queued", "claimed", "sent") or loop.time() > end:
                return cmd
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(tmp_path, tokens=None, devices=(("heat_pump", "hp-0001"),)):
    clock = Clock()
    config = C.load(None, data=str(tmp_path), tokens=dict(tokens or {}))
    store = await open_store(config.store_url)
    bridge = Bridge(config, store, clock=clock)
    await bridge.start()
    local = LocalTransport(bridge)
    runner = web.AppRunner(make_app(bridge))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    api = Api(bridge, local, clock, "http://127.0.0.1:%d" % port, session,
              OPERATOR if tokens else None)
    api.runner = runner
    try:
        for profile, device_id in devices:
            await api.attach(profile, device_id)
            await api.report(device_id, 0)
        yield api
    finally:
        await session.close()
        if api.runner is not None:
            await runner.cleanup()
        await bridge.stop()
        await store.close()


def scenario(tmp_path, body, **kw):
    async def main():
        async with running(tmp_path, **kw) as api:
            await body(api)
    asyncio.run(asyncio.wait_for(main(), 30))


WRITE_45 = {"service": "heat_pump", "op": "write", "values": {"flow_setpoint": 45}}


# ------------------------------------------------------------------ bridge, documents

def test_health_reports_store_clock_and_needs_no_token(tmp_path):
    async def body(api):
        status, h = await api.get("/api/v1/health", token="")
        assert status == 200
        assert h["status"] == "ok" and h["store"] == "ok" and h["auth"] is True
        assert h["time"] == api.clock.t and h["devices"] == 1 and h["online"] == 1
    scenario(tmp_path, body, tokens=TOKENS)


def test_store_outage_is_503_and_health_says_degraded(tmp_path):
    async def body(api):
        await api.bridge.sweep()        # nothing left to write on stop
        await api.bridge.store.close()
        status, h = await api.get("/api/v1/health")
        assert status == 503 and h["status"] == "degraded"
        assert h["store"] == "unavailable: StoreUnavailable"
        status, err = await api.get("/api/v1/devices")
        assert status == 503 and err == {"error": "store unavailable, try again later"}
    scenario(tmp_path, body)


def test_openapi_documents_every_route_of_the_app(tmp_path):
    async def body(api):
        status, doc = await api.get("/api/v1/openapi.json")
        assert status == 200 and doc == json.loads(json.dumps(document(tokens=False)))
        app = make_app(api.bridge)
        routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
                  if r.resource.canonical.startswith(("/api/", "/metrics")) and r.method != "HEAD"}
        documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
        assert routes == documented
    scenario(tmp_path, body)


def test_profiles_list_objects_with_units_ranges_and_access(tmp_path):
    async def body(api):
        status, profiles = await api.get("/api/v1/profiles")
        assert status == 200
        hp = next(p for p in profiles if p["name"] == "heat_pump")
        assert hp["id"] == HEAT_PUMP and hp["version"] == "1.0"
        sp = next(o for o in hp["objects"] if o["name"] == "flow_setpoint")
        assert (sp["unit"], sp["min"], sp["max"], sp["writable"], sp["access"]) == \
            ("Cel", 20, 70, True, "RW")
        sg = next(o for o in hp["objects"] if o["name"] == "sg_ready")
        assert sg["labels"]["2"] == "normal"
    scenario(tmp_path, body)


# ------------------------------------------------------------------ devices

def test_device_list_shows_profiles_presence_and_groups(tmp_path):
    async def body(api):
        status, devices = await api.get("/api/v1/devices")
        assert status == 200 and [d["id"] for d in devices] == ["hp-0001", "pv-0001"]
        hp = devices[0]
        assert hp["profile"] == "heat_pump" and hp["presence"] == "online"
        assert {"id": HEAT_PUMP, "name": "heat_pump", "version": "1.0"} in hp["profiles"]
        assert hp["groups"] == [] and hp["last_seen"] == api.clock.t
    scenario(tmp_path, body, devices=(("heat_pump", "hp-0001"), ("pv_inverter", "pv-0001")))


def test_device_list_filters_by_presence(tmp_path):
    async def body(api):
        api.local.asleep.add("hp-0001")
        api.bridge.config.offline_after = 60
        api.clock.t += 120
        await api.report("pv-0001", 0)
        await api.bridge.sweep()
        status, offline = await api.get("/api/v1/devices?presence=offline")
        assert status == 200 and [d["id"] for d in offline] == ["hp-0001"]
        status, online = await api.get("/api/v1/devices?presence=online")
        assert [d["id"] for d in online] == ["pv-0001"]
        status, err = await api.get("/api/v1/devices?presence=asleep")
        assert status == 400 and "presence must be one of online, sleeping, offline" in err["error"]
    scenario(tmp_path, body, devices=(("heat_pump", "hp-0001"), ("pv_inverter", "pv-0001")))


def test_device_detail_has_latest_values_in_si_units_with_names(tmp_path):
    async def body(api):
        status, d = await api.get("/api/v1/devices/hp-0001")
        assert status == 200 and d["role"] == "owner"
        flow = next(v for v in d["values"] if v["object"] == "flow_temp")
        assert flow["service"] == "heat_pump" and flow["service_id"] == HEAT_PUMP
        assert flow["object_id"] == 8 and flow["unit"] == "Cel"
        assert flow["value"] == pytest.approx(flow["wire"] / 10)   # scale -1
        assert flow["wire"] == api.devices["hp-0001"].node.wire(HEAT_PUMP, 8)
        assert flow["t"] == api.clock.t
    scenario(tmp_path, body)


def test_unknown_device_is_404_with_its_name(tmp_path):
    async def body(api):
        for path in ("/api/v1/devices/nope", "/api/v1/devices/nope/commands",
                     "/api/v1/devices/nope/plans"):
            status, err = await api.get(path)
            assert status == 404 and err == {"error": "unknown device 'nope'"}
        status, err = await api.post("/api/v1/devices/nope/commands", WRITE_45)
        assert status == 404
    scenario(tmp_path, body)


def test_history_by_names_or_numbers_in_si_units(tmp_path):
    async def body(api):
        for _ in range(4):
            await api.report("hp-0001")
        status, h = await api.get("/api/v1/devices/hp-0001/history?service=heat_pump"
                                  "&object=outdoor_temp")
        assert status == 200 and h["unit"] == "Cel" and h["object_id"] == 11
        assert [p["t"] for p in h["points"]] == [T0 + 60 * i for i in range(5)]
        status, same = await api.get("/api/v1/devices/hp-0001/history?service=16&object=11")
        assert same == h
        last = api.devices["hp-0001"].node.wire(HEAT_PUMP, 11) / 10
        assert h["points"][-1]["value"] == pytest.approx(last)
    scenario(tmp_path, body)


def test_history_window_and_limit(tmp_path):
    async def body(api):
        for _ in range(5):
            await api.report("hp-0001")
        q = "/api/v1/devices/hp-0001/history?service=heat_pump&object=flow_temp"
        _, newest = await api.get(q + "&limit=2")
        assert [p["t"] for p in newest["points"]] == [T0 + 240, T0 + 300]
        _, window = await api.get(q + "&from=%d&to=%d" % (T0 + 60, T0 + 180))
        assert [p["t"] for p in window["points"]] == [T0 + 60, T0 + 120]
    scenario(tmp_path, body)


@pytest.mark.parametrize("query, message", [
    ("object=flow_temp", "history needs ?service= and ?object="),
    ("service=heat_pump&object=nope", "unknown object \"nope\" in service heat_pump"),
    ("service=boiler&object=1", "unknown service \"boiler\""),
    ("service=heat_pump&object=flow_temp&limit=0", "limit must be from 1 to 10000"),
    ("service=heat_pump&object=flow_temp&from=yesterday", "from must be Unix seconds"),
])
def test_history_refuses_bad_queries_saying_why(tmp_path, query, message):
    async def body(api):
        status, err = await api.get("/api/v1/devices/hp-0001/history?" + query)
        assert status == 400 and message in err["error"]
    scenario(tmp_path, body)


def test_groups_are_replaced_and_filter_the_device_list(tmp_path):
    async def body(api):
        status, d = await api.call("PUT", "/api/v1/devices/hp-0001/groups",
                                   {"groups": ["north", "pilot"]})
        assert status == 200 and d["groups"] == ["north", "pilot"]
        _, north = await api.get("/api/v1/devices?group=north")
        assert [x["id"] for x in north] == ["hp-0001"]
        status, err = await api.call("PUT", "/api/v1/devices/hp-0001/groups", {"groups": "north"})
        assert status == 400 and "groups must be a list" in err["error"]
    scenario(tmp_path, body, devices=(("heat_pump", "hp-0001"), ("pv_inverter", "pv-0001")))


# ------------------------------------------------------------------ commands

def test_write_through_the_api_changes_the_simulated_device(tmp_path):
    async def body(api):
        status, cmd = await api.post("/api/v1/devices/hp-0001/commands", WRITE_45)
        assert status == 202 and cmd["status"] == "queued" and cmd["body"] == {"7": 450}
        assert cmd["summary"] == "write heat_pump flow_setpoint=45 Cel"
        done = await api.finished(cmd["id"])
        assert done["status"] == "done" and done["actor"] == "operator"
        assert api.devices["hp-0001"].node.get(HEAT_PUMP, 7) == 45
        await api.report("hp-0001")
        _, d = await api.get("/api/v1/devices/hp-0001")
        assert next(v for v in d["values"] if v["object"] == "flow_setpoint")["value"] == 45
    scenario(tmp_path, body)


@pytest.mark.parametrize("command, message", [
    ({"service": "heat_pump", "op": "write", "values": {"flow_setpoint": 95}},
     "heat_pump.flow_setpoint: 95 is out of range, expected a number from 20 to 70 Cel"),
    ({"service": "heat_pump", "op": "write", "values": {"flow_setpoint": "warm"}},
     "heat_pump.flow_setpoint: \"warm\" is the wrong type, expected a number"),
    ({"service": "heat_pump", "op": "write", "values": {"sg_ready": 2.5}},
     "heat_pump.sg_ready: 2.5 is the wrong type, expected an integer from 1 to 4"),
    ({"service": "heat_pump", "op": "write", "values": {"flow_temp": 40}},
     "heat_pump.flow_temp is read-only (access R): it cannot be written"),
    ({"service": "heat_pump", "op": "write", "values": {"boost": 1}},
     "unknown object \"boost\" in service heat_pump"),
    ({"service": "heat_pump", "op": "write", "values": {}}, "values must be a non-empty object"),
    ({"service": "boiler", "op": "write", "values": {"x": 1}}, "unknown service \"boiler\""),
    ({"service": "pv_inverter", "op": "write", "values": {"connect": False}},
     "device hp-0001 does not serve service pv_inverter"),
    ({"service": "heat_pump", "op": "toggle"}, "op must be one of read, write, invoke"),
    ({"service": "heat_pump", "op": "read", "values": {"sg_ready": 1}}, "unknown field \"values\""),
    ({"service": "heat_pump", "op": "invoke", "object": "pause"},
     "heat_pump.pause needs an argument"),
    ({"service": "heat_pump", "op": "invoke", "object": "sg_ready", "argument": 1},
     "heat_pump.sg_ready is not an action"),
    ({"service": "heat_pump", "op": "read", "timeout": -1}, "timeout must be above 0"),
    (["write"], "the request body must be a JSON object"),
])
def test_invalid_commands_are_refused_before_queueing(tmp_path, command, message):
    async def body(api):
        status, err = await api.post("/api/v1/devices/hp-0001/commands", command)
        assert status == 400 and message in err["error"], err
        _, cmds = await api.get("/api/v1/devices/hp-0001/commands")
        assert cmds == []
    scenario(tmp_path, body)


@pytest.mark.parametrize("raw, message", [
    (b"{", "the request body is not valid JSON"),
    (b'{"service": "heat_pump", "op": "write", "values": {"flow_setpoint": NaN}}',
     "NaN is not a JSON number"),
    (b"", "the request needs a JSON body"),
    (b"\xff\xfe", "the request body is not UTF-8"),
])
def test_malformed_bodies_are_400_and_change_nothing(tmp_path, raw, message):
    async def body(api):
        status, err = await api.post("/api/v1/devices/hp-0001/commands", raw=raw)
        assert status == 400 and message in err["error"]
        _, cmds = await api.get("/api/v1/devices/hp-0001/commands")
        assert cmds == []
    scenario(tmp_path, body)


def test_oversized_body_is_413_as_json(tmp_path):
    async def body(api):
        big = json.dumps({"service": "heat_pump", "op": "write",
                          "values": {"x%d" % i: i for i in range(40000)}}).encode()
        status, err = await api.post("/api/v1/devices/hp-0001/commands", raw=big)
        assert status == 413 and "error" in err
    scenario(tmp_path, body)


def test_read_command_returns_the_device_values(tmp_path):
    async def body(api):
        status, cmd = await api.post("/api/v1/devices/hp-0001/commands", {
            "service": 16, "op": "read", "objects": ["sg_ready", 7]})
        assert status == 202 and cmd["body"] == [6, 7]
        done = await api.finished(cmd["id"])
        node = api.devices["hp-0001"].node
        assert done["status"] == "done"
        assert done["result"] == {"6": node.wire(HEAT_PUMP, 6), "7": node.wire(HEAT_PUMP, 7)}
    scenario(tmp_path, body)


def test_invoke_and_subscribe_commands_complete(tmp_path):
    async def body(api):
        _, pause = await api.post("/api/v1/devices/hp-0001/commands", {
            "service": "heat_pump", "op": "invoke", "object": "pause", "argument": 600})
        assert pause["body"] == [18, 600] and (await api.finished(pause["id"]))["status"] == "done"
        _, sub = await api.post("/api/v1/devices/hp-0001/commands", {
            "service": "heat_pump", "op": "subscribe", "objects": ["flow_temp"],
            "attributes": {"pmin": 10, "step": 0.5}})
        assert sub["body"] == {"8": {"0": 10, "2": 5}}
        assert (await api.finished(sub["id"]))["status"] == "done"
    scenario(tmp_path, body)


def test_command_the_device_refuses_ends_in_error_with_a_reason(tmp_path):
    async def body(api):
        _, cmd = await api.post("/api/v1/devices/hp-0001/commands", {
            "service": "heat_pump", "op": "unsubscribe", "subscription": 77})
        done = await api.finished(cmd["id"])
        assert done["status"] == "error" and done["result"] == [2, "subscription"]
        assert done["error"] == "unknown-object: subscription"
    scenario(tmp_path, body)


def test_command_list_is_newest_first_and_filters_by_status(tmp_path):
    async def body(api):
        _, a = await api.post("/api/v1/devices/hp-0001/commands", WRITE_45)
        await api.finished(a["id"])
        api.local.asleep.add("hp-0001")
        api.bridge.presence["hp-0001"] = "offline"
        _, b = await api.post("/api/v1/devices/hp-0001/commands", WRITE_45)
        _, cmds = await api.get("/api/v1/devices/hp-0001/commands")
        assert [c["id"] for c in cmds] == [b["id"], a["id"]]
        _, queued = await api.get("/api/v1/devices/hp-0001/commands?status=queued")
        assert [c["id"] for c in queued] == [b["id"]]
        status, err = await api.get("/api/v1/commands/999")
        assert status == 404 and err["error"] == "unknown command 999"
        status, err = await api.get("/api/v1/commands/abc")
        assert status == 400
    scenario(tmp_path, body)


def test_group_command_fans_out_and_counts_refused_devices(tmp_path):
    async def body(api):
        for d in ("hp-0001", "hp-0002"):
            await api.call("PUT", "/api/v1/devices/%s/groups" % d, {"groups": ["north"]})
        await api.post("/api/v1/devices/hp-0001/pairings",
                       {"controller": "watcher", "role": "aggregator"})
        status, out = await api.post("/api/v1/groups/north/commands", {
            "service": "heat_pump", "op": "write", "values": {"sg_ready": 3}}, token=WATCHER)
        assert status == 202 and (out["queued"], out["refused"]) == (1, 1)
        assert [c["device"] for c in out["commands"]] == ["hp-0001"]
        await api.finished(out["commands"][0]["id"])
        assert api.devices["hp-0001"].node.get(HEAT_PUMP, 6) == 3
        status, err = await api.post("/api/v1/groups/south/commands", WRITE_45)
        assert status == 404 and err["error"] == "no device in group 'south'"
    scenario(tmp_path, body, tokens=TOKENS,
             devices=(("heat_pump", "hp-0001"), ("heat_pump", "hp-0002")))


def test_group_command_with_a_bad_body_is_refused_400_even_for_an_empty_group(tmp_path):
    async def body(api):
        status, err = await api.post("/api/v1/groups/south/commands",
                                     {"service": "heat_pump", "op": "fly"})
        assert status == 400 and err["error"].startswith("op must be one of"), err
        _, cmds = await api.get("/api/v1/devices/hp-0001/commands")
        assert cmds == []
    scenario(tmp_path, body)


# ------------------------------------------------------------------ plans

def test_plan_with_si_values_is_pushed_accepted_and_listed(tmp_path):
    async def body(api):
        start = api.clock.t
        status, out = await api.post("/api/v1/devices/hp-0001/plans", {
            "id": 7, "start": start, "expiry": start + 3600, "primacy": 20,
            "entries": {"heat_pump": {"flow_setpoint": [start, 900, [40, 42.5, None]],
                                      "sg_ready": 3}}})
        assert status == 202 and out["plan"]["status"] == "queued"
        assert out["command"]["body"][1][4] == {"16": {"7": [start, 900, [400, 425, None]],
                                                        "6": 3}}
        assert (await api.finished(out["command"]["id"]))["status"] == "done"
        assert api.devices["hp-0001"].node.plans.find(7) is not None
        _, plans = await api.get("/api/v1/devices/hp-0001/plans")
        assert [(p["id"], p["status"], p["primacy"]) for p in plans] == [(7, "accepted", 20)]
        assert plans[0]["entries"]["heat_pump"]["flow_setpoint"] == [start, 900, [40, 42.5, None]]
    scenario(tmp_path, body)


def test_plan_defaults_to_now_and_next_id_with_a_duration(tmp_path):
    async def body(api):
        _, first = await api.post("/api/v1/devices/hp-0001/plans", {
            "duration": 600, "entries": {"heat_pump": {"sg_ready": 1}}})
        _, second = await api.post("/api/v1/devices/hp-0001/plans", {
            "duration": 600, "entries": {"heat_pump": {"sg_ready": 4}}})
        assert (first["plan"]["id"], second["plan"]["id"]) == (1, 2)
        assert first["plan"]["start"] == api.clock.t
        assert first["plan"]["expiry"] == api.clock.t + 600
    scenario(tmp_path, body)


def test_plan_is_cancelled_by_delete(tmp_path):
    async def body(api):
        _, out = await api.post("/api/v1/devices/hp-0001/plans", {
            "id": 3, "duration": 600, "entries": {"heat_pump": {"sg_ready": 1}}})
        await api.finished(out["command"]["id"])
        status, cmd = await api.call("DELETE", "/api/v1/devices/hp-0001/plans/3")
        assert status == 202 and cmd["summary"] == "cancel plan 3"
        assert (await api.finished(cmd["id"]))["status"] == "done"
        assert api.devices["hp-0001"].node.plans.find(3) is None
        _, live = await api.get("/api/v1/devices/hp-0001/plans")
        assert live == []
        _, every = await api.get("/api/v1/devices/hp-0001/plans?all=true")
        assert [p["status"] for p in every] == ["cancelled"]
        status, err = await api.call("DELETE", "/api/v1/devices/hp-0001/plans/4")
        assert status == 404 and err["error"] == "device hp-0001 has no plan 4"
    scenario(tmp_path, body)


@pytest.mark.parametrize("plan, message", [
    ({"duration": 600, "entries": {"heat_pump": {"flow_temp": 30}}},
     "heat_pump.flow_temp is read-only"),
    ({"duration": 600, "entries": {"heat_pump": {"flow_setpoint": 10}}},
     "heat_pump.flow_setpoint: 10 is out of range"),
    ({"duration": 600, "entries": {"heat_pump": {"flow_setpoint": [0, 900, [40, 99]]}}},
     "heat_pump.flow_setpoint slot: 99 is out of range"),
    ({"duration": 600, "entries": {"pv_inverter": {"connect": False}}},
     "the device does not serve service pv_inverter"),
    ({"entries": {"heat_pump": {"sg_ready": 1}}}, "a plan needs expiry"),
    ({"start": T0 - 7200, "expiry": T0 - 3600, "entries": {"heat_pump": {"sg_ready": 1}}},
     "the plan expired already"),
    ({"expiry": T0 + 3 * 86400, "entries": {"heat_pump": {"sg_ready": 1}}},
     "more than 172800 s (48 h) ahead"),
    ({"duration": 600, "primacy": 300, "entries": {"heat_pump": {"sg_ready": 1}}},
     "primacy must be at most 255"),
    ({"duration": 600, "entries": {}}, "entries must be a non-empty object"),
])
def test_invalid_plans_are_refused_before_queueing(tmp_path, plan, message):
    async def body(api):
        status, err = await api.post("/api/v1/devices/hp-0001/plans", plan)
        assert status == 400 and message in err["error"], err
        _, every = await api.get("/api/v1/devices/hp-0001/plans?all=true")
        assert every == []
    scenario(tmp_path, body)


# ------------------------------------------------------------------ pairings and access

def test_pairing_is_added_listed_and_removed(tmp_path):
    async def body(api):
        status, p = await api.post("/api/v1/devices/hp-0001/pairings",
                                   {"controller": "agg-1", "role": "aggregator",
                                    "credential": "kid-17"})
        assert status == 201 and (p["role"], p["credential"]) == ("aggregator", "kid-17")
        _, roster = await api.get("/api/v1/devices/hp-0001/pairings")
        assert [(x["controller"], x["role"]) for x in roster] == [
            ("agg-1", "aggregator"), ("operator", "owner")]
        status, _ = await api.call("DELETE", "/api/v1/devices/hp-0001/pairings/agg-1")
        assert status == 204
        status, err = await api.call("DELETE", "/api/v1/devices/hp-0001/pairings/agg-1")
        assert status == 404 and err["error"] == "agg-1 is not paired with hp-0001"
        await api.post("/api/v1/devices/hp-0001/pairings",
                       {"controller": "agg-2", "role": "monitor"})
        status, _ = await api.call("DELETE", "/api/v1/devices/hp-0001/pairings?controller=agg-2")
        assert status == 204
        _, roster = await api.get("/api/v1/devices/hp-0001/pairings")
        assert [x["controller"] for x in roster] == ["operator"]
        status, err = await api.post("/api/v1/devices/hp-0001/pairings",
                                     {"controller": "x", "role": "emperor"})
        assert status == 400 and "role must be one of" in err["error"]
    scenario(tmp_path, body)


def test_missing_or_unknown_token_is_401(tmp_path):
    async def body(api):
        for token in ("", "guess"):
            status, err = await api.get("/api/v1/devices", token=token)
            assert status == 401 and "bearer token" in err["error"]
    scenario(tmp_path, body, tokens=TOKENS)


def test_monitor_token_may_read_but_writing_is_403_and_audited(tmp_path):
    async def body(api):
        await api.post("/api/v1/devices/hp-0001/pairings", {"controller": "watcher",
                                                           "role": "monitor"})
        status, err = await api.post("/api/v1/devices/hp-0001/commands", WRITE_45, token=WATCHER)
        assert status == 403 and "watcher may not WRITE service 16 of hp-0001" in err["error"]
        status, _ = await api.post("/api/v1/devices/hp-0001/plans", {
            "duration": 600, "entries": {"heat_pump": {"sg_ready": 1}}}, token=WATCHER)
        assert status == 403
        status, cmd = await api.post("/api/v1/devices/hp-0001/commands",
                                     {"service": "heat_pump", "op": "read"}, token=WATCHER)
        assert status == 202 and cmd["actor"] == "watcher"
        status, _ = await api.get("/api/v1/devices/hp-0001", token=WATCHER)
        assert status == 200
        for path in ("/api/v1/devices/hp-0001/pairings", "/api/v1/audit"):
            status, _ = await api.get(path, token=WATCHER)
            assert status == 403
        _, audit = await api.get("/api/v1/audit?target=hp-0001")
        assert [a["actor"] for a in audit if a["action"] == "refused"] == ["watcher", "watcher"]
        assert api.devices["hp-0001"].node.get(HEAT_PUMP, 7) != 45
    scenario(tmp_path, body, tokens=TOKENS)


def test_unpaired_actor_sees_no_device_and_is_refused(tmp_path):
    async def body(api):
        status, devices = await api.get("/api/v1/devices", token=STRANGER)
        assert status == 200 and devices == []
        status, err = await api.get("/api/v1/devices/hp-0001", token=STRANGER)
        assert status == 404 and err["error"] == "unknown device 'hp-0001'"
    scenario(tmp_path, body, tokens=TOKENS)


# ------------------------------------------------------------------ signals

def test_price_signal_reaches_consumers_only(tmp_path):
    async def body(api):
        t = api.clock.t
        status, out = await api.post("/api/v1/signals/price", {
            "values": {"price_forecast": [t, 900, [80.5, 91.0, 120.25]], "currency": "EUR"}})
        assert status == 202 and out["consumers"] == ["em-0001"] and out["t"] == t
        em = api.devices["em-0001"]
        assert em.node.signals[PRICE][1][1] == [t, 900, [805, 910, 1202]]
        assert PRICE not in api.devices["hp-0001"].node.signals
    scenario(tmp_path, body, devices=(("heat_pump", "hp-0001"), ("energy_manager", "em-0001")))


def test_signals_are_refused_for_bad_services_values_and_actors(tmp_path):
    async def body(api):
        status, err = await api.post("/api/v1/signals/heat_pump", {"values": {"sg_ready": 1}})
        assert status == 400 and "heat_pump is not an informational service" in err["error"]
        status, err = await api.post("/api/v1/signals/price", {"values": {"price_now": 1e6}})
        assert status == 400 and "price.price_now: 1000000.0 is out of range" in err["error"]
        status, err = await api.post("/api/v1/signals/price", {"values": {"price_now": 1}},
                                     token=WATCHER)
        assert status == 403 and err["error"] == "watcher may not broadcast"
    scenario(tmp_path, body, tokens=TOKENS)


# ------------------------------------------------------------------ live stream, metrics

async def next_event(stream, kind, timeout=5.0):
    """The data of the next SSE event of this kind."""
    async def read():
        current = None
        while True:
            line = (await stream.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                current = line[7:]
            elif line.startswith("data: ") and current == kind:
                return json.loads(line[6:])
    return await asyncio.wait_for(read(), timeout)


def test_event_stream_delivers_telemetry_with_si_values(tmp_path):
    async def body(api):
        async with api.session.get(api.base + "/api/v1/events?access_token=" + OPERATOR,
                                   timeout=aiohttp.ClientTimeout(total=None)) as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            await api.report("hp-0001")
            ev = await next_event(stream, "telemetry")
        assert ev["device"] == "hp-0001" and ev["service_name"] == "heat_pump"
        assert ev["t"] == api.clock.t
        wire = api.devices["hp-0001"].node.wire(HEAT_PUMP, 11)
        assert ev["values"]["11"] == wire and ev["si"]["outdoor_temp"] == pytest.approx(wire / 10)
    scenario(tmp_path, body, tokens=TOKENS)


def test_event_stream_follows_a_command_to_done(tmp_path):
    async def body(api):
        async with api.session.get(api.base + "/api/v1/events?types=command&device=hp-0001",
                                   timeout=aiohttp.ClientTimeout(total=None)) as stream:
            _, cmd = await api.post("/api/v1/devices/hp-0001/commands", WRITE_45)
            seen = []
            while not seen or seen[-1] != "done":
                ev = await next_event(stream, "command")
                assert ev["id"] == cmd["id"]
                seen.append(ev["status"])
        assert seen == ["queued", "sent", "done"]
    scenario(tmp_path, body)


def test_event_stream_ends_when_the_server_stops(tmp_path):
    async def body(api):
        async with api.session.get(api.base + "/api/v1/events",
                                   timeout=aiohttp.ClientTimeout(total=None)) as stream:
            reader = asyncio.ensure_future(stream.content.read())
            await asyncio.sleep(0.05)
            runner, api.runner = api.runner, None
            await asyncio.wait_for(runner.cleanup(), 5)   # not held up by the open stream
            assert (await asyncio.wait_for(reader, 5)).startswith(b"retry: 2000")
    scenario(tmp_path, body)


def test_metrics_expose_frame_and_command_counters(tmp_path):
    async def body(api):
        _, cmd = await api.post("/api/v1/devices/hp-0001/commands", WRITE_45)
        await api.finished(cmd["id"])
        status, text = await api.get("/metrics", token="")
        assert status == 200
        assert 'spot_bridge_frames_received_total{op="NOTIFY"} %d' % api.notifies in text
        assert 'spot_bridge_commands_total{status="done"} 1' in text
        assert "spot_bridge_devices 1" in text and "spot_bridge_devices_online 1" in text
    scenario(tmp_path, body, tokens=TOKENS)


def test_audit_lists_pairings_and_registrations_newest_first(tmp_path):
    async def body(api):
        await api.post("/api/v1/devices/hp-0001/pairings", {"controller": "agg", "role": "monitor"})
        status, audit = await api.get("/api/v1/audit?limit=2")
        assert status == 200
        assert [(a["actor"], a["action"], a["target"]) for a in audit] == [
            ("operator", "pair", "hp-0001"), ("bridge", "register", "hp-0001")]
        assert audit[0]["detail"] == {"controller": "agg", "role": "monitor"}
    scenario(tmp_path, body)


def test_dashboard_files_are_served_by_the_bridge(tmp_path):
    async def body(api):
        for path, ctype, text in (("/", "text/html", "<script src=\"/app.js\""),
                                  ("/device/hp-0001", "text/html", "<script src=\"/app.js\""),
                                  ("/app.js", "text/javascript", "EventSource"),
                                  ("/style.css", "text/css", "presence")):
            async with api.session.get(api.base + path) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith(ctype)
                assert text in await r.text()
    scenario(tmp_path, body)
