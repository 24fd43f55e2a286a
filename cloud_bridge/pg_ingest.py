"""PostgreSQL's usual telemetry batch: one statement per slice of devices, each slice's
records built while the server stores the slice before it.

The usual batch (schema 5) is one frame per device, every frame new. The path before
took, per batch, a COPY of the frames in a savepoint, then an upsert reading those
frames back by their keys to move the latest values forward, and built the whole
COPY stream before sending any of it, so the client's core and the server's took
turns. Here (store_postgres takes this path once the batch's rows are checked,
grouped by frame and its partitions made, as before):

- the frames go in as one array parameter of telemetry_frame's row type
  (pg_binary.frame_records), and one statement INSERTs them and upserts the latest
  values from the rows its INSERT returns (no read back, no savepoint, no COPY's
  round trips): UPSERT_FRAMES, the upsert's text pg_latest's;
- the batch is cut into slices of SLICE_DEVICES devices in device order (the order
  every writer locks latest rows in), and while the server runs one slice's
  statement (the first: the unknown-device check) a worker thread builds the next
  slice's records (Overlap): both cores work at once.

A frame stored already makes the INSERT fail with a unique violation: the whole
transaction is rolled back (nothing of the batch stays) and the store takes the
path before, which sorts such frames out (spec 3.1). Any other failure, in the
server or in building a slice, rolls the batch's transaction back too. Durability
is unchanged: one transaction per batch, committed before add_telemetry returns.

    await store_frames(store, ids, frames)   # values stored; None: take the path before
    Overlap(sql, params, fn, args)   # a statement, fn(*args) in a thread meanwhile
    run_overlap(cur, stmt, offload)  # how the store's _drive runs an Overlap
"""
import asyncio
from collections import namedtuple
from operator import itemgetter

import psycopg

from .gc_pause import gc_paused
from .pg_binary import frame_records, text_array
from .pg_latest import one_frame_upsert
from .store import Q, Result, UnknownDevice

# devices per slice: big enough that a statement's fixed cost (a round trip, the
# plan) stays small, small enough that the first slice's Python work (not overlapped)
# is a small part of a batch (docs/benchmarks.md, issue 15, eighth pass)
SLICE_DEVICES = 500
# telemetry_frame's columns, as the records are built (pg_binary.frame_records)
FRAME_TYPES = [25, 21, 701, 1007, 199]    # text, smallint, float8, integer[], json[]

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
    """A frame of the batch is stored already: its transaction is rolled back and the
    store takes the path before."""


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


async def store_frames(store, ids, frames):
    """Store the usual batch (module docstring): `frames` as pg_binary.frames_of makes
    them, one per device, every value once, their partitions made; `ids` their devices,
    sorted. The values stored, or None when a frame was stored already (nothing of
    the batch stays: the path before sorts that out)."""
    if store._frame_rowtype is None:
        store._frame_rowtype = await _rowtype(store)
    rowtype = store._frame_rowtype
    if not rowtype:
        return None
    frames = sorted(frames, key=itemgetter(0))   # by device: the lock order
    k = -(-len(frames) // SLICE_DEVICES)
    cuts = [len(frames) * i // k for i in range(k + 1)]
    parts = [frames[a:b] for a, b in zip(cuts, cuts[1:])]

    def build(part):
        with gc_paused():
            return frame_records(part, rowtype)

    def script():
        # the unknown-device check, the first slice's records built meanwhile
        r = yield Overlap(UNKNOWN, (text_array(ids),), build, (parts[0],))
        unknown, made = r.rows
        if unknown:
            raise UnknownDevice([x[0] for x in unknown])
        for i in range(len(parts)):
            last = i + 1 == len(parts)
            r = yield Overlap(UPSERT_FRAMES, (made,), None if last else build,
                              () if last else (parts[i + 1],))
            made = r.rows[1]
        return sum(len(f[3]) for f in frames)
    try:
        return await store._run(script)
    except Fallback:
        return None
