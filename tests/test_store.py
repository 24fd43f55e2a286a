"""The bridge store (cloud_bridge/store*.py): every behaviour on SQLite and on PostgreSQL.

Each test runs once per backend on a fresh database: a new SQLite file, or a
new database on one throwaway PostgreSQL server started for the session
(tests/postgres.py).
"""
import asyncio
import itertools
import math
import sqlite3

import pytest

import postgres
from command_states import claimed, sent
from spot.cloud_bridge import store as S
from spot.cloud_bridge.store import open_store

T0 = 1700000000
HP = 0x10           # heat_pump service
WRITE, INVOKE, NOTIFY = 2, 3, 6
TEST_TIMEOUT = 30   # seconds one test's coroutine may take

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server():
    server = postgres.PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield "sqlite://" + str(tmp_path / "bridge.db")
    else:
        pg = request.getfixturevalue("pg_server")
        name = "t%d" % next(_db_numbers)
        yield pg.create_database(name)
        pg.drop_database(name)


def store_test(fn):
    """Turn `async def test_x(store, url)` into a test run on a fresh store per backend."""
    def test(store_url):
        async def main():
            s = await open_store(store_url)
            try:
                await fn(s, store_url)
            finally:
                await s.close()
        asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT))
    test.__name__ = fn.__name__
    test.__doc__ = fn.__doc__
    return test


async def add_device(s, dev="hp-1", flags=0, now=T0):
    await s.upsert_device(dev, [[2, 1, 0], [4, 1, 0], [HP, 1, 0]], [5], flags, now)


def same(a, b):
    """Equal with types (1 is not 1.0 nor True) and NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (a != a and b != b) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# ------------------------------------------------------------------ meta

@store_test
async def test_new_store_has_its_backends_schema_version(s, url):
    # SQLite 3 (history one row per frame, latest values per device and service);
    # PostgreSQL 5 (telemetry partitioned by time, latest values per device with their
    # keys, history one row per frame)
    assert await s.schema_version() == (5 if s.dialect == "postgresql" else 3)


@store_test
async def test_reopening_an_existing_database_keeps_its_schema_and_data(s, url):
    await add_device(s)
    s2 = await open_store(url)
    try:
        assert await s2.schema_version() == s.schema
        assert (await s2.get_device("hp-1")).id == "hp-1"
    finally:
        await s2.close()


@store_test
async def test_database_with_newer_schema_is_refused(s, url):
    def script():
        yield S.Q("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                  (s.schema + 1, 0.0))
    await s._run(script)
    with pytest.raises(S.SchemaError, match="newer"):
        await open_store(url)


@store_test
async def test_store_reopened_after_close_still_has_everything(s, url):
    await add_device(s, "hp-1", flags=1)
    await add_device(s, "pv-1")
    await s.set_groups("hp-1", ["north"])
    await s.set_presence("pv-1", "offline", T0 + 5)
    await s.add_telemetry([("hp-1", HP, 8, T0, 352), ("hp-1", HP, 8, T0 + 60, 356)])
    c1 = await s.enqueue("hp-1", HP, WRITE, {7: 215}, "alice", T0, expires_at=T0 + 3600)
    c2 = await s.enqueue("hp-1", HP, INVOKE, [18, 3600], "bob", T0 + 1)
    assert (await s.claim_and_send_many([("hp-1", 41)], T0 + 3, "bridge-a"))[0].id == c1
    p = await s.enqueue_plan("hp-1", [7, T0, T0 + 7200, 10, {HP: {6: 3}}], "alice", T0)
    await s.add_pairing("hp-1", "ctl-1", "aggregator", b"\x01kid", T0)
    await s.audit("alice", "pair", "hp-1", {"role": "aggregator"}, T0)
    before = (await s.list_devices(), await s.latest("hp-1"),
              await s.history("hp-1", HP, 8), await s.list_commands(),
              await s.list_plans("hp-1", T0), await s.pairings("hp-1"), await s.list_audit())
    await s.close()

    s2 = await open_store(url)
    try:
        after = (await s2.list_devices(), await s2.latest("hp-1"),
                 await s2.history("hp-1", HP, 8), await s2.list_commands(),
                 await s2.list_plans("hp-1", T0), await s2.pairings("hp-1"),
                 await s2.list_audit())
        assert after == before
        assert [c.id for c in after[3]] == [p, c2, c1]
        assert (await s2.find_sent("hp-1", 41)).id == c1
    finally:
        await s2.close()


@store_test
async def test_closed_store_refuses_calls(s, url):
    await s.close()
    with pytest.raises(S.StoreUnavailable, match="closed"):
        await s.get_device("hp-1")
    await s.close()   # idempotent


def test_store_url_must_be_sqlite_or_postgresql():
    with pytest.raises(S.InvalidValue, match="scheme"):
        asyncio.run(open_store("mysql://db/spot"))
    with pytest.raises(S.InvalidValue, match="no file path"):
        asyncio.run(open_store("sqlite://"))
    assert S.parse_url("sqlite:///var/lib/spot/b.db") == ("sqlite", "/var/lib/spot/b.db")
    assert S.parse_url("sqlite:state/b.db") == ("sqlite", "state/b.db")
    assert S.parse_url("postgres://u@h:5/d") == ("postgresql", "postgres://u@h:5/d")


def test_sqlite_file_that_is_not_a_database_is_refused(tmp_path):
    p = tmp_path / "junk.db"
    p.write_bytes(b"not a database at all" * 100)
    with pytest.raises(S.StoreUnavailable):
        asyncio.run(open_store("sqlite://" + str(p)))


def test_unreachable_postgresql_raises_unavailable():
    port = postgres.free_port()   # nothing listens there
    with pytest.raises(S.StoreUnavailable, match="connect"):
        asyncio.run(open_store("postgresql://spot@127.0.0.1:%d/x" % port, timeout=1.0))


# ---------------------------------------------------------------- devices

@store_test
async def test_upsert_registers_a_new_device_online(s, url):
    assert await s.upsert_device("hp-1", [[2, 1, 0], [HP, 1, 2]], [5, 6], 0, T0) is True
    d = await s.get_device("hp-1")
    assert d == S.Device("hp-1", [[2, 1, 0], [HP, 1, 2]], [5, 6], 0, False, None,
                         T0, T0, "online", T0, [])


@store_test
async def test_reannounce_updates_services_and_keeps_first_seen(s, url):
    await s.upsert_device("hp-1", [[HP, 1, 0]], [], 0, T0, credential_ref="kid-1")
    await s.set_presence("hp-1", "sleeping", T0 + 10)
    assert await s.upsert_device("hp-1", [[HP, 1, 1], [0x11, 1, 0]], [7], 1, T0 + 20) is False
    d = await s.get_device("hp-1")
    assert (d.services, d.consumes, d.flags, d.sleepy) == ([[HP, 1, 1], [0x11, 1, 0]], [7], 1, True)
    assert (d.first_seen, d.last_seen) == (T0, T0 + 20)
    assert (d.presence, d.presence_at) == ("online", T0 + 20)
    assert d.credential_ref == "kid-1"


@store_test
async def test_upsert_devices_registers_many_in_one_call(s, url):
    await s.upsert_device("b", [[HP, 1, 0]], [], 0, T0, credential_ref="kid-b")
    await s.set_presence("b", "offline", T0 + 1)
    new = await s.upsert_devices([("c", [[HP, 1, 0]], [], 1), ("b", [[HP, 1, 1]], [5], 0),
                                  ("a", [], [], 0)], T0 + 10)
    assert new == ["a", "c"]
    devs = {d.id: d for d in await s.list_devices()}
    assert sorted(devs) == ["a", "b", "c"]
    assert (devs["b"].services, devs["b"].first_seen, devs["b"].last_seen) == (
        [[HP, 1, 1]], T0, T0 + 10)
    assert (devs["b"].presence, devs["b"].credential_ref) == ("online", "kid-b")
    assert devs["c"].sleepy is True
    assert await s.upsert_devices([], T0) == []
    with pytest.raises(S.InvalidValue, match="service"):
        await s.upsert_devices([("d", [], [], 0), ("e", [[HP]], [], 0)], T0)
    assert await s.get_device("d") is None


@store_test
async def test_unknown_device_reads_as_none(s, url):
    assert await s.get_device("nope") is None


@store_test
async def test_list_devices_sorted_and_filtered_by_presence(s, url):
    for dev in ("c", "a", "b"):
        await add_device(s, dev)
    await s.set_presence("b", "offline", T0 + 1)
    assert [d.id for d in await s.list_devices()] == ["a", "b", "c"]
    assert [d.id for d in await s.list_devices("online")] == ["a", "c"]
    assert [d.id for d in await s.list_devices("offline")] == ["b"]


@store_test
async def test_set_presence_returns_the_previous_presence(s, url):
    await add_device(s)
    assert await s.set_presence("hp-1", "sleeping", T0 + 5) == "online"
    assert await s.set_presence("hp-1", "offline", T0 + 9) == "sleeping"
    d = await s.get_device("hp-1")
    assert (d.presence, d.presence_at) == ("offline", T0 + 9)


@store_test
async def test_set_presence_rejects_unknown_device_and_presence(s, url):
    await add_device(s)
    with pytest.raises(S.UnknownDevice, match="'nope'"):
        await s.set_presence("nope", "online", T0)
    with pytest.raises(S.InvalidValue, match="presence"):
        await s.set_presence("hp-1", "asleep", T0)
    assert (await s.get_device("hp-1")).presence == "online"


@store_test
async def test_touch_moves_last_seen_forward_only(s, url):
    await add_device(s)
    await s.touch("hp-1", T0 + 30.5)
    assert (await s.get_device("hp-1")).last_seen == T0 + 30.5
    await s.touch("hp-1", T0 + 10)
    assert (await s.get_device("hp-1")).last_seen == T0 + 30.5
    with pytest.raises(S.UnknownDevice):
        await s.touch("nope", T0)


@store_test
async def test_set_groups_replaces_groups_and_devices_in_group_follows(s, url):
    for dev in ("a", "b", "c"):
        await add_device(s, dev)
    await s.set_groups("a", ["north", "heat"])
    await s.set_groups("b", ["north"])
    assert await s.devices_in_group("north") == ["a", "b"]
    await s.set_groups("a", ["south"])
    assert await s.devices_in_group("north") == ["b"]
    assert (await s.get_device("a")).groups == ["south"]
    assert await s.devices_in_group("heat") == []
    assert [d.groups for d in await s.list_devices()] == [["south"], ["north"], []]
    with pytest.raises(S.UnknownDevice):
        await s.set_groups("nope", ["north"])


@store_test
async def test_bad_device_arguments_raise_and_store_nothing(s, url):
    for args in (("", [], [], 0, T0), ("x" * 300, [], [], 0, T0), ("a\x00b", [], [], 0, T0),
                 (7, [], [], 0, T0), ("d", [[HP, 1]], [], 0, T0), ("d", [[300, 1, 0]], [], 0, T0),
                 ("d", [], ["5"], 0, T0), ("d", [], [], -1, T0), ("d", [], [], 0, "now"),
                 ("d", [], [], 0, math.nan), ("\ud800", [], [], 0, T0)):
        with pytest.raises(S.InvalidValue):
            await s.upsert_device(*args)
    assert await s.list_devices() == []


# -------------------------------------------------------------- telemetry

WIRE_VALUES = [
    0, -1, 2**63 - 1, -2**64, 21.5, 1e20, -0.0, 5e-324, math.inf, -math.inf, math.nan,
    True, False, None, "", "21.5 Cel", "grüße \u2603", "nul\x00inside", b"", b"\x00\xffkid",
    [], [1, [2.5, [None, "x"]]], {}, {7: 215, 8: -3}, {-1: {2: [1, 2]}},
    {"name": "hp"}, {"7": "text key that looks like an int"}, {"b64": "not bytes"},
    {"map": 1}, {"f": "nan"}, {1: "mixed", "a": 2}, {b"k": 1}, [1700000000, 300, [1, None, 3]],
]


@pytest.mark.parametrize("value", WIRE_VALUES, ids=repr)
def test_wire_values_round_trip_through_json(value):
    assert same(S.load_value(S.dump_value(value)), value)


@store_test
async def test_every_wire_value_round_trips_through_both_databases(s, url):
    await add_device(s)
    rows = [("hp-1", HP, i, T0, v) for i, v in enumerate(WIRE_VALUES)]
    assert await s.add_telemetry(rows) == len(rows)
    latest = await s.latest("hp-1")
    for i, v in enumerate(WIRE_VALUES):
        assert same(latest[(HP, i)][0], v), (i, v, latest[(HP, i)][0])
        assert same((await s.history("hp-1", HP, i))[0][1], v)
    cid = await s.enqueue("hp-1", HP, WRITE, WIRE_VALUES, "alice", T0)
    assert same((await s.get_command(cid)).body, WIRE_VALUES)


@pytest.mark.parametrize("value", [{1, 2}, object(), {1.5: 2}, {True: 1}, {(1, 2): 3},
                                   "\ud800", [b"ok", bytearray(b"x"), {1: {2: {3: set()}}}]],
                         ids=lambda v: "object()" if type(v) is object else repr(v))
def test_values_that_are_not_wire_values_are_rejected(value):
    with pytest.raises(S.InvalidValue):
        S.dump_value(value)


def test_deeply_nested_and_oversized_values_are_rejected():
    v = []
    for _ in range(S.MAX_DEPTH + 5):
        v = [v]
    with pytest.raises(S.InvalidValue, match="nested"):
        S.dump_value(v)
    with pytest.raises(S.InvalidValue, match="larger"):
        S.dump_value("x" * (S.MAX_VALUE_JSON + 1))


@store_test
async def test_telemetry_history_is_in_time_order(s, url):
    await add_device(s)
    await s.add_telemetry([("hp-1", HP, 8, T0 + 120, 360), ("hp-1", HP, 8, T0, 352),
                           ("hp-1", HP, 1, T0, 1234)])
    await s.add_telemetry([("hp-1", HP, 8, T0 + 60, 356.5)])
    assert await s.history("hp-1", HP, 8) == [(T0, 352), (T0 + 60, 356.5), (T0 + 120, 360)]
    assert await s.history("hp-1", HP, 1) == [(T0, 1234)]
    assert await s.history("hp-1", HP, 99) == []


@store_test
async def test_history_range_is_half_open_with_limit_and_order(s, url):
    await add_device(s)
    await s.add_telemetry([("hp-1", HP, 8, T0 + 10 * i, i) for i in range(10)])
    h = await s.history("hp-1", HP, 8, T0 + 20, T0 + 60)
    assert h == [(T0 + 20, 2), (T0 + 30, 3), (T0 + 40, 4), (T0 + 50, 5)]
    assert await s.history("hp-1", HP, 8, t_from=T0 + 75) == [(T0 + 80, 8), (T0 + 90, 9)]
    assert await s.history("hp-1", HP, 8, t_to=T0 + 10) == [(T0, 0)]
    assert await s.history("hp-1", HP, 8, limit=2) == [(T0, 0), (T0 + 10, 1)]
    assert await s.history("hp-1", HP, 8, limit=2, descending=True) == [(T0 + 90, 9),
                                                                      (T0 + 80, 8)]
    assert await s.history("hp-1", HP, 8, T0 + 30, T0 + 30) == []
    assert await s.history("hp-1", HP, 8, T0 + 0.5, T0 + 10.5) == [(T0 + 10, 1)]


@store_test
async def test_latest_follows_the_newest_telemetry(s, url):
    await add_device(s)
    await s.add_telemetry([("hp-1", HP, 8, T0, 352), ("hp-1", HP, 1, T0, 1000)])
    assert await s.latest("hp-1") == {(HP, 8): (352, T0), (HP, 1): (1000, T0)}
    await s.add_telemetry([("hp-1", HP, 8, T0 + 60, 356)])
    assert await s.latest("hp-1") == {(HP, 8): (356, T0 + 60), (HP, 1): (1000, T0)}


@store_test
async def test_late_telemetry_does_not_replace_a_newer_latest_value(s, url):
    await add_device(s)
    await s.add_telemetry([("hp-1", HP, 8, T0 + 60, 356)])
    await s.add_telemetry([("hp-1", HP, 8, T0, 352)])
    assert await s.latest("hp-1") == {(HP, 8): (356, T0 + 60)}
    assert await s.history("hp-1", HP, 8) == [(T0, 352), (T0 + 60, 356)]


@store_test
async def test_latest_takes_the_newest_row_within_one_batch(s, url):
    await add_device(s)
    await s.add_telemetry([("hp-1", HP, 8, T0 + 60, 356), ("hp-1", HP, 8, T0 + 120, 360),
                           ("hp-1", HP, 8, T0, 352)])
    assert await s.latest("hp-1") == {(HP, 8): (360, T0 + 120)}


@store_test
async def test_redelivered_telemetry_is_ignored_and_the_first_value_stands(s, url):
    await add_device(s)
    assert await s.add_telemetry([("hp-1", HP, 8, T0, 352), ("hp-1", HP, 8, T0, 999)]) == 1
    assert await s.add_telemetry([("hp-1", HP, 8, T0, 111), ("hp-1", HP, 9, T0, 5)]) == 1
    assert await s.history("hp-1", HP, 8) == [(T0, 352)]
    assert await s.latest("hp-1") == {(HP, 8): (352, T0), (HP, 9): (5, T0)}


@store_test
async def test_latest_of_an_unknown_device_is_empty(s, url):
    assert await s.latest("nope") == {}


@store_test
async def test_prune_deletes_only_older_telemetry_and_keeps_latest(s, url):
    await add_device(s)
    await add_device(s, "pv-1")
    await s.add_telemetry([("hp-1", HP, 8, T0 + 10 * i, i) for i in range(5)] +
                          [("pv-1", 0x11, 1, T0 + 5, 7)])
    assert await s.prune_telemetry(T0 + 20) == 3
    assert await s.history("hp-1", HP, 8) == [(T0 + 20, 2), (T0 + 30, 3), (T0 + 40, 4)]
    assert await s.history("pv-1", 0x11, 1) == []
    assert await s.latest("pv-1") == {(0x11, 1): (7, T0 + 5)}
    assert await s.prune_telemetry(T0 + 20) == 0


@store_test
async def test_telemetry_for_an_unknown_device_is_rejected_whole(s, url):
    await add_device(s)
    rows = [("hp-1", HP, 8, T0, 352), ("ghost-2", HP, 8, T0, 1), ("ghost-1", HP, 8, T0, 2)]
    with pytest.raises(S.UnknownDevice, match="unknown devices: 'ghost-1', 'ghost-2'") as e:
        await s.add_telemetry(rows)
    assert e.value.devices == ["ghost-1", "ghost-2"]
    assert await s.history("hp-1", HP, 8) == []
    assert await s.latest("hp-1") == {}


@pytest.mark.parametrize("row", [
    ("hp-1", HP, 8, T0), ("hp-1", HP, 8, T0, 1, 2), None, "hp-1",
    ("hp-1", 256, 8, T0, 1), ("hp-1", -1, 8, T0, 1), ("hp-1", HP, -1, T0, 1),
    ("hp-1", HP, 2**31, T0, 1), ("hp-1", "16", 8, T0, 1), ("hp-1", HP, True, T0, 1),
    ("hp-1", HP, 8, None, 1), ("hp-1", HP, 8, math.nan, 1), ("hp-1", HP, 8, math.inf, 1),
    ("hp-1", HP, 8, "T0", 1), ("hp-1", HP, 8, True, 1), ("hp-1", HP, 8, T0, {1, 2}),
    (b"hp-1", HP, 8, T0, 1), ("", HP, 8, T0, 1)], ids=repr)
def test_malformed_telemetry_rows_are_rejected(row):
    with pytest.raises(S.InvalidValue):
        S.prepare_telemetry([("hp-1", HP, 1, T0, 0), row])


@store_test
async def test_a_bad_row_rejects_the_whole_batch(s, url):
    await add_device(s)
    with pytest.raises(S.InvalidValue, match="row 1 service"):
        await s.add_telemetry([("hp-1", HP, 8, T0, 352), ("hp-1", 999, 8, T0, 1)])
    big = [("hp-1", HP, 8, T0 + i, i) for i in range(500)] + [("hp-1", HP, 8, "x", 1)]
    with pytest.raises(S.InvalidValue, match="row 500 time"):
        await s.add_telemetry(big)
    assert await s.history("hp-1", HP, 8) == []
    assert await s.add_telemetry([]) == 0


@store_test
async def test_large_batches_from_many_devices(s, url):
    devs = ["d%04d" % i for i in range(300)]
    for d in devs:
        await add_device(s, d)
    rows = [(d, HP, o, T0, o * 10 + i) for i, d in enumerate(devs) for o in range(1, 10)]
    assert await s.add_telemetry(rows) == 2700
    assert (await s.latest("d0299"))[(HP, 9)] == (90 + 299, T0)
    assert len(await s.latest("d0000")) == 9


@store_test
async def test_concurrent_writers_on_overlapping_objects_keep_latest_newest(s, url):
    s2 = await open_store(url)
    try:
        devs = ["d%02d" % i for i in range(20)]
        for d in devs:
            await add_device(s, d)

        async def writer(store, start):
            for t in range(start, start + 20, 2):
                rows = [(d, HP, o, T0 + t, t) for d in devs for o in range(1, 10)]
                if start:
                    rows.reverse()   # the other writer's row order
                await store.add_telemetry(rows)
        await asyncio.gather(writer(s, 0), writer(s2, 1), writer(s, 100), writer(s2, 101))
        latest = await s2.latest("d07")
        assert latest == {(HP, o): (119, T0 + 119) for o in range(1, 10)}
        assert len(await s.history("d07", HP, 3)) == 40
    finally:
        await s2.close()


# --------------------------------------------------------------- commands

@store_test
async def test_enqueue_records_who_and_when(s, url):
    await add_device(s)
    cid = await s.enqueue("hp-1", HP, WRITE, {7: 215}, "alice", T0, expires_at=T0 + 60,
                          timeout=30)
    c = await s.get_command(cid)
    assert c == S.Command(cid, "hp-1", HP, WRITE, {7: 215}, "alice", "queued", T0, T0 + 60,
                          30, None, None, None, None, None, None)
    assert await s.get_command(cid + 1000) is None


@store_test
async def test_command_ids_increase_in_enqueue_order(s, url):
    await add_device(s)
    ids = [await s.enqueue("hp-1", HP, WRITE, {7: i}, "alice", T0 + 10 - i) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


@store_test
async def test_enqueue_many_queues_one_command_per_device_in_order(s, url):
    for dev in ("hp-1", "hp-2", "hp-3"):
        await add_device(s, dev)
    ids = await s.enqueue_many(["hp-3", "hp-1", "hp-2"], HP, WRITE, {6: 3}, "op", T0,
                               expires_at=T0 + 60, timeout=5)
    commands = await s.get_commands(ids)
    assert [c.device for c in commands] == ["hp-3", "hp-1", "hp-2"]
    assert all(c.status == "queued" and c.body == {6: 3} and c.actor == "op" for c in commands)
    assert ids == sorted(ids)


@store_test
async def test_queued_commands_are_the_commands_enqueue_many_stored_as_read_back(s, url):
    for dev in ("hp-1", "hp-2"):
        await add_device(s, dev)
    body = {6: 3.5, 7: b"\x00\xff", 8: [1, {"a": float("inf")}], 9: {"x": None}}
    args = (HP, WRITE, body, "op", T0 + 0.25, T0 + 60, 5)
    ids = await s.enqueue_many(["hp-2", "hp-1"], *args)
    assert S.queued_commands(ids, ["hp-2", "hp-1"], *args) == await s.get_commands(ids)


@store_test
async def test_enqueue_many_and_get_commands_take_any_iterable(s, url):
    await add_device(s)
    ids = await s.enqueue_many(iter(["hp-1", "hp-1"]), HP, WRITE, {6: 1}, "op", T0)
    assert len(ids) == 2
    assert [c.id for c in await s.get_commands(iter(ids))] == ids


@store_test
async def test_enqueue_many_with_an_unknown_device_queues_nothing(s, url):
    await add_device(s, "hp-1")
    with pytest.raises(S.UnknownDevice):
        await s.enqueue_many(["hp-1", "ghost"], HP, WRITE, {6: 3}, "op", T0)
    assert await s.list_commands("hp-1") == []


@store_test
async def test_a_failing_write_among_concurrent_ones_is_rolled_back_alone(s, url):
    await add_device(s)
    results = await asyncio.gather(
        s.enqueue("hp-1", HP, WRITE, {7: 1}, "alice", T0),
        s.enqueue("ghost", HP, WRITE, {7: 2}, "alice", T0),
        s.enqueue("hp-1", HP, WRITE, {7: 3}, "alice", T0),
        return_exceptions=True)
    assert isinstance(results[1], S.UnknownDevice)
    assert sorted(c.body[7] for c in await s.list_commands("hp-1")) == [1, 3]
    assert [c.id for c in await s.get_commands([results[0], results[2]])] == \
        [results[0], results[2]]


def sqlite_test(fn):
    """Turn `async def test_x(store, path)` into a test on a fresh SQLite store."""
    def test(tmp_path):
        async def main():
            s = await open_store("sqlite://" + str(tmp_path / "bridge.db"))
            try:
                await fn(s, tmp_path)
            finally:
                await s.close()
        asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT))
    test.__name__ = fn.__name__
    return test


def slow_first_batch(s):
    """Make the store's next write batch take 0.3 s on its worker thread."""
    import time
    drive_batch = s._drive_batch

    def slow(scripts):
        s._drive_batch = drive_batch
        time.sleep(0.3)
        return drive_batch(scripts)
    s._drive_batch = slow


@sqlite_test
async def test_closing_the_sqlite_store_first_finishes_the_writes_asked_for(s, tmp_path):
    await add_device(s)
    calls = [asyncio.ensure_future(s.enqueue("hp-1", HP, WRITE, {7: i}, "alice", T0))
             for i in range(200)]
    await asyncio.sleep(0)
    await s.close()
    assert all(isinstance(cid, int) for cid in await asyncio.gather(*calls))
    s2 = await open_store("sqlite://" + str(tmp_path / "bridge.db"))
    try:
        assert len(await s2.list_commands("hp-1", limit=500)) == 200
    finally:
        await s2.close()


@sqlite_test
async def test_a_sqlite_write_cancelled_before_its_batch_runs_is_not_committed(s, tmp_path):
    await add_device(s)
    slow_first_batch(s)
    first = asyncio.ensure_future(s.enqueue("hp-1", HP, WRITE, {7: 1}, "alice", T0))
    await asyncio.sleep(0.05)                      # its batch is on the worker now
    second = asyncio.ensure_future(s.enqueue("hp-1", HP, WRITE, {7: 2}, "alice", T0))
    await asyncio.sleep(0)
    second.cancel()
    await first
    assert [c.body for c in await s.list_commands("hp-1")] == [{7: 1}]


@sqlite_test
async def test_a_sqlite_read_sees_a_write_issued_before_it(s, tmp_path):
    await add_device(s)
    slow_first_batch(s)
    busy = asyncio.ensure_future(s.enqueue("hp-1", HP, WRITE, {7: 1}, "alice", T0))
    await asyncio.sleep(0.05)
    asked = asyncio.ensure_future(s.enqueue("hp-1", HP, WRITE, {7: 2}, "alice", T0 - 1))
    await asyncio.sleep(0)
    seen = await s.list_commands("hp-1")          # issued after the second write
    assert sorted(c.id for c in seen) == sorted([await busy, await asked])


def test_concurrent_sqlite_writes_share_transactions(tmp_path):
    async def main():
        s = await open_store("sqlite://" + str(tmp_path / "bridge.db"))
        batches = []
        drive_batch = s._drive_batch

        def counting(scripts):
            batches.append(len(scripts))
            return drive_batch(scripts)
        s._drive_batch = counting
        try:
            await add_device(s)
            ids = await asyncio.gather(*[s.enqueue("hp-1", HP, WRITE, {7: i}, "alice", T0)
                                         for i in range(50)])
            assert len(set(ids)) == 50 and len(await s.list_commands("hp-1")) == 50
            assert sum(batches) == 51 and len(batches) < 10, batches
        finally:
            await s.close()
    asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT))


@store_test
async def test_get_commands_keeps_the_order_asked_and_gives_none_for_unknown_ids(s, url):
    await add_device(s)
    ids = [await s.enqueue("hp-1", HP, WRITE, {7: i}, "alice", T0) for i in range(3)]
    got = await s.get_commands([ids[2], ids[0] + 10_000, ids[1]])
    assert [c and c.id for c in got] == [ids[2], None, ids[1]]


@store_test
async def test_next_pending_is_the_oldest_unexpired_and_changes_nothing(s, url):
    await add_device(s)
    await add_device(s, "pv-1")
    a = await s.enqueue("hp-1", HP, WRITE, {7: 1}, "alice", T0, expires_at=T0 + 10)
    b = await s.enqueue("hp-1", HP, WRITE, {7: 2}, "alice", T0 + 1)
    await s.enqueue("pv-1", 0x11, WRITE, {7: 3}, "alice", T0)
    assert (await s.next_pending("hp-1", T0 + 5)).id == a
    assert (await s.next_pending("hp-1", T0 + 5)).id == a
    assert (await s.next_pending("hp-1", T0 + 10)).id == b
    assert (await s.get_command(a)).status == "queued"
    assert await s.next_pending("nope", T0) is None


@store_test
async def test_two_concurrent_claimers_never_get_the_same_command(s, url):
    s2 = await open_store(url)
    try:
        await add_device(s)

        async def claimer(store, name):
            mine = []
            while True:
                c = (await store.claim_and_send_many([("hp-1", 1)], T0 + 1, name))[0]
                if c is None:
                    return mine
                assert c.claimed_by == name
                mine.append(c.id)
                await asyncio.sleep(0.002)   # sending it; lets the other writer in
        raced = False
        for round in range(5):   # a loaded machine may let one store drain a round alone
            ids = [await s.enqueue("hp-1", HP, WRITE, {7: i}, "alice", T0) for i in range(30)]
            results = await asyncio.gather(*[claimer(st, "%s-%d-%d" % (n, round, k))
                                             for st, n in ((s, "a"), (s2, "b")) for k in range(3)])
            claimed = [i for r in results for i in r]
            assert sorted(claimed) == ids
            assert len(set(claimed)) == len(claimed)
            assert all(r == sorted(r) for r in results)
            by_a = sum(len(r) for r in results[:3])
            if 0 < by_a < 30:
                raced = True   # both store objects got work: they really raced
                break
        assert raced, "the two stores never raced in 5 rounds"
    finally:
        await s2.close()


@store_test
async def test_release_claims_queues_again_only_what_that_instance_claimed_and_never_sent(s, url):
    await add_device(s)
    await add_device(s, "hp-2")
    a1 = await s.enqueue("hp-1", HP, WRITE, {7: 1}, "alice", T0)
    a2 = await s.enqueue("hp-1", HP, WRITE, {7: 2}, "alice", T0)
    b = await s.enqueue("hp-2", HP, WRITE, {7: 3}, "alice", T0)
    await claimed(s, "hp-1", T0 + 1, "bridge-a")   # what older bridges left
    await claimed(s, "hp-1", T0 + 1, "bridge-a")
    await sent(s, a2, 5, T0 + 2)   # went out: stays sent
    await claimed(s, "hp-2", T0 + 1, "bridge-b")
    assert await s.release_claims("bridge-a") == ["hp-1"]
    got = {c: (await s.get_command(c)) for c in (a1, a2, b)}
    assert (got[a1].status, got[a1].claimed_by) == ("queued", None)
    assert got[a2].status == "sent"
    assert (got[b].status, got[b].claimed_by) == ("claimed", "bridge-b")
    assert (await s.claim_and_send_many([("hp-1", 6)], T0 + 3, "bridge-a"))[0].id == a1


@store_test
async def test_find_sent_matches_an_answer_to_its_command(s, url):
    await add_device(s)
    await add_device(s, "pv-1")
    a = await s.enqueue("hp-1", HP, WRITE, {7: 1}, "alice", T0)
    b = await s.enqueue("pv-1", 0x11, WRITE, {7: 1}, "alice", T0)
    got = await s.claim_and_send_many([("hp-1", 7), ("pv-1", 7)], T0 + 1, "bridge-a")
    assert [c.id for c in got] == [a, b]
    assert (await s.find_sent("hp-1", 7)).id == a
    assert (await s.find_sent("pv-1", 7)).id == b
    assert await s.find_sent("hp-1", 8) is None
    await s.complete(a, "done", None, T0 + 2)
    assert await s.find_sent("hp-1", 7) is None


@store_test
async def test_complete_records_outcome_once(s, url):
    await add_device(s)
    cid = await s.enqueue("hp-1", HP, 1, [7, 8], "alice", T0, timeout=30)
    assert (await s.claim_and_send_many([("hp-1", 1)], T0 + 1, "bridge-a"))[0].id == cid
    assert await s.complete(cid, "done", {7: 215, 8: 352}, T0 + 2) is True
    assert await s.complete(cid, "timeout", None, T0 + 40) is False
    c = await s.get_command(cid)
    assert (c.status, c.result, c.completed_at) == ("done", {7: 215, 8: 352}, T0 + 2)


@store_test
async def test_complete_rejects_unknown_commands_and_statuses(s, url):
    await add_device(s)
    cid = await s.enqueue("hp-1", HP, WRITE, {7: 1}, "alice", T0)
    with pytest.raises(S.UnknownCommand, match="9999"):
        await s.complete(9999, "done", None, T0)
    for bad in ("sent", "queued", "ok", None):
        with pytest.raises(S.InvalidValue, match="status"):
            await s.complete(cid, bad, None, T0)
    assert await s.complete(cid, "rejected", [6, "not paired"], T0 + 1) is True
    assert (await s.get_command(cid)).result == [6, "not paired"]


@store_test
async def test_list_commands_newest_first_with_filters(s, url):
    await add_device(s)
    await add_device(s, "pv-1")
    a = await s.enqueue("hp-1", HP, WRITE, {7: 1}, "alice", T0)
    b = await s.enqueue("pv-1", 0x11, WRITE, {7: 1}, "bob", T0)
    c = await s.enqueue("hp-1", HP, WRITE, {7: 2}, "alice", T0)
    await s.complete(a, "error", [4], T0 + 1)
    assert [x.id for x in await s.list_commands()] == [c, b, a]
    assert [x.id for x in await s.list_commands(device="hp-1")] == [c, a]
    assert [x.id for x in await s.list_commands(status="queued")] == [c, b]
    assert [x.id for x in await s.list_commands("hp-1", status="error")] == [a]
    assert [x.id for x in await s.list_commands(limit=2)] == [c, b]
    with pytest.raises(S.InvalidValue):
        await s.list_commands(limit=0)
    with pytest.raises(S.InvalidValue):
        await s.list_commands(status="lost")


@store_test
async def test_expire_finishes_undelivered_commands_past_their_expiry(s, url):
    await add_device(s)
    a = await s.enqueue("hp-1", HP, WRITE, {7: 1}, "alice", T0, expires_at=T0 + 10)
    b = await s.enqueue("hp-1", HP, WRITE, {7: 2}, "alice", T0, expires_at=T0 + 10)
    c = await s.enqueue("hp-1", HP, WRITE, {7: 3}, "alice", T0, expires_at=T0 + 10)
    d = await s.enqueue("hp-1", HP, WRITE, {7: 4}, "alice", T0, expires_at=T0 + 100)
    e = await s.enqueue("hp-1", HP, WRITE, {7: 5}, "alice", T0)
    await claimed(s, "hp-1", T0 + 1, "bridge-a")       # a
    await sent(s, c, 5, T0 + 2)                        # sent in time: not expired
    assert await s.expire(T0 + 9) == []
    assert await s.expire(T0 + 10) == [a, b]
    assert await s.expire(T0 + 11) == []
    statuses = [(await s.get_command(i)).status for i in (a, b, c, d, e)]
    assert statuses == ["expired", "expired", "sent", "queued", "queued"]
    assert (await s.get_command(a)).completed_at == T0 + 10


@store_test
async def test_time_out_finishes_sent_commands_without_answer(s, url):
    await add_device(s)
    a = await s.enqueue("hp-1", HP, WRITE, {7: 1}, "alice", T0, timeout=30)
    b = await s.enqueue("hp-1", HP, WRITE, {7: 2}, "alice", T0, timeout=30)
    c = await s.enqueue("hp-1", HP, WRITE, {7: 3}, "alice", T0)
    for cid, mid, t in ((a, 1, T0), (b, 2, T0 + 20), (c, 3, T0)):
        assert (await s.claim_and_send_many([("hp-1", mid)], t, "bridge-a"))[0].id == cid
    assert await s.time_out(T0 + 29) == []
    assert await s.time_out(T0 + 30) == [a]
    assert await s.time_out(T0 + 10000) == [b]
    assert (await s.get_command(c)).status == "sent"
    assert (await s.get_command(a)).completed_at == T0 + 30


@store_test
async def test_bad_enqueue_raises_and_queues_nothing(s, url):
    await add_device(s)
    with pytest.raises(S.UnknownDevice, match="'ghost'"):
        await s.enqueue("ghost", HP, WRITE, {7: 1}, "alice", T0)
    cases = [(HP, NOTIFY, {7: 1}, "alice", T0, None, None, "op"),
             (HP, 0, {7: 1}, "alice", T0, None, None, "op"),
             (255, WRITE, {7: 1}, "alice", T0, None, None, "service"),
             (HP, WRITE, {7: {1, 2}}, "alice", T0, None, None, "wire value"),
             (HP, WRITE, {7: 1}, "", T0, None, None, "actor"),
             (HP, WRITE, {7: 1}, "alice", T0, T0, None, "expires_at"),
             (HP, WRITE, {7: 1}, "alice", T0, None, 0, "timeout"),
             (HP, WRITE, {7: 1}, "alice", None, None, None, "now")]
    for sid, op, body, actor, now, exp, tmo, what in cases:
        with pytest.raises(S.InvalidValue, match=what):
            await s.enqueue("hp-1", sid, op, body, actor, now, expires_at=exp, timeout=tmo)
    assert await s.list_commands() == []


# ------------------------------------------------------------------ plans

PLAN = [7, T0, T0 + 7200, 10, {HP: {6: 3}}]


@store_test
async def test_enqueue_plan_queues_a_push_and_records_the_plan(s, url):
    await add_device(s)
    cid = await s.enqueue_plan("hp-1", PLAN, "alice", T0 - 60, expires_at=T0 + 600)
    c = await s.get_command(cid)
    assert (c.service, c.op, c.body, c.actor) == (0x04, INVOKE, [1, PLAN], "alice")
    [p] = await s.list_plans("hp-1", T0)
    assert p == S.Plan("hp-1", 7, T0, T0 + 7200, 10, {HP: {6: 3}}, "alice", "queued", cid,
                       T0 - 60, T0 - 60)


@store_test
async def test_plan_becomes_accepted_when_its_push_is_done(s, url):
    await add_device(s)
    cid = await s.enqueue_plan("hp-1", PLAN, "alice", T0)
    assert (await s.claim_and_send_many([("hp-1", 3)], T0 + 1, "bridge-a"))[0].id == cid
    await s.complete(cid, "done", None, T0 + 2)
    [p] = await s.list_plans("hp-1", T0 + 3)
    assert (p.status, p.updated_at) == ("accepted", T0 + 2)


@store_test
async def test_failed_and_expired_plans_are_not_active(s, url):
    await add_device(s)
    a = await s.enqueue_plan("hp-1", [1, T0, T0 + 100, 5, {HP: {6: 1}}], "alice", T0)
    b = await s.enqueue_plan("hp-1", [2, T0, T0 + 9000, 5, {HP: {6: 2}}], "alice", T0,
                             expires_at=T0 + 60)
    c = await s.enqueue_plan("hp-1", [3, T0 + 50, T0 + 9000, 5, {HP: {6: 3}}], "alice", T0)
    await s.complete(a, "done", None, T0 + 1)
    await s.complete(c, "error", [4, "plan expiry"], T0 + 1)
    assert [p.plan_id for p in await s.list_plans("hp-1", T0 + 10)] == [1, 2]
    assert await s.expire(T0 + 60) == [b]
    assert [p.plan_id for p in await s.list_plans("hp-1", T0 + 60)] == [1]
    assert await s.list_plans("hp-1", T0 + 100) == []
    every = await s.list_plans("hp-1", T0 + 100, include_inactive=True)
    assert [(p.plan_id, p.status) for p in every] == [(1, "accepted"), (2, "failed"),
                                                     (3, "failed")]


@store_test
async def test_record_plan_replaces_a_plan_with_the_same_id(s, url):
    await add_device(s)
    await s.record_plan("hp-1", 7, T0, T0 + 100, 10, {HP: {6: 1}}, "alice", T0)
    await s.record_plan("hp-1", 7, T0, T0 + 200, 20, {HP: {6: 2}}, "bob", T0 + 5,
                        status="accepted")
    [p] = await s.list_plans("hp-1", T0)
    assert (p.expiry, p.primacy, p.entries, p.actor, p.status) == (
        T0 + 200, 20, {HP: {6: 2}}, "bob", "accepted")
    assert (p.created_at, p.updated_at, p.command_id) == (T0, T0 + 5, None)


@store_test
async def test_cancelled_plan_leaves_the_active_list(s, url):
    await add_device(s)
    await s.record_plan("hp-1", 7, T0, T0 + 100, 10, {HP: {6: 1}}, "alice", T0)
    assert await s.set_plan_status("hp-1", 7, "cancelled", T0 + 1) is True
    assert await s.set_plan_status("hp-1", 8, "cancelled", T0 + 1) is False
    assert await s.list_plans("hp-1", T0 + 2) == []


@store_test
async def test_bad_plans_raise_and_store_nothing(s, url):
    await add_device(s)
    for plan, what in (([7, T0, T0, 10, {}], "expiry"), ([0, T0, T0 + 1, 10, {}], "plan id"),
                       ([7, T0, T0 + 1, 256, {}], "primacy"), ([7, T0, T0 + 1, 1, []], "entries"),
                       ([7, T0, T0 + 1, 1], "plan must be"), ([7, -1, T0, 1, {}], "start")):
        with pytest.raises(S.InvalidValue, match=what):
            await s.enqueue_plan("hp-1", plan, "alice", T0 - 10)
    with pytest.raises(S.UnknownDevice):
        await s.record_plan("ghost", 7, T0, T0 + 100, 10, {}, "alice", T0)
    with pytest.raises(S.UnknownDevice):
        await s.enqueue_plan("ghost", PLAN, "alice", T0)
    assert await s.list_plans("hp-1", T0, include_inactive=True) == []
    assert await s.list_commands() == []


# ---------------------------------------------------------------- pairing

@store_test
async def test_pairing_roster_add_replace_and_remove(s, url):
    await add_device(s)
    await s.add_pairing("hp-1", "owner-app", "owner", "psk-id-1", T0)
    await s.add_pairing("hp-1", "vpp", "aggregator", b"\x07kid", T0 + 1)
    assert await s.role_of("hp-1", "vpp") == "aggregator"
    assert await s.role_of("hp-1", "stranger") is None
    await s.add_pairing("hp-1", "vpp", "monitor", None, T0 + 2)
    assert await s.pairings("hp-1") == [
        S.Pairing("hp-1", "owner-app", "owner", "psk-id-1", T0),
        S.Pairing("hp-1", "vpp", "monitor", None, T0 + 1)]
    assert await s.remove_pairing("hp-1", "vpp") is True
    assert await s.remove_pairing("hp-1", "vpp") is False
    assert [p.controller for p in await s.pairings("hp-1")] == ["owner-app"]


@store_test
async def test_bad_pairings_raise_and_store_nothing(s, url):
    await add_device(s)
    with pytest.raises(S.UnknownDevice):
        await s.add_pairing("ghost", "vpp", "owner", None, T0)
    with pytest.raises(S.InvalidValue, match="role"):
        await s.add_pairing("hp-1", "vpp", "admin", None, T0)
    with pytest.raises(S.InvalidValue, match="credential"):
        await s.add_pairing("hp-1", "vpp", "owner", 42, T0)
    assert await s.pairings("hp-1") == []


# ------------------------------------------------------------------ audit

@store_test
async def test_audit_log_newest_first_with_limit_and_target(s, url):
    ids = [await s.audit("alice", "write", "hp-1", {"objects": [7]}, T0),
           await s.audit("bob", "pair", "pv-1", {"role": "owner"}, T0 + 1),
           await s.audit("system", "start", None, None, T0 + 2)]
    log = await s.list_audit()
    assert [e.id for e in log] == ids[::-1]
    assert log[2] == S.AuditEntry(ids[0], T0, "alice", "write", "hp-1", {"objects": [7]})
    assert [e.action for e in await s.list_audit(limit=2)] == ["start", "pair"]
    assert [e.id for e in await s.list_audit(target="pv-1")] == [ids[1]]
    with pytest.raises(S.InvalidValue, match="actor"):
        await s.audit("", "write", None, None, T0)
    assert len(await s.list_audit()) == 3


# ---------------------------------------------------------------- backends

def test_sqlite_database_is_in_wal_mode(tmp_path):
    path = tmp_path / "b.db"

    async def main():
        s = await open_store("sqlite://" + str(path))
        await s.close()
    asyncio.run(main())
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@store_test
async def test_a_new_device_appears_with_its_first_pairings_and_audit_in_one_step(s, url):
    assert await s.upsert_device("hp-1", [[HP, 1, 0]], [], 0, T0,
                                 first_pairings=[("operator", "owner"), ("vpp", "aggregator")],
                                 first_audit=("bridge", "register", {"via": "coap"})) is True
    assert await s.role_of("hp-1", "operator") == "owner"
    assert await s.role_of("hp-1", "vpp") == "aggregator"
    assert [a.action for a in await s.list_audit(target="hp-1")] == ["register"]
    # an update of a known device adds neither pairings nor audit
    await s.remove_pairing("hp-1", "vpp")
    assert await s.upsert_device("hp-1", [[HP, 1, 0]], [], 0, T0 + 1,
                                 first_pairings=[("vpp", "aggregator")],
                                 first_audit=("bridge", "register", {})) is False
    assert await s.role_of("hp-1", "vpp") is None
    assert len(await s.list_audit(target="hp-1")) == 1


@store_test
async def test_first_pairings_with_an_unknown_role_register_nothing(s, url):
    with pytest.raises(S.InvalidValue):
        await s.upsert_device("hp-1", [[HP, 1, 0]], [], 0, T0, first_pairings=[("x", "emperor")])
    assert await s.get_device("hp-1") is None


# ---------------------------------------------------------------- identity, deletion, pages

@store_test
async def test_a_refused_claim_raises_and_changes_nothing(s, url):
    await s.upsert_device("hp-1", [[HP, 1, 0]], [], 0, T0, credential_ref="dtls:fleet")
    with pytest.raises(S.ClaimRefused) as e:
        await s.upsert_device("hp-1", [[HP, 2, 0]], [], 1, T0 + 5, credential_ref="coap:10.0.0.9",
                              claim=lambda held: held == "coap:10.0.0.9")
    assert e.value.held == "dtls:fleet"
    d = await s.get_device("hp-1")
    assert (d.services, d.flags, d.last_seen, d.credential_ref) == ([[HP, 1, 0]], 0, T0,
                                                                    "dtls:fleet")


@store_test
async def test_deleting_a_device_removes_all_kept_about_it_and_audits_it(s, url):
    await add_device(s, "hp-1")
    await add_device(s, "hp-2")
    await s.add_telemetry([("hp-1", HP, 8, T0, 352)])
    await s.enqueue("hp-1", HP, 2, {7: 215}, "operator", T0)
    await s.record_plan("hp-1", 1, T0, T0 + 60, 1, {HP: {7: 1}}, "operator", T0)
    await s.add_pairing("hp-1", "alice", "owner", None, T0)
    await s.set_groups("hp-1", ["north"])
    assert await s.delete_device("hp-1", "operator", T0 + 1, {"why": "test"}) is True
    assert await s.get_device("hp-1") is None
    assert not await s.latest("hp-1")
    assert await s.list_commands("hp-1") == [] and await s.pairings("hp-1") == []
    assert await s.devices_in_group("north") == []
    assert [d.id for d in await s.list_devices()] == ["hp-2"]
    entry = (await s.list_audit(target="hp-1"))[0]
    assert (entry.actor, entry.action, entry.detail) == ("operator", "delete", {"why": "test"})
    assert await s.delete_device("hp-1", "operator", T0 + 2) is False


@store_test
async def test_device_pages_follow_ids_and_filters(s, url):
    await s.upsert_devices([("d-%02d" % i, [[HP, 1, 0]], [], 0) for i in range(12)], T0)
    page = await s.list_devices_page(None, 5)
    assert [d.id for d in page] == ["d-00", "d-01", "d-02", "d-03", "d-04"]
    assert [d.id for d in await s.list_devices_page("d-09", 5)] == ["d-10", "d-11"]
    for i in (2, 4, 9):
        await s.add_pairing("d-%02d" % i, "watcher", "monitor", None, T0)
    await s.set_groups("d-04", ["north"])
    await s.set_groups("d-05", ["north"])
    assert [d.id for d in await s.list_devices_page("d-02", 5, controller="watcher")] == [
        "d-04", "d-09"]
    assert [d.id for d in await s.list_devices_page(None, 5, group="north")] == ["d-04", "d-05"]
    both = await s.list_devices_page(None, 5, group="north", controller="watcher")
    assert [(d.id, d.groups) for d in both] == [("d-04", ["north"])]
    await s.set_presence("d-05", "offline", T0 + 1)
    assert [d.id for d in await s.list_devices_page(None, 5, presence="offline")] == ["d-05"]


# ---- telemetry frames of one group commit (spec 3.1: a time's values are kept as first stored)

@store_test
async def test_frames_of_one_batch_giving_a_time_other_values_than_an_earlier_frame_are_refused(s, url):
    await add_device(s)
    t = T0 + 100
    frames = [[("hp-1", HP, 11, t, 215)],
              [("hp-1", HP, 11, t, 215), ("hp-1", HP, 12, t, 1)],   # agrees
              [("hp-1", HP, 11, t, 216), ("hp-1", HP, 13, t, 2)]]   # contradicts
    assert await s.add_telemetry_frames(frames) == [False, False, True]
    assert await s.history("hp-1", HP, 11) == [(t, 215)]
    assert await s.history("hp-1", HP, 12) == [(t, 1)]
    assert await s.history("hp-1", HP, 13) == []
    assert (await s.latest("hp-1")).get((HP, 13)) is None


@store_test
async def test_a_frame_repeating_stored_values_is_taken_and_stored_once(s, url):
    await add_device(s)
    t = T0 + 100
    frame = [("hp-1", HP, 11, t, 0.1 + 0.2), ("hp-1", HP, 12, t, "on"), ("hp-1", HP, 13, t, 7)]
    assert await s.add_telemetry_frames([frame]) == [False]
    assert await s.add_telemetry_frames([frame, [("hp-1", HP, 11, t + 1, 1.5)]]) == [False, False]
    assert await s.history("hp-1", HP, 11) == [(t, 0.1 + 0.2), (t + 1, 1.5)]
    assert await s.history("hp-1", HP, 12) == [(t, "on")]


@store_test
async def test_a_frame_giving_a_stored_time_other_values_is_refused_and_changes_nothing(s, url):
    await add_device(s)
    t = T0 + 100
    assert await s.add_telemetry_frames([[("hp-1", HP, 11, t, 215)]]) == [False]
    later = [("hp-1", HP, 11, t + 5, 220)]
    contradicting = [("hp-1", HP, 11, t, 300), ("hp-1", HP, 12, t + 9, 1)]
    assert await s.add_telemetry_frames([later, contradicting]) == [False, True]
    assert await s.history("hp-1", HP, 11) == [(t, 215), (t + 5, 220)]
    assert await s.history("hp-1", HP, 12) == []
    latest = await s.latest("hp-1")
    assert latest[(HP, 11)] == (220, t + 5) and (HP, 12) not in latest
