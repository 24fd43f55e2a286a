"""The openadr3 plugin's requests and the VTN answers it reads, against the official
OpenADR 3.0.1 OpenAPI document served by Prism (npm @stoplight/prism-cli) as a mock
with validation: Prism answers 422 to a request the document does not allow, 401 to
one without the security the document asks for, and (with --errors) 500 where its
own answer would break the document.

Prism is installed by `npm ci --prefix tests/openadr3` (tools/test.sh does it).
"""
import asyncio
import base64
import pathlib
import shutil
import socket
import subprocess
import time

import aiohttp
import pytest

from netutil import free_tcp_port
from spot.cloud_bridge.plugins.dr_translate import EventError
from spot.cloud_bridge.plugins.openadr3 import translate as T
from spot.cloud_bridge.plugins.openadr3.client import VtnClient, VtnError

HERE = pathlib.Path(__file__).parent
SPEC = HERE / "data" / "openadr3" / "oadr3.0.1.yaml"
PRISM = HERE / "openadr3" / "node_modules" / ".bin" / "prism"


@pytest.fixture(scope="module")
def prism():
    """Prism mocking the 3.0.1 document on a free loopback port, validating both ways."""
    if shutil.which("node") is None or not PRISM.exists():
        pytest.fail("Prism is not installed; run: npm ci --prefix tests/openadr3")
    port = free_tcp_port()
    proc = subprocess.Popen([str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), "--errors",
                             str(SPEC)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Prism did not start: %s" % proc.stdout.read()[-2000:])
                time.sleep(0.2)
        yield "http://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def with_client(url, body):
    async def main():
        client = VtnClient(url, url + "/auth/token", "spot-ven", "secret")
        try:
            return await body(client)
        finally:
            await client.close()
    return asyncio.run(asyncio.wait_for(main(), 60))


def test_token_request_is_the_form_body_the_document_defines(prism):
    async def body(client):
        tok = await client.token()
        assert isinstance(tok, str) and tok and client.tokens_fetched == 1
        assert await client.token() == tok and client.tokens_fetched == 1   # kept, not refetched
    with_client(prism, body)


def test_token_request_by_basic_auth_alone_is_not_what_the_document_takes(prism):
    async def main():
        async with aiohttp.ClientSession() as s:
            basic = base64.b64encode(b"spot-ven:secret").decode()
            async with s.post(prism + "/auth/token", data={"grant_type": "client_credentials"},
                              headers={"Authorization": "Basic " + basic}) as r:
                return r.status
    assert asyncio.run(main()) != 200


def test_registration_calls_are_valid_requests(prism):
    async def body(client):
        found = await client.find_ven("VEN-999")           # the document's example VEN
        assert found is not None and found["venName"] == "VEN-999"
        ven = await client.create_ven("spot-test")
        vid = T.object_id(ven["id"], "VEN id")
        resources = await client.resources(vid)
        assert isinstance(resources, list)
        res = await client.create_resource(vid, "hp-0001",
                                           [{"type": "SPOT_SERVICE", "values": [0x10]}])
        assert res["objectType"] == "RESOURCE"
    with_client(prism, body)


def test_reading_programs_and_events_is_valid_and_what_comes_back_parses(prism):
    async def body(client):
        programs = await client.programs()
        assert programs, "the document's example lists a program"
        p = T.parse_program(programs[0])
        events = await client.events(p["id"])
        assert events and events[0]["objectType"] == "EVENT"
        # the document's example event has intervals of duration PT0S (open-ended):
        # refused with a clear reason rather than guessed at
        with pytest.raises(EventError, match="open-ended"):
            T.parse_event(events[0])
        closed = dict(events[0], intervalPeriod=dict(events[0]["intervalPeriod"],
                                                     duration="PT1H"))
        closed["intervals"] = [dict(iv, intervalPeriod=None) for iv in closed["intervals"]]
        ev = T.parse_event(closed)
        assert ev["signals"][0][:2] == ("ELECTRICITY_PRICE", "price")
    with_client(prism, body)


def test_report_and_subscription_bodies_are_valid_requests(prism):
    async def body(client):
        sums = {"power": 3200.0, "energy": 41000.0, "online": 2, "reporting": 2}
        ivs = [T.report_interval(0, 1_700_000_000, 60, sums, ["DEMAND", "USAGE"])]
        report = T.report_body("program-1", "event-1", "spot-test", ["DEMAND", "USAGE"], ivs)
        made = await client.create_report(report)
        assert made["objectType"] == "REPORT"
        await client.update_report(T.object_id(made["id"], "report id"), report)
        sub = await client.create_subscription("spot-test", "program-1",
                                               "http://127.0.0.1:8093/openadr3/notify",
                                               "token", ("EVENT", "PROGRAM"))
        assert sub["objectType"] == "SUBSCRIPTION"
        await client.delete_subscription(T.object_id(sub["id"], "subscription id"))
    with_client(prism, body)


def test_a_request_the_document_refuses_is_a_clear_vtn_error(prism):
    async def body(client):
        with pytest.raises(VtnError) as e:
            await client.request("POST", "/vens", {"venName": ""})   # minLength 1
        assert e.value.status == 400 and str(e.value).startswith("HTTP 400")
    with_client(prism, body)


def test_prism_names_the_violation_of_a_refused_request(prism):
    """What makes the 2xx answers above a check: Prism refuses what breaks the document."""
    async def main():
        async with aiohttp.ClientSession() as s:
            async with s.post(prism + "/vens", json={"venName": ""},
                              headers={"Authorization": "Bearer x"}) as r:
                return r.status, r.headers.get("sl-violations", "")
    status, violations = asyncio.run(main())
    assert status == 400 and "venName" in violations and "fewer than 1" in violations
