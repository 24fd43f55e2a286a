"""Attacks on the bridge's HTTP side, replayed against a real bridge over a real
socket on 127.0.0.1 (the Api harness of tests/test_http_api.py): cross-site
requests and DNS rebinding, role escalation through pairings, bad numbers and
lone surrogates in every field of every request body, group answers naming
other actors' devices, missing browser security headers, path traversal,
oversized and slow requests. Each test is bounded in count and time.

The browser half (a cross-origin page in a real Chromium) is at the end; the
threat model these tests back is docs/security.md.
"""
import asyncio
import json
import subprocess
import sys

import pytest
from aiohttp import web

from spot.cloud_bridge import config as C
from test_http_api import TOKENS, OPERATOR, WATCHER, STRANGER, WRITE_45, running, scenario

COMMANDS = "/api/v1/devices/hp-0001/commands"


async def commands(api, device="hp-0001"):
    status, cmds = await api.get("/api/v1/devices/%s/commands" % device, token=OPERATOR
                                 if api.token else None)
    assert status == 200, cmds
    return cmds


async def raw_request(api, data, timeout=5.0):
    """Send raw bytes on a fresh TCP connection to the bridge; what it answers, up to
    the end of the connection or the timeout."""
    host, port = api.base[len("http://"):].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), timeout)
    finally:
        writer.close()


# ------------------------------------------------------------------ CSRF, DNS rebinding (#2)

@pytest.mark.parametrize("ctype", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", None])
def test_state_changing_request_without_json_content_type_is_415_and_not_queued(tmp_path,
                                                                                 ctype):
    """What a cross-origin page can send without a preflight is refused (issue #13, 2)."""
    async def body(api):
        headers = {"Content-Type": ctype} if ctype else {"Content-Type": ""}
        status, err = await api.post(COMMANDS, raw=json.dumps(WRITE_45).encode(),
                                     headers=headers)
        assert status == 415 and "application/json" in err["error"], (status, err)
        assert await commands(api) == []
    scenario(tmp_path, body)


def test_json_content_type_with_charset_is_accepted(tmp_path):
    async def body(api):
        status, cmd = await api.post(COMMANDS, raw=json.dumps(WRITE_45).encode(),
                                     headers={"Content-Type": "Application/JSON; charset=utf-8"})
        assert status == 202, cmd
    scenario(tmp_path, body)


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1",
                                    "http://127.0.0.1.evil.example"])
def test_request_from_another_origin_is_403_and_not_queued(tmp_path, origin):
    async def body(api):
        status, err = await api.post(COMMANDS, WRITE_45, headers={"Origin": origin})
        assert status == 403 and "origin" in err["error"], (status, err)
        status, err = await api.get("/api/v1/devices", headers={"Origin": origin})
        assert status == 403, (status, err)
        assert await commands(api) == []
    scenario(tmp_path, body)


def test_request_from_the_bridge_own_origin_is_accepted(tmp_path):
    async def body(api):
        port = api.base.rsplit(":", 1)[1]
        for origin in (api.base, "http://localhost:%s" % port):
            status, cmd = await api.post(COMMANDS, WRITE_45, headers={"Origin": origin})
            assert status == 202, (origin, cmd)
    scenario(tmp_path, body)


@pytest.mark.parametrize("path", ["/api/v1/devices", "/", "/app.js", "/metrics",
                                  "/api/v1/health"])
def test_foreign_host_header_is_403_dns_rebinding(tmp_path, path):
    """A page of rebind.example whose name now resolves to 127.0.0.1 reads nothing."""
    async def body(api):
        port = api.base.rsplit(":", 1)[1]
        for host in ("rebind.example:%s" % port, "rebind.example", "127.0.0.1.nip.io:%s" % port,
                     "127.0.0.1:1"):
            status, err = await api.get(path, headers={"Host": host})
            assert status == 403 and "host" in err["error"], (host, status, err)
    scenario(tmp_path, body)


def test_loopback_names_of_the_listening_socket_are_accepted_as_host(tmp_path):
    async def body(api):
        port = api.base.rsplit(":", 1)[1]
        for host in ("127.0.0.1:%s" % port, "localhost:%s" % port, "LOCALHOST:%s" % port):
            status, devices = await api.get("/api/v1/devices", headers={"Host": host})
            assert status == 200, (host, devices)
    scenario(tmp_path, body)


def test_configured_host_names_are_accepted(tmp_path):
    async def main():
        async with running(tmp_path) as api:
            api.bridge.config.hosts = ["bridge.example.net", "proxy.example.net:443"]
            for host in ("bridge.example.net", "bridge.example.net:8443",
                         "proxy.example.net:443"):
                status, _ = await api.get("/api/v1/devices", headers={
                    "Host": host, "Origin": "https://" + host})
                assert status == 200, host
            status, _ = await api.get("/api/v1/devices", headers={"Host": "proxy.example.net"})
            assert status == 403
    asyncio.run(asyncio.wait_for(main(), 30))


class FakeSocketRequest:
    """Test double: just the headers and the socket address http_guard looks at."""

    def __init__(self, sockname, host):
        self.headers = {"Host": host}
        self.transport = self
        self.sockname = sockname

    def get_extra_info(self, name):
        return self.sockname if name == "sockname" else None


def test_ipv4_clients_of_a_dual_stack_socket_may_name_its_ipv4_address():
    from spot.cloud_bridge import http_guard
    http_guard.check_host_and_origin(
        FakeSocketRequest(("::ffff:192.0.2.10", 8080, 0, 0), "192.0.2.10:8080"), [])
    with pytest.raises(Exception) as e:
        http_guard.check_host_and_origin(
            FakeSocketRequest(("::ffff:192.0.2.10", 8080, 0, 0), "evil.example:8080"), [])
    assert e.value.status == 403


@pytest.mark.parametrize("hosts", ["bridge.example.net", [""], [8080], ["a b"],
                                   ["bridge.example.net:http"]])
def test_configured_hosts_must_be_a_list_of_names(tmp_path, hosts):
    with pytest.raises(ValueError) as e:
        C.load(None, data=str(tmp_path), hosts=hosts)
    assert "hosts" in str(e.value)


def test_refused_requests_are_counted_in_metrics(tmp_path):
    async def body(api):
        await api.post(COMMANDS, raw=b"{}", headers={"Content-Type": "text/plain"})
        await api.get("/api/v1/devices", headers={"Host": "rebind.example"})
        await api.get("/api/v1/devices", headers={"Origin": "http://evil.example"})
        status, text = await api.get("/metrics")
        assert 'spot_bridge_http_refused_total{status="415"} 1' in text, text
        assert 'spot_bridge_http_refused_total{status="403"} 2' in text
    scenario(tmp_path, body)


@pytest.mark.parametrize("http", ["0.0.0.0:8080", "[::]:8080", "192.0.2.10:8080",
                                  "bridge.example.net:8080"])
def test_bridge_listening_beyond_loopback_needs_tokens(tmp_path, http):
    with pytest.raises(ValueError) as e:
        C.load(None, data=str(tmp_path), http=http)
    assert "token" in str(e.value) and "\n" not in str(e.value)
    C.load(None, data=str(tmp_path), http=http, tokens={"s3cret": "operator"})


@pytest.mark.parametrize("http", ["127.0.0.1:8080", "127.0.0.9:0", "localhost:8080",
                                  "[::1]:8080"])
def test_bridge_on_loopback_needs_no_tokens(tmp_path, http):
    C.load(None, data=str(tmp_path), http=http)


def test_spot_bridge_beyond_loopback_without_tokens_exits_with_one_line(tmp_path):
    """192.0.2.1 (TEST-NET) is not an address of this machine: should the check ever
    go, the bridge fails to bind instead of listening beyond loopback."""
    out = subprocess.run(
        [sys.executable, "-m", "spot.cli", "bridge", "--data", str(tmp_path),
         "--http", "192.0.2.1:0", "--coap", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "token" in lines[0], out.stderr


# ------------------------------------------------------------------ role escalation (#3)

INSTALLER = "inst-token"
ROLES = dict(TOKENS, **{INSTALLER: "installer"})


async def pair_on(api, device, controller, role, token=None):
    return await api.post("/api/v1/devices/%s/pairings" % device,
                          {"controller": controller, "role": role}, token=token)


async def pair(api, controller, role, token=None):
    return await api.post("/api/v1/devices/hp-0001/pairings",
                          {"controller": controller, "role": role}, token=token)


async def refused_audit(api):
    _, audit = await api.get("/api/v1/audit?target=hp-0001", token=OPERATOR)
    return [(a["actor"], a["detail"].get("action")) for a in audit if a["action"] == "refused"]


def test_installer_cannot_make_itself_or_anyone_owner(tmp_path):
    async def body(api):
        assert (await pair(api, "installer", "installer"))[0] == 201
        for controller in ("installer", "friend"):
            status, err = await pair(api, controller, "owner", token=INSTALLER)
            assert status == 403 and "above" in err["error"], err
        _, roster = await api.get("/api/v1/devices/hp-0001/pairings")
        assert sorted((p["controller"], p["role"]) for p in roster) == [
            ("installer", "installer"), ("operator", "owner")]
        assert await refused_audit(api) == [("installer", "pair"), ("installer", "pair")]
    scenario(tmp_path, body, tokens=ROLES)


def test_installer_may_grant_its_own_role_and_below(tmp_path):
    async def body(api):
        await pair(api, "installer", "installer")
        for controller, role in (("helper", "installer"), ("agg", "aggregator"),
                                 ("mon", "monitor")):
            assert (await pair(api, controller, role, token=INSTALLER))[0] == 201
    scenario(tmp_path, body, tokens=ROLES)


def test_installer_cannot_remove_or_demote_an_owner(tmp_path):
    async def body(api):
        await pair(api, "installer", "installer")
        status, err = await api.call("DELETE", "/api/v1/devices/hp-0001/pairings/operator",
                                     token=INSTALLER)
        assert status == 403, err
        status, err = await pair(api, "operator", "monitor", token=INSTALLER)
        assert status == 403, err
        _, roster = await api.get("/api/v1/devices/hp-0001/pairings")
        assert ("operator", "owner") in [(p["controller"], p["role"]) for p in roster]
        status, _ = await api.post(COMMANDS, WRITE_45)
        assert status == 202
        assert await refused_audit(api) == [("installer", "pair"), ("installer", "unpair")]
    scenario(tmp_path, body, tokens=ROLES)


def test_last_owner_cannot_be_removed_or_demoted(tmp_path):
    async def body(api):
        status, err = await api.call("DELETE", "/api/v1/devices/hp-0001/pairings/operator")
        assert status == 409 and "last owner" in err["error"], err
        status, err = await pair(api, "operator", "installer")
        assert status == 409 and "last owner" in err["error"], err
        assert await refused_audit(api) == [("operator", "pair"), ("operator", "unpair")]
        assert (await pair(api, "second", "owner"))[0] == 201     # with a second owner,
        status, _ = await api.call("DELETE", "/api/v1/devices/hp-0001/pairings/second")
        assert status == 204                                        # either may go
    scenario(tmp_path, body, tokens=ROLES)


def test_monitor_managing_pairings_is_403_and_audited(tmp_path):
    async def body(api):
        await pair(api, "watcher", "monitor")
        status, _ = await pair(api, "watcher", "owner", token=WATCHER)
        assert status == 403
        status, _ = await api.call("DELETE", "/api/v1/devices/hp-0001/pairings/operator",
                                   token=WATCHER)
        assert status == 403
        assert await refused_audit(api) == [("watcher", "unpair"), ("watcher", "pair")]
    scenario(tmp_path, body, tokens=ROLES)


# ------------------------------------------------------------------ bad input (#4)

# one valid body per request shape, every field present: each field is then replaced
BODIES = [
    ("PUT", "/api/v1/devices/hp-0001/groups", {"groups": ["north", "south"]}),
    ("POST", COMMANDS, {"service": "heat_pump", "op": "write", "values": {"flow_setpoint": 45},
                        "expires_in": 600, "timeout": 30}),
    ("POST", COMMANDS, {"service": "heat_pump", "op": "read", "objects": ["flow_temp", 7]}),
    ("POST", COMMANDS, {"service": "heat_pump", "op": "subscribe", "objects": ["flow_temp"],
                        "attributes": {"pmin": 10, "pmax": 60, "step": 0.5, "gt": 50,
                                       "lt": 20}}),
    ("POST", COMMANDS, {"service": "heat_pump", "op": "unsubscribe", "subscription": 1}),
    ("POST", COMMANDS, {"service": "heat_pump", "op": "invoke", "object": "pause",
                        "argument": 1800}),
    ("POST", "/api/v1/groups/north/commands", {"service": 16, "op": "write",
                                               "values": {"sg_ready": 3}, "timeout": 10}),
    ("POST", "/api/v1/devices/hp-0001/plans", {
        "id": 7, "start": 1704067200, "duration": 3600, "primacy": 10, "expires_in": 60,
        "entries": {"heat_pump": {"sg_ready": [1704067200, 900, [3, None, 2]],
                                  "flow_setpoint": 45}}}),
    ("POST", "/api/v1/devices/hp-0001/plans", {"expiry": 1704070800,
                                               "entries": {"heat_pump": {"sg_ready": 1}}}),
    ("POST", "/api/v1/devices/hp-0001/pairings", {"controller": "agg-1", "role": "aggregator",
                                                  "credential": "kid-1"}),
    ("POST", "/api/v1/signals/price", {"values": {"price_now": 95.5, "currency": "EUR"},
                                       "t": 1704067200}),
]
HUGE_INT = "1" + "0" * 400
BAD_NUMBERS = ("1e400", "-1e400", HUGE_INT, "-" + HUGE_INT, "1e308", "-1e308")
SURROGATE = '"\\ud800"'


def _leaves(v, path=()):
    """Paths to every leaf and every key of a JSON value."""
    if type(v) is dict:
        for k, x in v.items():
            yield path + (("key", k),)
            yield from _leaves(x, path + (k,))
    elif type(v) is list:
        for i, x in enumerate(v):
            yield from _leaves(x, path + (i,))
    else:
        yield path


def _replaced(body, path, raw):
    """The JSON text of body with the leaf (or key) at path replaced by raw JSON text."""
    marker = "\u0001MARK\u0001"
    body = json.loads(json.dumps(body))
    *parents, last = path
    holder = body
    for p in parents:
        holder = holder[p]
    if type(last) is tuple:  # a key
        holder[marker] = holder.pop(last[1])
    else:
        holder[last] = marker
    return json.dumps(body).replace(json.dumps(marker), raw).encode()


def _mutations():
    for method, path, body in BODIES:
        for leaf in _leaves(body):
            yield method, path, _replaced(body, leaf, SURROGATE)
            if type(leaf[-1]) is not tuple:
                for raw in BAD_NUMBERS:
                    yield method, path, _replaced(body, leaf, raw)


def test_lone_surrogates_and_huge_numbers_in_every_field_are_400_json(tmp_path):
    """Every field of every request shape, given a lone surrogate or a number that
    does not fit a double (1e400, 10**400) or overflows once scaled (1e308): 400 as
    JSON whose message does not echo the input, nothing queued (issue #13, 4)."""
    async def body(api):
        for method, path, raw in [(m, p, json.dumps(b).encode()) for m, p, b in BODIES]:
            status, out = await api.call(method, path, raw=raw)
            assert 200 <= status < 300, (path, raw, out)     # the unmutated bodies pass
        before = len(await commands(api))
        sent = 0
        for method, path, raw in _mutations():
            status, out = await api.call(method, path, raw=raw)
            sent += 1
            assert status == 400 and type(out) is dict, (path, raw[:200], status, out)
            assert "\ud800" not in out["error"] and HUGE_INT not in out["error"], out
        assert sent > 300
        assert len(await commands(api)) == before
    scenario(tmp_path, body, devices=(("heat_pump", "hp-0001"),))


@pytest.mark.parametrize("depth", [40, 300, 500, 900, 990, 20000])
def test_deeply_nested_bodies_are_400_json(tmp_path, depth):
    """Nesting from a little past what any request needs to past the parser's own
    limit: 400, never a RecursionError turned 500."""
    async def body(api):
        nested = "[" * depth + "]" * depth
        for raw in (nested, '{"service": "heat_pump", "op": "write", "values": '
                            '{"flow_setpoint": %s}}' % nested, '{"groups": %s}' % nested):
            status, out = await api.post(COMMANDS, raw=raw.encode())
            assert status == 400 and type(out) is dict, (depth, status, out)
        assert await commands(api) == []
    scenario(tmp_path, body)


@pytest.mark.parametrize("path", [
    "/api/v1/devices/%ED%A0%80",
    "/api/v1/devices/hp-0001/history?service=%ED%A0%80&object=flow_temp",
    "/api/v1/devices/hp-0001/history?service=heat_pump&object=flow_temp&from=1e400",
    "/api/v1/devices/hp-0001/history?service=heat_pump&object=flow_temp&limit=" + HUGE_INT,
    "/api/v1/commands/" + HUGE_INT, "/api/v1/devices/hp-0001/plans/" + HUGE_INT,
    "/api/v1/devices/hp-0001/pairings/%ED%A0%80"])
def test_bad_bytes_and_numbers_in_paths_and_queries_are_4xx_json(tmp_path, path):
    async def body(api):
        method = "DELETE" if "/pairings/" in path else "GET"
        status, out = await api.call(method, path)
        assert 400 <= status < 500 and type(out) is dict, (status, out)
        assert "\ud800" not in out["error"] and HUGE_INT not in out["error"]
    scenario(tmp_path, body)


# ------------------------------------------------------------------ group answers (#7)

def test_group_command_counts_refused_devices_without_naming_them(tmp_path):
    async def body(api):
        for d in ("hp-0001", "hp-0002"):
            await api.call("PUT", "/api/v1/devices/%s/groups" % d, {"groups": ["north"]})
        await api.post("/api/v1/devices/hp-0001/pairings",
                       {"controller": "watcher", "role": "aggregator"})
        status, out = await api.post("/api/v1/groups/north/commands", WRITE_45, token=WATCHER)
        assert status == 202 and out["refused"] == 1 and out["queued"] == 1, out
        assert "hp-0002" not in json.dumps(out)
        status, out = await api.post("/api/v1/groups/north/commands", WRITE_45, token=STRANGER)
        assert status == 202 and (out["queued"], out["refused"], out["commands"]) == (0, 2, [])
    scenario(tmp_path, body, tokens=TOKENS,
             devices=(("heat_pump", "hp-0001"), ("heat_pump", "hp-0002")))


@pytest.mark.parametrize("method, suffix, body", [
    ("GET", "", None), ("GET", "/commands", None), ("GET", "/plans", None),
    ("POST", "/commands", WRITE_45), ("GET", "/history?service=16&object=7", None),
    ("POST", "/pairings", {"controller": "stranger", "role": "owner"}),
    ("DELETE", "/pairings/operator", None), ("PUT", "/groups", {"groups": ["x"]})])
def test_an_unpaired_actor_cannot_tell_a_device_from_no_device(tmp_path, method, suffix, body):
    async def run(api):
        answers = []
        for device in ("hp-0001", "hp-9999"):
            status, out = await api.call(method, "/api/v1/devices/%s%s" % (device, suffix),
                                         body, token=STRANGER)
            answers.append((status, out["error"].replace(device, "<id>")))
        assert answers[0] == answers[1] and answers[0][0] == 404, answers
        assert await commands(api) == []
    scenario(tmp_path, run, tokens=TOKENS)


def test_a_non_owner_cannot_flood_a_device_queue(tmp_path, monkeypatch):
    """A device takes its commands one by one: an aggregator or monitor queueing
    thousands would hold the owner's behind them. Past QUEUE_QUOTA queued commands
    per actor and device: 429; owners are not limited."""
    from spot.cloud_bridge import http_guard
    monkeypatch.setattr(http_guard, "QUEUE_QUOTA", 5)

    async def body(api):
        await pair(api, "watcher", "aggregator")
        await api.bridge.presence_changed("hp-0001", "offline")   # commands wait
        read = {"service": "heat_pump", "op": "read", "expires_in": 86400}
        statuses = [(await api.post(COMMANDS, read, token=WATCHER))[0] for _ in range(12)]
        assert statuses == [202] * 5 + [429] * 7, statuses
        status, err = await api.post(COMMANDS, read, token=WATCHER)
        assert status == 429 and "queued" in err["error"]
        status, err = await api.post("/api/v1/devices/hp-0001/plans", {
            "duration": 600, "entries": {"heat_pump": {"sg_ready": 1}}}, token=WATCHER)
        assert status == 429, err
        queued = [c for c in await commands(api) if c["status"] == "queued"]
        assert len([c for c in queued if c["actor"] == "watcher"]) <= 5
        for _ in range(8):                    # the owner is not held back by the quota
            assert (await api.post(COMMANDS, WRITE_45))[0] == 202
    scenario(tmp_path, body, tokens=TOKENS)


# ------------------------------------------------------------------ headers (#10)

@pytest.mark.parametrize("path", ["/", "/device/hp-0001", "/app.js", "/style.css",
                                  "/api/v1/devices", "/api/v1/devices/nope", "/metrics",
                                  "/no-such-page"])
def test_every_answer_forbids_framing_and_sniffing_and_has_a_csp(tmp_path, path):
    async def body(api):
        async with api.session.get(api.base + path) as r:
            h = r.headers
            assert h.get("X-Frame-Options") == "DENY"
            assert h.get("X-Content-Type-Options") == "nosniff"
            csp = h.get("Content-Security-Policy", "")
            assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert h.get("Referrer-Policy") == "no-referrer"
            assert "Access-Control-Allow-Origin" not in h
    scenario(tmp_path, body)


# ------------------------------------------------------------------ the next layer

@pytest.mark.parametrize("target", [
    "/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/app.js/../../pyproject.toml",
    "/device/..%2f..%2f..%2fpyproject.toml", "/static/../http_api.py", "//etc/passwd"])
def test_static_files_do_not_traverse_out_of_the_dashboard(tmp_path, target):
    async def body(api):
        host = api.base[len("http://"):]
        answer = await raw_request(api, ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close"
                                         "\r\n\r\n" % (target, host)).encode())
        head, _, content = answer.partition(b"\r\n\r\n")
        assert b"root:" not in content and b"[project]" not in content
        assert b"import " not in content
        if head.startswith(b"HTTP/1.1 200"):   # /device/<anything> is the dashboard page
            assert b"<script src=\"/app.js\"" in content
    scenario(tmp_path, body)


@pytest.mark.parametrize("path", ["//evil.example/", "/api/v1//evil.example", "/\\evil.example",
                                  "/api/v1/devices/"])
def test_no_redirect_leaves_the_bridge(tmp_path, path):
    async def body(api):
        async with api.session.get(api.base + path, allow_redirects=False) as r:
            assert not 300 <= r.status < 400 and "Location" not in r.headers
    scenario(tmp_path, body)


def test_cross_origin_preflight_grants_nothing(tmp_path):
    async def body(api):
        async with api.session.options(api.base + COMMANDS, headers={
                "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"}) as r:
            assert r.status in (403, 405)
            assert not any(k.lower().startswith("access-control-") for k in r.headers)
    scenario(tmp_path, body)


def test_an_unpaired_actor_stops_receiving_the_device_events_on_its_open_stream(
        tmp_path, monkeypatch):
    """The stream's view of the actor's roles is refreshed (every ROLE_RECHECK s; 0 here):
    unpairing takes effect on a stream opened before it."""
    import aiohttp
    from spot.cloud_bridge import http_api
    from test_http_api import next_event
    monkeypatch.setattr(http_api, "ROLE_RECHECK", 0.0)

    async def body(api):
        for d in ("hp-0001", "hp-0002"):
            await pair_on(api, d, "watcher", "monitor")
        async with api.session.get(api.base + "/api/v1/events?types=telemetry&access_token="
                                   + WATCHER, timeout=aiohttp.ClientTimeout(total=None)) as s:
            await api.report("hp-0001")
            assert (await next_event(s, "telemetry"))["device"] == "hp-0001"
            status, _ = await api.call("DELETE", "/api/v1/devices/hp-0001/pairings/watcher")
            assert status == 204
            await api.report("hp-0001")
            await api.report("hp-0002")
            assert (await next_event(s, "telemetry"))["device"] == "hp-0002"
    scenario(tmp_path, body, tokens=TOKENS,
             devices=(("heat_pump", "hp-0001"), ("heat_pump", "hp-0002")))


def test_live_event_streams_are_capped(tmp_path, monkeypatch):
    """Each open stream holds a queue of up to 1000 events: beyond the cap, 503."""
    from spot.cloud_bridge import http_api
    monkeypatch.setattr(http_api, "MAX_STREAMS", 3)

    async def body(api):
        streams = []
        try:
            for _ in range(3):
                streams.append(await api.session.get(api.base + "/api/v1/events"))
                assert streams[-1].status == 200
                await streams[-1].content.readline()
            async with api.session.get(api.base + "/api/v1/events") as r:
                assert r.status == 503 and "streams" in (await r.json())["error"]
            streams.pop().close()
            await asyncio.sleep(0.2)     # the server notices the closed stream
            async with api.session.get(api.base + "/api/v1/devices") as r:
                assert r.status == 200
        finally:
            for r in streams:
                r.close()
    scenario(tmp_path, body)


def test_oversized_chunked_body_is_413_without_content_length(tmp_path):
    async def body(api):
        async def chunks():
            for _ in range(64):
                yield b"[" + b"0," * 4096 + b"0]"
        status, err = await api.call("POST", COMMANDS, raw=chunks())
        assert status == 413, (status, err)
        assert await commands(api) == []
    scenario(tmp_path, body)


def test_oversized_and_too_many_headers_are_refused_not_500(tmp_path):
    async def body(api):
        host = api.base[len("http://"):]
        for extra in ("X-Big: %s\r\n" % ("a" * 20000),
                      "".join("X-H%d: 1\r\n" % i for i in range(200))):
            answer = await raw_request(api, ("GET /api/v1/devices HTTP/1.1\r\nHost: %s\r\n%s"
                                             "Connection: close\r\n\r\n" % (host, extra)).encode())
            assert answer[:10] in (b"HTTP/1.0 4", b"HTTP/1.1 4") or answer == b"", answer[:100]
    scenario(tmp_path, body)


def test_malformed_requests_do_not_flood_the_log_with_tracebacks(tmp_path, caplog):
    """Every unparsable request made aiohttp log a traceback at ERROR: 60 of them
    now give a few one-line warnings and no traceback."""
    async def body(api):
        host = api.base[len("http://"):]
        bad = [("GET /api/v1/devices HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
                % (host, "".join("X-H%d: 1\r\n" % i for i in range(300)))).encode(),
               b"GET /\x00 HTTP/1.1\r\n\r\n", b"NOT HTTP AT ALL\r\n\r\n"]
        for i in range(60):
            answer = await raw_request(api, bad[i % 3])
            assert answer.startswith(b"HTTP/1.") or answer == b""
    import logging
    from spot.cloud_bridge.http_guard import PeerErrorFilter
    for f in logging.getLogger("aiohttp.server").filters:   # a fresh minute for this test
        if isinstance(f, PeerErrorFilter):
            f.window = None
    with caplog.at_level("DEBUG", logger="aiohttp.server"):
        scenario(tmp_path, body)
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert not any(r.exc_info or r.exc_text for r in server), server[0].getMessage()
    assert 1 <= len(server) <= 20 and all("\n" not in r.getMessage() for r in server)


def test_slow_headers_are_cut_off(tmp_path, monkeypatch):
    """slowloris: a client that never finishes its headers loses its connection after
    the bridge's idle timeout (lowered to 1 s here; aiohttp's own default is an hour)."""
    from spot.cloud_bridge import http_guard
    from spot.cloud_bridge.app import running_bridge
    monkeypatch.setitem(http_guard.SERVER_OPTIONS, "keepalive_timeout", 1.0)
    config = C.load(None, data=str(tmp_path), http="127.0.0.1:0", coap="127.0.0.1:0")

    async def main():
        async with running_bridge(config) as parts:
            host, port = parts.http_url[len("http://"):].split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /api/v1/devices HTTP/1.1\r\nHost: %s\r\n" % host.encode())
            await writer.drain()
            cut = False
            for _ in range(20):    # a header line every 0.5 s, never the blank line
                await asyncio.sleep(0.5)
                try:
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                except ConnectionError:
                    cut = True
                    break
                if reader.at_eof():
                    cut = True
                    break
            writer.close()
            assert cut, "the bridge kept a connection with unfinished headers for 10 s"
    asyncio.run(asyncio.wait_for(main(), 30))


def test_slow_bodies_are_cut_off_with_408(tmp_path, monkeypatch):
    """A client that sends its headers, then its body a byte at a time and never all
    of it, gets 408 once the body timeout passes (lowered to 1 s here)."""
    from spot.cloud_bridge import http_guard
    monkeypatch.setattr(http_guard, "BODY_TIMEOUT", 1.0)

    async def body(api):
        host, port = api.base[len("http://"):].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(("POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json"
                          "\r\nContent-Length: 1000\r\n\r\n{" % (COMMANDS, host, port)).encode())
            await writer.drain()
            answer = asyncio.ensure_future(reader.read(4096))
            for _ in range(20):      # a byte every 0.3 s: 6 s at most
                await asyncio.sleep(0.3)
                if answer.done():
                    break
                try:
                    writer.write(b" ")
                    await writer.drain()
                except ConnectionError:
                    break
            answer = await asyncio.wait_for(answer, 5)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        finally:
            writer.close()
        assert await commands(api) == []
    scenario(tmp_path, body)


def test_newlines_in_paths_do_not_forge_log_lines(tmp_path, caplog):
    """A group name may hold a newline (%0A); when the store is down the request is
    logged, and the log line must stay one line (plain-text logs)."""
    from spot.cloud_bridge import store as S

    async def broken(*a, **k):
        raise S.StoreUnavailable("down")

    async def body(api):
        api.bridge.store.devices_in_group = broken
        status, _ = await api.post("/api/v1/groups/north%0A2026-01-01%20forged/commands",
                                   WRITE_45)
        assert status == 503
    with caplog.at_level("ERROR"):
        scenario(tmp_path, body)
    logged = [r.getMessage() for r in caplog.records if "store unavailable" in r.getMessage()]
    assert logged and not any("\n" in m for m in logged), logged


# ------------------------------------------------------------------ in a real browser

ATTACK_PAGE = """<!doctype html><title>cheap flights</title><script>
fetch("%s", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
             body: JSON.stringify(%s)})
  .then(function () { document.title = "sent"; }, function () { document.title = "failed"; });
</script>"""


def test_cross_origin_page_in_chromium_cannot_command_a_device(tmp_path):
    """The attack of issue #13 as seen in Chromium: a page of another origin posts a
    write with a no-cors fetch (text/plain body); the bridge executes nothing. Then DNS
    rebinding: a name mapped to 127.0.0.1 in Chromium's resolver loads nothing."""
    from test_dashboard_browser import Page, browser

    async def main():
        async with running(tmp_path) as api:
            write = dict(WRITE_45, values={"flow_setpoint": 69})
            attacker = web.Application()

            async def page(request):
                return web.Response(text=ATTACK_PAGE % (api.base + COMMANDS, json.dumps(write)),
                                    content_type="text/html")
            attacker.router.add_get("/", page)
            runner = web.AppRunner(attacker)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            evil = "http://localhost:%d/" % runner.addresses[0][1]
            port = api.base.rsplit(":", 1)[1]
            driver = await asyncio.to_thread(browser, str(tmp_path / "chromium"),
                                             ["--host-resolver-rules=MAP rebind.test 127.0.0.1"])
            p = Page(driver)
            try:
                await p.do(driver.get, evil)
                await p.wait("return document.title !== 'cheap flights'", "the attack sent")
                assert await commands(api) == []
                assert api.devices["hp-0001"].node.get(0x10, 7) != 69
                await p.do(driver.get, "http://rebind.test:%s/" % port)
                assert "app.js" not in await p.js("return document.documentElement.outerHTML")
                status = await p.js("return fetch('/api/v1/devices').then(r => r.status)")
                assert status == 403
            finally:
                await asyncio.to_thread(driver.quit)
                await runner.cleanup()
    asyncio.run(asyncio.wait_for(main(), 60))
