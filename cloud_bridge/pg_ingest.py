"""PostgreSQL's usual telemetry batch: one statement per slice of devices, each slice
checked and built while the server stores the slice before it.

The usual batch (schema 5) is one frame per device, every frame new. The path before
took, per batch, the whole batch's Python work (checking and encoding the rows,
grouping them by frame, building the COPY stream) and then, in the transaction, a
COPY of the frames in a savepoint and an upsert reading those frames back by their
keys to move the latest values forward: the client's core and the server's took
turns. Here:

- the rows are sorted by device (stable: a frame's rows stay together) and cut into
  slices of SLICE_DEVICES devices, in device order (the order every writer locks
  latest rows in);
- each slice's frames go as one array parameter of telemetry_frame's row type
  (pg_binary.frame_records), and one statement INSERTs them and upserts the latest
  values from the rows its INSERT returns (no read back, no savepoint, no COPY's
  round trips): UPSERT_FRAMES, the upsert's text pg_latest's;
- while the server runs one slice's statement (the first: the unknown-device
  check), a worker thread checks, encodes, groups and builds the next slice
  (Overlap): both cores work at once.

The path before takes the batch, in a new transaction, when it is not the usual
one: a slice not one frame per device or with a value twice, the partition of a
slice's median time or the next one not made yet (that path makes them), rows
that cannot be sorted by device, or a frame stored already (the INSERT's unique
violation). Whatever was stored of the batch by then is rolled back with its
transaction; a row that fails its checks sends the batch there too, which raises
the error naming the row by its place in the batch. Durability is unchanged: one
transaction per batch, committed before add_telemetry returns.

    await store_rows(store, rows)    # values stored; None: take the path before
    Overlap(sql, params, fn, args)   # a statement, fn(*args) in a thread meanwhile
    run_overlap(cur, stmt, offload)  # how the store's _drive runs an Overlap
"""
import asyncio
import math
from bisect import bisect_left
from collections import namedtuple
from operator import itemgetter

import psycopg

from .gc_pause import gc_paused
from .pg_binary import frame_records, frames_of, text_array
from .pg_latest import one_frame_upsert
from .store import (InvalidValue, Q, Result, UnknownDevice, check_device,
                     encode_telemetry)

# devices per slice: big enough that a statement's fixed cost (a round trip, the
# plan) stays small, small enough that the first slice's Python work (not overlapped)
# is a small part of a batch (docs/benchmarks.md, issue 15, eighth pass)
SLICE_DEVICES = 500
# telemetry_frame's columns, as the records are built (pg_binary.frame_records)
FRAME_TYPES = [25, 21, 701, 1007, 199]    # text, smallint, float8, integer[], json[]

_DEVICE = itemgetter(0)     # a row's device
_FRAME = itemgetter(0, 1, 3)    # its frame: device, service, t
# one slice: its frames INSERTed (parameter: frame_records), the latest values upserted
# from the rows the INSERT returns, in device order
UPSERT_FRAMES = (
    "WITH ins AS (INSERT INTO telemetry_frame (device, service, t, objects, vals) "
    "SELECT * FROM unnest(%b::telemetry_frame[]) "
    "RETURNING device, service, t, objects, vals) " + one_frame_upsert(
        "(SELECT * FROM ins ORDER BY device) k "
        "CROSS JOIN LATERAL (SELECT k.objects, k.vals) f"))
# the batch's devices not registered (parameter: text_array of their ids)
UNKNOWN = ("SELECT d FROM unnest(%b::text[]) AS d "
           "WHERE NOT EXISTS (SELECT 1 FROM devices WHERE id = d)")

# a statement (sql with psycopg placeholders, binary parameters) run while fn(*args)
# runs in a worker thread (fn None: nothing); its Result's rows: (rows, fn's result)
Overlap = namedtuple("Overlap", "sql params fn args")


class Fallback(Exception):
    """The batch is not the usual one: its transaction is rolled back and the store
    takes the path before."""


async def run_overlap(cur, stmt, offload):
    """Run an Overlap on a cursor: the statement, and fn in a worker thread
    meanwhile. A unique violation (a frame stored already) raises Fallback."""
    async def server():
        try:
            await cur.execute(stmt.sql, stmt.params)
        except psycopg.errors.UniqueViolation:
            raise Fallback() from None
        return await cur.fetchall() if cur.description else []
    if stmt.fn is None:
        return Result((await server(), None), cur.rowcount)
    sent = asyncio.ensure_future(server())
    try:
        made = await offload(stmt.fn, *stmt.args)
    finally:
        rows = await sent     # also when fn raised: the connection must be idle again
    return Result((rows, made), cur.rowcount)


async def _rowtype(store):
    """telemetry_frame's row type oid, 0 if its columns are not the records' (then
    this path is never taken)."""
    def script():
        r = yield Q("SELECT 'telemetry_frame'::regtype::oid, array_agg(atttypid::int "
                    "ORDER BY attnum) FROM pg_attribute WHERE attrelid = "
                    "'telemetry_frame'::regclass AND attnum > 0 AND NOT attisdropped", ())
        return r.rows[0]
    oid, types = await store._run(script, write=False)
    return oid if types == FRAME_TYPES else 0


def _cut(rows):
    """(the batch's distinct devices, sorted; its rows in slices of about SLICE_DEVICES
    devices, in device order), or None when a device is in several frames or the rows
    cannot be sorted by device (a row that is not a sequence, a device id other than
    a str: the path before says what is wrong). A device id failing its check raises."""
    try:
        ids = sorted(set(map(_DEVICE, rows)))
        if len(set(map(_FRAME, rows))) != len(ids):
            return None     # a device in several frames: not the usual batch
        ordered = sorted(rows, key=_DEVICE)    # stable: a frame's rows stay together
    except (TypeError, IndexError, KeyError):
        return None
    for dev in ids:
        check_device(dev)
    k = -(-len(ids) // SLICE_DEVICES)
    cuts = [0] + [bisect_left(ordered, ids[len(ids) * i // k], key=_DEVICE)
                  for i in range(1, k)] + [len(ordered)]
    return ids, [ordered[a:b] for a, b in zip(cuts, cuts[1:])]


def _slice(rows, rowtype, width, ready, never):
    """A slice's (values, records): its rows checked and encoded, grouped by frame and
    built as frame_records; None when it is not one frame per device with every value
    once, or the partition of its median time or the next one is not made yet
    (`ready`, `never`: partition numbers made, that cannot be made; `width`: the
    seconds of one): the path before makes them. Also None when a row fails its
    checks: the path before raises that, naming the row by its place in the batch."""
    with gc_paused():
        try:
            out = encode_telemetry(rows)
        except InvalidValue:
            return None     # the path before raises it, naming the row by its batch place
        frames, twice = frames_of(out)
        if twice or len({f[0] for f in frames}) != len(frames):
            return None
        k = math.floor(sorted(f[2] for f in frames)[len(frames) // 2] / width)
        if not all(x in ready or x in never for x in (k, k + 1)):
            return None
        return len(out), frame_records(frames, rowtype)


async def store_rows(store, rows):
    """Store the usual batch (module docstring) from its rows as add_telemetry takes
    them: the values stored, or None when the batch is not the usual one (nothing of
    it stored: the path before takes it)."""
    if store._frame_rowtype is None:
        store._frame_rowtype = await _rowtype(store)
    rowtype = store._frame_rowtype
    if not rowtype:
        return None
    cut = await store._offload(_cut, rows)
    if cut is None:
        return None
    ids, parts = cut
    how = (rowtype, store.partition_seconds, store._parts, store._no_part)

    def script():
        # the unknown-device check, the first slice built meanwhile
        r = yield Overlap(UNKNOWN, (text_array(ids),), _slice, (parts[0],) + how)
        unknown, made = r.rows
        if unknown:
            raise UnknownDevice([x[0] for x in unknown])
        count = 0
        for i in range(len(parts)):
            if made is None:
                raise Fallback()
            last = i + 1 == len(parts)
            r = yield Overlap(UPSERT_FRAMES, (made[1],), None if last else _slice,
                              () if last else (parts[i + 1],) + how)
            count += made[0]
            made = r.rows[1]
        return count
    try:
        return await store._run(script)
    except Fallback:
        return None
