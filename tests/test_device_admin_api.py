"""Deleting devices and listing them page by page (issue 13 item 6), over the HTTP API
of a real running bridge (store, CoAP link, aiohttp on 127.0.0.1), devices registering
with real CoAP datagrams (RawCoap, a test double)."""
import asyncio

import aiohttp

from adversarial_peers import RawCoap, announce, bridge, code
from spot.cloud_bridge.openapi import document

TOKENS = {"op-token": "operator", "owner-token": "alice", "watch-token": "watcher"}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def call(parts, method, path, token="op-token"):
    async with aiohttp.ClientSession() as s:
        async with s.request(method, parts.http_url + path,
                             headers={"Authorization": "Bearer " + token}) as r:
            body = await r.json() if r.content_type == "application/json" else None
            return r.status, body, r.headers


def test_the_operator_deletes_a_device_which_frees_its_id_and_is_audited(tmp_path):
    async def main():
        async with bridge(tmp_path, tokens=TOKENS, reg_plain="open") as parts:
            first, renumbered = await RawCoap.open(), await RawCoap.open("127.0.0.2")
            assert code((await first.post(announce("hp-1"), parts.coap_port))[0]) == "2.04"
            assert code((await renumbered.post(announce("hp-1"), parts.coap_port))[0]) == "4.01"
            status, _, _ = await call(parts, "DELETE", "/api/v1/devices/hp-1")
            assert status == 204
            assert await parts.store.get_device("hp-1") is None
            assert parts.coap.route("hp-1") is None and "hp-1" not in parts.bridge.known
            _, entries, _ = await call(parts, "GET", "/api/v1/audit?target=hp-1")
            assert entries[0]["action"] == "delete" and entries[0]["actor"] == "operator"
            # the id is free: the device at its new address registers again
            assert code((await renumbered.post(announce("hp-1"), parts.coap_port))[0]) == "2.04"
            assert (await parts.store.get_device("hp-1")).credential_ref == "coap:127.0.0.2"
            first.close()
            renumbered.close()
    run(main())


def test_an_owner_may_delete_its_device_and_others_may_not(tmp_path):
    async def main():
        async with bridge(tmp_path, tokens=TOKENS) as parts:
            peer = await RawCoap.open()
            for d in ("hp-1", "hp-2"):
                await peer.post(announce(d), parts.coap_port)
            await parts.bridge.pair("operator", "hp-1", "alice", "owner")
            await parts.bridge.pair("operator", "hp-2", "watcher", "monitor")
            assert (await call(parts, "DELETE", "/api/v1/devices/hp-2", "watch-token"))[0] == 403
            assert (await call(parts, "DELETE", "/api/v1/devices/hp-2", "owner-token"))[0] == 403
            assert await parts.store.get_device("hp-2") is not None
            _, entries, _ = await call(parts, "GET", "/api/v1/audit?target=hp-2")
            assert [e["action"] for e in entries[:2]] == ["refused", "refused"]
            assert (await call(parts, "DELETE", "/api/v1/devices/hp-1", "owner-token"))[0] == 204
            assert (await call(parts, "DELETE", "/api/v1/devices/hp-1"))[0] == 404
            peer.close()
    run(main())


def test_delete_device_is_in_the_openapi_document():
    op = document(tokens=True)["paths"]["/api/v1/devices/{id}"]["delete"]
    assert set(op["responses"]) >= {"204", "403", "404"}


def test_the_device_list_comes_in_pages_linked_by_the_last_id(tmp_path):
    async def main():
        async with bridge(tmp_path, tokens=TOKENS) as parts:
            await parts.store.upsert_devices(
                [("d-%03d" % i, [[16, 1, 0]], [], 0) for i in range(25)], 1.0)
            seen, path = [], "/api/v1/devices?limit=10"
            while path:
                status, page, headers = await call(parts, "GET", path)
                assert status == 200 and len(page) <= 10
                seen += [d["id"] for d in page]
                link = headers.get("Link")
                path = link[1:link.index(">")] if link else None
            assert seen == ["d-%03d" % i for i in range(25)]
    run(main())


def test_a_paired_actor_pages_through_its_own_devices_only(tmp_path):
    async def main():
        async with bridge(tmp_path, tokens=TOKENS) as parts:
            await parts.store.upsert_devices(
                [("d-%03d" % i, [[16, 1, 0]], [], 0) for i in range(30)], 1.0)
            for i in (3, 7, 11, 29):
                await parts.store.add_pairing("d-%03d" % i, "watcher", "monitor", None, 1.0)
            _, page, headers = await call(parts, "GET", "/api/v1/devices?limit=3",
                                          "watch-token")
            assert [d["id"] for d in page] == ["d-003", "d-007", "d-011"]
            _, page, headers = await call(parts, "GET", "/api/v1/devices?limit=3&after=d-011",
                                          "watch-token")
            assert [d["id"] for d in page] == ["d-029"] and "Link" not in headers
    run(main())
