"""Sizing a deployment: one group command to N devices of a bridge already running.

    python3 bench/bridge_fanout.py --target=HOST:5683 --api=http://HOST:8080 \\
        [--api=http://HOST2:8080 ...] [--token=SECRET] [--devices=1000] [--prefix=bench]
        [--group=NAME] [--bind=ADDR]

Registers N light CoAP devices `<prefix>-00001` ... from this host (the ingest
bench's fleet: one UDP socket each, answering every command with a RESULT), puts
each in a group of this run's own (`fanout-<Unix time in ms>` unless --group is given:
a device's groups are replaced, so devices of an earlier run with a larger N are in
no group of this one) through the API (PUT /api/v1/devices/{id}/groups), then POSTs
one heat pump write to the group and prints: registration s, the time the POST
took to answer 202 (every command queued), when the last device received its
command, and when the bridge counted the last one done (its RESULT handled and
committed: spot_bridge_commands_total{status="done"} on /metrics, summed over every
--api given: with several instances give each one's API, as each counts the
deliveries that went out through it). The bridge must admit this host's plain
CoAP, as for the ingest bench (`[registration] plain`, `total_burst`,
`max_plain` above N); --token is an operator's API token when `[access] tokens`
is set. The devices stay in the store: delete them with DELETE
/api/v1/devices/{id}.
"""
import asyncio
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from bridge_ingest import (CoapFleet, option, percentile, raise_fd_limit, register_against,
                           target_options)

COMMAND = {"service": "heat_pump", "op": "write", "values": {"sg_ready": 2}}
DONE = 'spot_bridge_commands_total{status="done"}'


class Api:
    """The bridge's HTTP API at one or more base URLs (one per instance)."""

    def __init__(self, urls, token=None):
        self.urls = [u.rstrip("/") for u in urls]
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = "Bearer " + token

    def call(self, method, path, data=None, timeout=600):
        req = urllib.request.Request(self.urls[0] + path, method=method, headers=self.headers,
                                     data=None if data is None else json.dumps(data).encode())
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")

    def done(self):
        """Commands done, summed over every instance's /metrics."""
        total = 0.0
        for url in self.urls:
            req = urllib.request.Request(url + "/metrics", headers=self.headers)
            with urllib.request.urlopen(req, timeout=30) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith(DONE + " "):
                        total += float(line.split()[-1])
        return total


async def fan_out(fleet, api, group, stall=30.0):
    """Group the fleet, post one command to the group; the timings."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(16) as pool:
        t0 = time.monotonic()
        puts = [loop.run_in_executor(pool, api.call, "PUT",
                                     "/api/v1/devices/%s/groups" % d, {"groups": [group]})
                for d in fleet.ids]
        for status, _ in await asyncio.gather(*puts):
            assert status == 200, status
        grouped = time.monotonic() - t0
    before = await loop.run_in_executor(None, api.done)
    t_post = time.time()
    status, answer = await loop.run_in_executor(
        None, api.call, "POST", "/api/v1/groups/%s/commands" % group, COMMAND)
    queued = time.time() - t_post
    if status != 202 or answer.get("queued") != fleet.n:
        raise SystemExit("the group command was not queued for every device: %s %s"
                         % (status, {k: answer.get(k) for k in ("queued", "refused")}))
    done, last_done, grew = before, None, time.monotonic()
    while done < before + fleet.n and time.monotonic() - grew < stall:
        await asyncio.sleep(0.1)
        now = await loop.run_in_executor(None, api.done)
        if now > done:
            done, grew, last_done = now, time.monotonic(), time.time() - t_post
    received = [t - t_post for t, _ in fleet.commanded.values()]
    return {"grouped_s": grouped, "queued_s": queued, "received": len(received),
            "p50": percentile(received, 50), "p99": percentile(received, 99),
            "last_received": max(received) if received else float("nan"),
            "done": int(done - before), "last_done": last_done}


async def run(host, port, n, prefix, bind, api, group):
    fleet = await CoapFleet(n, (host, port), prefix=prefix).open(bind)
    try:
        reg = await register_against(fleet)
        return reg, await fan_out(fleet, api, group)
    finally:
        fleet.close()


def main(argv):
    host, port, n, prefix, bind = target_options(argv)
    urls = [a.split("=", 1)[1] for a in argv if a.startswith("--api=")]
    if not urls:
        raise SystemExit("--api=http://HOST:PORT (the bridge's HTTP API) is needed with --target")
    api = Api(urls, option(argv, "token"))
    group = option(argv, "group", "fanout-%d" % (time.time() * 1000))
    raise_fd_limit()
    reg, r = asyncio.run(run(host, port, n, prefix, bind, api, group))
    print("One group command (POST /api/v1/groups/%s/commands, a heat pump write) to %d CoAP "
          "devices (%s-00001 ...) of the bridge at %s:%s; seconds from the POST"
          % (group, n, prefix, host, port))
    print()
    print("| devices | registration s | grouping s (PUTs) | POST answered s | received p50 / p99 "
          "/ last s | done by the bridge | last done s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print("| %d | %.2f | %.2f | %.2f | %.2f / %.2f / %.2f | %d of %d | %s |" % (
        n, reg, r["grouped_s"], r["queued_s"], r["p50"], r["p99"], r["last_received"],
        r["done"], n, "-" if r["last_done"] is None else "%.2f" % r["last_done"]))
    if r["received"] < n or r["done"] < n:
        raise SystemExit("not every device got its command done: %d received, %d done"
                         % (r["received"], r["done"]))
