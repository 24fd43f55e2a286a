"""The store on PostgreSQL: psycopg 3 with an async connection pool.

Several bridge instances may share one database: the command queue hands a
command to one claimer only (SELECT ... FOR UPDATE SKIP LOCKED), concurrent
telemetry writers take latest-table row locks in one order, schema creation
is serialised by an advisory lock, and a transaction that still meets a
deadlock or serialisation failure is retried (its script is re-run from the
start). Telemetry history goes in by one COPY per batch (in a savepoint; a
batch holding rows already stored falls back to one INSERT ... SELECT FROM
unnest(arrays) ON CONFLICT DO NOTHING), the latest values by one unnest
upsert; the latest table leaves half of each page free so that its
updates stay HOT (no index update). JSON columns use the `json` type (the
text is kept as written), so floats such as 1e+20 keep their type. The COPY
stream and the upsert's arrays are built here in PostgreSQL's binary form.

The latest values are one row per device (schema version 3): `latest_device`
holds a device's points (service, object, t, value) in one array, merged by
the function spot_latest_merge (per object the greatest t, the stored point
on equal t), so a batch from N devices upserts N rows, not one per value.
Readers see the view `latest` (device, service, object, t, value), one row
per object as the table of schema 1 and 2 was; a database of those keeps its
table and is written one row per object (docs/benchmarks.md gives the step
that moves it). Readers across the fleet do not unnest every device's points:
the same upsert keeps beside them `fleet` (the points the fleet figures, the
power sample and the alarm flag read) and `alarm` (the device list's alarm
filter, by a partial index), see store_fleet.

Telemetry history is partitioned by time (schema version 2): one partition
per `partition_seconds` (a day by default) of `t`, created ahead as batches
arrive (the partition of a batch's median time and the next one), plus a
DEFAULT partition for rows whose range has none (a device clock far off, data
older than the first partition). Retention drops whole partitions and deletes
only what is left before the cut (in the default partition and the partition
the cut falls in), so prune_telemetry keeps its meaning: every row older than
the cut goes, the latest values stay. COPY sends rows in binary. A database
made before partitioning (schema version 1, telemetry one plain table) keeps
working as it is: rows go into that table and retention deletes rows; the
bridge logs that it is not partitioned (docs/benchmarks.md says how to move
the data to a partitioned table).

Telemetry history is one row per frame (schema version 4): `telemetry_frame`
(device, service, t, objects integer[], vals json[]), keyed (device, service,
t), so a batch from N devices COPYs N rows and its key index takes N entries,
not one per value. Readers see the view `telemetry` (device, service, object,
t, value), one row per value as the table of schema 1-3 was (history reads by
the key's (device, service) and t, then picks the object); a delete of values
deletes their whole frames. A frame whose (device, service, t) is stored
already takes the COPY's fallback: values of objects the stored frame lacks are
added to it, stored ones stay (spec 3.1's refusal is decided before, as for
one row per value). A database of schema 1-3 keeps its table of one row per
value (docs/benchmarks.md gives the step that moves it).

Latest rows keep their points' keys and greatest t (schema version 5, pg_latest):
a device's usual frame (the stored objects, a later time) replaces its points
without the merge function; other rows merge as before. A database of schema 3
or 4 merges every row until docs/benchmarks.md's step adds the two columns.
On such a database the usual batch (one frame per device, every frame new) skips
all that: pg_ingest sends it as slices of devices, each one statement INSERTing
its frames and upserting the latest values from them, the next slice checked and
built meanwhile; any other batch (a frame stored already, say) is rolled back
from there and takes the COPY.

Round trips: the pool checks a connection it hands out without one (_alive); a
batch whose writes are one statement (a registration with its routes, a round of
claims, sends or completions) runs as its own transaction, without BEGIN and
COMMIT (_run_single); the batches' column arrays go in binary (pg_binary).

Needs: pip install "psycopg[binary,pool]".
"""
import hashlib
import logging
import math
import re
import select
import time
from collections import namedtuple

import psycopg
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .pg_binary import (DUMPERS, copy_payload, frame_copy_payload, frame_keys, frames_of,
                        row_arrays, text_array)
from .gc_pause import gc_paused
from .pg_ingest import UNKNOWN, Overlap, run_overlap, store_rows
from .pg_latest import FLEET_POINT, UPSERT_ONE_FRAME, upsert_grouped
from .store_fleet import alarm_point_sql
from .store import (Store, Copy, Many, Q, Result, StoreError, StoreUnavailable, UnknownDevice,
                    PG_INSERT_TELEMETRY_IGNORING, TELEMETRY_COLUMNS, check_device, check_time,
                    encode_telemetry, latest_of, prepare_telemetry, s_conflicts)

log = logging.getLogger("spot.store")

RETRIES = 3
SCHEMA = 5                  # 1: telemetry one plain table; 2: partitioned by time;
                            # 3: latest values one row per device; 4: history one
                            # row per frame; 5: latest rows keep keys, t_max (pg_latest)
PARTITION_SECONDS = 86400   # one telemetry partition per day of t
LOCK_SCHEMA, LOCK_PARTITIONS = 7012, 7013   # advisory locks
# a telemetry batch from more devices than this runs without JIT compilation: the
# planner's cost for the latest values' upsert passes jit_above_cost from about 3 500
# devices, and compiling it took 40-50 ms a batch (docs/benchmarks.md, schema 5)
NO_JIT_DEVICES = 2000
COPY_TYPES = {"telemetry": ["text", "int2", "int4", "float8", "text"]}   # json as its text
FRAME_COLUMNS = ("device", "service", "t", "objects", "vals")
# a statement with psycopg placeholders (%b: the parameter goes in binary, which
# for arrays of thousands of values is about half the cost of the text form)
QB = namedtuple("QB", "sql params")
_PART = re.compile(r"telemetry_(\d+)_(\d+)$")

DDL = (
    """CREATE TABLE IF NOT EXISTS schema_version (
        version integer NOT NULL,
        applied_at double precision NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS devices (
        id text PRIMARY KEY,
        services json NOT NULL,
        consumes json NOT NULL,
        flags integer NOT NULL,
        credential_ref text,
        first_seen double precision NOT NULL,
        last_seen double precision NOT NULL,
        presence text NOT NULL,
        presence_at double precision NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS device_groups (
        device text NOT NULL REFERENCES devices (id),
        grp text NOT NULL,
        PRIMARY KEY (device, grp))""",
    "CREATE INDEX IF NOT EXISTS device_groups_grp ON device_groups (grp, device)",
    # the stored rows of a registration batch's ids, each looked up and locked in id
    # order (store._REG_PG), planned at each call for the table as it is then. In the
    # registration statement itself the plan was psycopg's prepared one, generic, made
    # once for the table's size then: a table nearly empty (a fleet coming online) gave
    # a scan of the whole table for every batch after, a small analysed one a scan for
    # every id
    """CREATE OR REPLACE FUNCTION spot_devices_held(ids text[])
        RETURNS TABLE (id text, credential_ref text) LANGUAGE plpgsql AS $$
    BEGIN
        RETURN QUERY EXECUTE 'SELECT o.id, o.credential_ref FROM (SELECT k FROM '
            'unnest($1) k ORDER BY k) k CROSS JOIN LATERAL (SELECT d.id, d.credential_ref '
            'FROM devices d WHERE d.id = k.k FOR NO KEY UPDATE) o' USING ids;
    END $$""",
    # no foreign key (it would lock device rows on every insert):
    # add_telemetry checks the batch's devices once. Partitioned by time
    # (schema 2): retention drops partitions (a schema-1 database keeps its
    # plain table). History one row per frame (schema 4): a NOTIFY's values as
    # parallel arrays, keyed (device, service, t); made empty in an older
    # database too (docs/benchmarks.md's migration fills it)
    """CREATE TABLE IF NOT EXISTS telemetry_frame (
        device text NOT NULL,
        service smallint NOT NULL,
        t double precision NOT NULL,
        objects integer[] NOT NULL,
        vals json[] NOT NULL,
        PRIMARY KEY (device, service, t)) PARTITION BY RANGE (t)""",
    # a BRIN index on t: the rows before a retention cut inside a partition
    "CREATE INDEX IF NOT EXISTS telemetry_frame_t ON telemetry_frame USING brin (t)",
    # readers see `telemetry` (device, service, object, t, value), one row per value:
    # a view of the frames (schema 4), or the table of one row per value that a
    # database of schema 1-3 keeps (made here when it lacks it: the schema-2 step)
    """DO $$ BEGIN
        IF to_regclass('telemetry') IS NULL THEN
            IF (SELECT max(version) FROM schema_version) < 4 THEN
                CREATE TABLE telemetry (
                    device text NOT NULL,
                    service smallint NOT NULL,
                    object integer NOT NULL,
                    t double precision NOT NULL,
                    value json NOT NULL,
                    PRIMARY KEY (device, service, object, t)) PARTITION BY RANGE (t);
            ELSE
                CREATE VIEW telemetry AS SELECT f.device, f.service, v.object, f.t, v.value
                    FROM telemetry_frame f CROSS JOIN LATERAL unnest(f.objects, f.vals)
                    AS v (object, value);
                -- a delete of values deletes their whole frames (by device or time)
                CREATE RULE telemetry_delete AS ON DELETE TO telemetry DO INSTEAD
                    DELETE FROM telemetry_frame WHERE device = old.device
                    AND service = old.service AND t = old.t;
            END IF;
        END IF;
        IF (SELECT relkind FROM pg_class WHERE oid = 'telemetry'::regclass) <> 'v' THEN
            CREATE INDEX IF NOT EXISTS telemetry_t ON telemetry USING brin (t);
        END IF;
    END $$""",
    # adds to a stored frame the values of objects it does not hold (stored ones stay)
    """CREATE OR REPLACE FUNCTION spot_frame_add(stored_objects integer[], stored_vals json[],
            new_objects integer[], new_vals json[], OUT objects integer[], OUT vals json[])
        LANGUAGE plpgsql IMMUTABLE AS $$
    BEGIN
        objects := stored_objects;
        vals := stored_vals;
        FOR i IN 1..cardinality(new_objects) LOOP
            IF new_objects[i] <> ALL (objects) THEN
                objects := objects || new_objects[i];
                vals := vals || new_vals[i];
            END IF;
        END LOOP;
    END $$""",
    # latest values (schema 3): one row per device, its points in one array in
    # (service, object) order, merged by spot_latest_merge; readers see the view
    # `latest`, one row per point (device, service, object, t, value), as the
    # table of schema 1 and 2 was (such a database keeps that table)
    """DO $$ BEGIN
        IF to_regtype('latest_point') IS NULL THEN
            CREATE TYPE latest_point AS (
                service smallint, object integer, t double precision, value json);
        END IF;
    END $$""",
    """CREATE OR REPLACE FUNCTION spot_latest_merge(stored latest_point[],
            incoming latest_point[]) RETURNS latest_point[] LANGUAGE plpgsql IMMUTABLE AS $$
    DECLARE k integer := cardinality(incoming);
    BEGIN
        -- the usual case: the objects stored, in the same order, each one newer
        IF cardinality(stored) = k THEN
            FOR i IN 1..k LOOP
                EXIT WHEN stored[i].service <> incoming[i].service
                    OR stored[i].object <> incoming[i].object OR stored[i].t >= incoming[i].t;
                IF i = k THEN
                    RETURN incoming;
                END IF;
            END LOOP;
        END IF;
        -- per object the greatest t; on equal t the stored point stays
        RETURN (SELECT array_agg(ROW(u.service, u.object, u.t, u.value)::latest_point
                                 ORDER BY u.service, u.object)
                FROM (SELECT DISTINCT ON (a.service, a.object) a.service, a.object, a.t, a.value
                      FROM (SELECT x.*, 0 AS src FROM unnest(stored) x
                            UNION ALL SELECT y.*, 1 FROM unnest(incoming) y) a
                      ORDER BY a.service, a.object, a.t DESC, a.src) u);
    END $$""",
    # what the readers across the fleet need, kept beside the points by the
    # statement that writes them (UPSERT_LATEST_DEVICE): `fleet`, the points the
    # fleet figures, the power sample and the alarm flag read (store_fleet), merged
    # as the points are; `alarm` (an active alarm in them: the device list's alarm
    # filter, by a partial index), NULL until the device reports an alarm object
    """CREATE OR REPLACE FUNCTION spot_latest_alarm(points latest_point[]) RETURNS boolean
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
        $$ SELECT EXISTS (SELECT 1 FROM unnest(points) l WHERE %s) $$"""
    % alarm_point_sql("postgresql"),
    """CREATE OR REPLACE FUNCTION spot_latest_fleet(points latest_point[])
        RETURNS latest_point[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
        $$ SELECT COALESCE(array_agg(l), '{}') FROM unnest(points) l WHERE %s $$"""
    % FLEET_POINT,
    """CREATE TABLE IF NOT EXISTS latest_device (
        device text PRIMARY KEY,
        points latest_point[] NOT NULL,
        fleet latest_point[] NOT NULL,
        alarm boolean,
        keys bigint[],
        t_max double precision) WITH (fillfactor = 50)""",     # keys, t_max: schema 5
    "CREATE INDEX IF NOT EXISTS latest_device_alarm ON latest_device (device) WHERE alarm",
    # the rules of those columns (alarm objects, fleet terms) come from the profile
    # tables: when a version changes them, every row is computed again, once
    "CREATE TABLE IF NOT EXISTS latest_rules (rules text NOT NULL)",
    """DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM latest_rules WHERE rules = '%s') THEN
            UPDATE latest_device SET fleet = spot_latest_fleet(points),
                alarm = spot_latest_alarm(points);
            DELETE FROM latest_rules;
            INSERT INTO latest_rules VALUES ('%s');
        END IF;
    END $$""" % ((hashlib.sha256((alarm_point_sql("postgresql") + FLEET_POINT).encode())
                  .hexdigest(),) * 2),
    # (made in a schema-1/2 database too, empty: docs/benchmarks.md's migration fills it)
    """DO $$ BEGIN
        IF to_regclass('latest') IS NULL THEN
            CREATE VIEW latest AS SELECT d.device, p.service, p.object, p.t, p.value
                FROM latest_device d CROSS JOIN LATERAL unnest(d.points) p;
            CREATE RULE latest_delete AS ON DELETE TO latest
                DO INSTEAD DELETE FROM latest_device WHERE device = old.device;
        ELSIF (SELECT relkind FROM pg_class WHERE oid = 'latest'::regclass) = 'r' THEN
            CREATE INDEX IF NOT EXISTS latest_object ON latest (object, service);
        END IF;
    END $$""",
    """CREATE TABLE IF NOT EXISTS commands (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        device text NOT NULL REFERENCES devices (id),
        service smallint NOT NULL,
        op smallint NOT NULL,
        body json NOT NULL,
        actor text NOT NULL,
        status text NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision,
        timeout double precision,
        claimed_by text,
        claimed_at double precision,
        mid integer,
        sent_at double precision,
        completed_at double precision,
        result json)""",
    "CREATE INDEX IF NOT EXISTS commands_queue ON commands (device, status, id)",
    "CREATE INDEX IF NOT EXISTS commands_status ON commands (status, id)",
    "CREATE INDEX IF NOT EXISTS commands_sent ON commands (device, mid) WHERE status = 'sent'",
    """CREATE TABLE IF NOT EXISTS plans (
        device text NOT NULL REFERENCES devices (id),
        plan_id bigint NOT NULL,
        start double precision NOT NULL,
        expiry double precision NOT NULL,
        primacy smallint NOT NULL,
        entries json NOT NULL,
        actor text NOT NULL,
        status text NOT NULL,
        command_id bigint REFERENCES commands (id),
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        PRIMARY KEY (device, plan_id))""",
    "CREATE INDEX IF NOT EXISTS plans_command ON plans (command_id)",
    """CREATE TABLE IF NOT EXISTS pairings (
        device text NOT NULL REFERENCES devices (id),
        controller text NOT NULL,
        role text NOT NULL,
        credential json NOT NULL,
        created_at double precision NOT NULL,
        PRIMARY KEY (device, controller))""",
    # a controller's devices, in id order (device listing for a non-operator)
    "CREATE INDEX IF NOT EXISTS pairings_controller ON pairings (controller, device)",
    """CREATE TABLE IF NOT EXISTS audit (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at double precision NOT NULL,
        actor text NOT NULL,
        action text NOT NULL,
        target text,
        detail json NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_target ON audit (target, id)",
    # fleet view (store_fleet): counts by presence, one object across the fleet,
    # plans in force, and the sampled power-by-profile series
    "CREATE INDEX IF NOT EXISTS devices_presence ON devices (presence, id)",
    "CREATE INDEX IF NOT EXISTS plans_expiry ON plans (expiry)",
    """CREATE TABLE IF NOT EXISTS fleet_power (
        t double precision NOT NULL,
        service smallint NOT NULL,
        watts double precision NOT NULL,
        devices integer NOT NULL,
        PRIMARY KEY (t, service))""",
)

_SQL = {}


# the latest values of a batch, (device, service, object, t, value) rows sorted
# by key: one row per device (schema 3, 5 keyed) or per object (schema 1 and 2)
_BATCH_ROWS = ("unnest(%b::text[], %b::smallint[], %b::integer[], %b::float8[], %b::json[]) "
               "AS l (device, service, object, t, value)")
# the same from a batch's frames just COPYed (schema 4; every (device, service) in one
# frame of the batch, so its values are the batch's latest): read back by their keys,
# one index lookup each (OFFSET 0 keeps it a lookup: a join could scan the partition),
# in device order (the grouping then needs no sort)
_FRAME_ROWS = ("(SELECT k.device, k.service, v.object, k.t, v.value "
               "FROM (SELECT * FROM unnest(%b::text[], %b::smallint[], %b::float8[]) "
               "AS k (device, service, t) ORDER BY device) k "
               "CROSS JOIN LATERAL (SELECT f.objects, f.vals FROM telemetry_frame f "
               "WHERE f.device = k.device AND f.service = k.service AND f.t = k.t OFFSET 0) f "
               "CROSS JOIN LATERAL unnest(f.objects, f.vals) AS v (object, value)) AS l")
UPSERT_LATEST_DEVICE = upsert_grouped(_BATCH_ROWS, keyed=False)
UPSERT_LATEST_FROM_FRAMES = upsert_grouped(_FRAME_ROWS, keyed=False)
UPSERT_LATEST_DEVICE_KEYED = upsert_grouped(_BATCH_ROWS, keyed=True)
UPSERT_LATEST_FROM_FRAMES_KEYED = upsert_grouped(_FRAME_ROWS, keyed=True)
UPSERT_LATEST_OBJECT = (
    "INSERT INTO latest (device, service, object, t, value) "
    "SELECT * FROM unnest(%b::text[], %b::smallint[], %b::integer[], %b::float8[], %b::json[]) "
    "ON CONFLICT (device, service, object) DO UPDATE "
    "SET t = excluded.t, value = excluded.value WHERE latest.t < excluded.t")
# history one row per frame (schema 4): a batch's values (device, service, object, t,
# value) whose (device, service, object, t) is not stored (the first of the batch
# if twice), added to their frames; the count of values added
INSERT_FRAMES_IGNORING = (
    "WITH l AS (SELECT * FROM unnest(%b::text[], %b::smallint[], %b::integer[], "
    "%b::float8[], %b::json[]) WITH ORDINALITY AS l (device, service, object, t, value, n)), "
    "new AS (SELECT DISTINCT ON (l.device, l.service, l.object, l.t) l.* FROM l "
    "WHERE NOT EXISTS (SELECT 1 FROM telemetry_frame f WHERE f.device = l.device "
    "AND f.service = l.service AND f.t = l.t AND l.object = ANY (f.objects)) "
    "ORDER BY l.device, l.service, l.object, l.t, l.n), "
    "ins AS (INSERT INTO telemetry_frame AS f (device, service, t, objects, vals) "
    "SELECT device, service, t, array_agg(object ORDER BY n), array_agg(value ORDER BY n) "
    "FROM new GROUP BY device, service, t ORDER BY device, service, t "
    "ON CONFLICT (device, service, t) DO UPDATE SET (objects, vals) = "
    "(SELECT * FROM spot_frame_add(f.objects, f.vals, excluded.objects, excluded.vals))) "
    "SELECT count(*) FROM new")

def _pg(sql):
    """The statement with psycopg placeholders (scripts use `?`)."""
    s = _SQL.get(sql)
    if s is None:
        s = _SQL[sql] = sql.replace("%", "%%").replace("?", "%s")
    return s


async def _configure(conn):
    # json columns come back as the stored text; store.load_value decodes it
    conn.adapters.register_loader("json", TextLoader)
    for cls, dumper in DUMPERS.items():
        conn.adapters.register_dumper(cls, dumper)


async def _copy(conn, cur, stmt, binary=True):
    """COPY stmt.seq into stmt.table in a savepoint; Result count None on a unique violation."""
    sql = "COPY %s (%s) FROM STDIN" % (stmt.table, ", ".join(stmt.columns))
    if stmt.table == "telemetry_frame":
        return await _copy_frames(conn, cur, sql + " (FORMAT BINARY)", stmt.seq)
    if binary:
        sql += " (FORMAT BINARY)"
    try:
        async with conn.transaction():      # a savepoint: a refused COPY leaves nothing
            async with cur.copy(sql) as copy:
                if binary and stmt.table == "telemetry":
                    await copy.write(copy_payload(stmt.seq))
                else:
                    if binary:
                        copy.set_types(COPY_TYPES[stmt.table])
                    for row in stmt.seq:
                        await copy.write_row(row)
    except psycopg.errors.UniqueViolation:
        return Result([], None)
    return Result([], cur.rowcount)


async def _copy_frames(conn, cur, sql, frames):
    """History frames (schema 4) by one binary COPY in a savepoint; Result count None
    when a frame's (device, service, t) is stored already."""
    try:
        async with conn.transaction():
            with gc_paused():
                payload = frame_copy_payload(frames)
            async with cur.copy(sql) as copy:
                await copy.write(payload)
    except psycopg.errors.UniqueViolation:
        return Result([], None)
    return Result([], sum(len(f[3]) for f in frames))


async def _alive(conn):
    """The pool's check of a connection it hands out, without a round trip: an idle
    connection has nothing to read unless the server sent something, which is how a
    connection closed by the server (restart, idle timeout, pg_terminate_backend: a
    FATAL message, then end of stream) shows; only then is it checked with a round
    trip (raises when dead: the pool drops it and hands out another). poll, not
    select: a busy bridge's descriptors pass select's limit (1024)."""
    readable = select.poll()
    readable.register(conn.fileno(), select.POLLIN)
    if readable.poll(0):
        await AsyncConnectionPool.check_connection(conn)


def _gc_paused_call(fn, *args):
    """fn(*args) with the cyclic collector held off (gc_pause: a batch's rows)."""
    with gc_paused():
        return fn(*args)


def _prepare_frames(rows):
    """prepare_telemetry's (rows, latest) with latest None (the usual batch does not need
    them: latest_of when it does), the rows grouped by frame (frames_of), and whether
    each (device, service) is in one frame only."""
    out = encode_telemetry(rows)
    frames = frames_of(out)
    for dev in {f[0] for f in frames[0]}:
        check_device(dev)
    return out, None, frames, len({f[:2] for f in frames[0]}) == len(frames[0])


class PostgresStore(Store):
    """Store on a PostgreSQL database; conninfo is a libpq URL or DSN."""

    dialect = "postgresql"
    schema = SCHEMA
    binary_copy = True      # COPY in binary (False: text, the path before; benchmarks)

    def __init__(self, conninfo, min_size=1, max_size=8, timeout=30.0,
                 partition_seconds=PARTITION_SECONDS):
        self.conninfo = conninfo
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self.partition_seconds = partition_seconds
        self.partitioned = None   # telemetry partitioned (schema 2)? known once open
        self.latest_per_device = None   # latest values one row per device (schema 3)?
        self.frames = None        # history one row per frame (schema 4)?
        self.latest_keys = None   # latest rows keep keys and t_max (schema 5)?
        self._history = "telemetry"   # the table history rows go into
        self._parts = set()       # partition numbers (t // partition_seconds) known to exist
        self._no_part = set()     # partition numbers that cannot be made (rows in default)
        self._frame_rowtype = None   # telemetry_frame's row type oid (pg_ingest), 0: none
        self._pool = None

    async def _run(self, script, write=True, tx=True):
        """script() in one transaction (tx False: a script of ONE statement, run as its
        own transaction without BEGIN and COMMIT, a round trip each)."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("store is closed")
        for attempt in range(RETRIES + 1):
            try:
                async with pool.connection() as conn:
                    if not tx:
                        return await self._drive(conn, script())
                    async with conn.transaction():
                        return await self._drive(conn, script())
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as e:
                if attempt == RETRIES:
                    raise StoreError("postgresql: %s" % e) from e
            except PoolTimeout as e:
                raise StoreUnavailable("postgresql: no connection: %s" % e) from e
            except psycopg.OperationalError as e:
                raise StoreUnavailable("postgresql: %s" % e) from e
            except psycopg.Error as e:
                raise StoreError("postgresql: %s" % e) from e

    async def _run_single(self, script):
        return await self._run(script, tx=False)

    async def _drive(self, conn, gen):
        try:
            stmt = next(gen)
        except StopIteration as stop:
            return stop.value
        while True:
            async with conn.cursor() as cur:
                if type(stmt) is Many:
                    await cur.executemany(_pg(stmt.sql), stmt.seq)
                    res = Result([], cur.rowcount)
                elif type(stmt) is Copy:
                    res = await _copy(conn, cur, stmt, self.binary_copy)
                elif type(stmt) is Overlap:
                    res = await run_overlap(cur, stmt, self._offload)
                else:
                    await cur.execute(stmt.sql if type(stmt) is QB else _pg(stmt.sql),
                                      stmt.params)
                    res = Result(await cur.fetchall() if cur.description else [],
                                 cur.rowcount)
            try:
                stmt = gen.send(res)
            except StopIteration as stop:
                return stop.value

    async def open(self):
        if self._pool is not None:
            return self
        pool = AsyncConnectionPool(
            self.conninfo, min_size=self.min_size, max_size=self.max_size, open=False,
            kwargs={"autocommit": True}, configure=_configure, timeout=self.timeout,
            check=_alive, name="spot-store")
        try:
            await pool.open(wait=True, timeout=self.timeout)
        except (PoolTimeout, psycopg.Error) as e:
            await pool.close()
            raise StoreUnavailable("cannot connect to postgresql: %s" % e) from e
        self._pool = pool
        try:
            await self._run(lambda: self._s_schema(DDL, time.time()))
            await self._run(self._s_layout)
        except BaseException:
            await self.close()
            raise
        if not self.partitioned:
            log.warning("the PostgreSQL store's telemetry is one plain table (schema "
                        "version 1): it works, but retention deletes rows instead of "
                        "dropping time partitions")
        if not self.latest_per_device:
            log.warning("the PostgreSQL store's latest values are one row per object "
                        "(schema version 1 or 2): it works, but each batch writes a row "
                        "per value instead of one per device")
        return self

    async def close(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def add_telemetry(self, rows):
        if type(rows) not in (list, tuple):
            rows = list(rows)
        return (await self._telemetry([rows], refuse=False))[0]

    async def add_telemetry_frames(self, frames):
        """Store.add_telemetry_frames: the batch's rows by one COPY (every row new, the
        usual case); when some key is already stored or twice in the batch, the COPY's
        savepoint is rolled back, the frames giving such a key another value are
        refused, and the others go in by INSERT ... ON CONFLICT DO NOTHING."""
        return (await self._telemetry(frames, refuse=True))[1]

    async def _telemetry(self, frames, refuse):
        """(rows new, [refused] per frame) of storing the frames' rows in one transaction:
        one COPY when every row is new; else INSERT ... ON CONFLICT DO NOTHING, of every
        row (refuse False: a stored key keeps its value) or of the frames that agree
        with what is stored (refuse True). The latest values move forward with them."""
        refused = [False] * len(frames)
        rows = [r for fr in frames for r in fr]
        if not rows:
            return 0, refused
        if self.latest_keys and self.copy_telemetry:
            done = await store_rows(self, rows)      # the usual batch (pg_ingest)
            if done is not None:
                return done, refused
        prepare = _prepare_frames if self.frames else prepare_telemetry
        if len(rows) > 200:
            prepared = await self._offload(_gc_paused_call, prepare, rows)
        else:
            prepared = prepare(rows)
        out, latest = prepared[:2]
        # schema 4: one COPY of frames, unless a value is twice in the batch
        grouped, twice = prepared[2] if self.frames else (None, False)
        # the latest values from the frames once COPYed (one frame per device, service)
        from_frames = self.frames and self.latest_per_device and prepared[3]
        ids = sorted({f[0] for f in grouped} if latest is None else {r[0] for r in latest})
        one_each = self.frames and len(grouped) == len(ids)    # each device in one frame
        await self._make_room(out)

        def script():
            if len(ids) > NO_JIT_DEVICES:
                yield Q("SET LOCAL jit = off", ())
            unknown = yield from self._s_unknown_devices(ids)
            if unknown:
                raise UnknownDevice(unknown)
            r = Result([], None)
            if self.copy_telemetry and not twice:
                r = yield (Copy("telemetry_frame", FRAME_COLUMNS, grouped) if self.frames
                           else Copy("telemetry", TELEMETRY_COLUMNS, out))
            copied = r.count is not None
            taken, kept, no = out, latest, refused
            if r.count is None and refuse:
                enc, i = [], 0
                for fr in frames:
                    enc.append(out[i:i + len(fr)])
                    i += len(fr)
                no = yield from s_conflicts(enc)
                taken = [x for k, fr in enumerate(enc) if not no[k] for x in fr]
                kept = latest_of(taken)
            if r.count is None:
                r = Result([], 0)
                if taken and self.frames:
                    r = yield QB(INSERT_FRAMES_IGNORING, row_arrays(taken))
                    r = Result([], r.rows[0][0])
                elif taken:
                    r = yield Q(PG_INSERT_TELEMETRY_IGNORING, [list(c) for c in zip(*taken)])
            if copied and from_frames:
                with gc_paused():
                    keys = frame_keys(grouped)
                yield QB(UPSERT_ONE_FRAME if one_each and self.latest_keys
                         else UPSERT_LATEST_FROM_FRAMES_KEYED if self.latest_keys
                         else UPSERT_LATEST_FROM_FRAMES, keys)
                return r.count, no
            if kept is None:
                kept = latest_of(taken)
            if kept:
                yield from self._s_upsert_latest(kept)
            return r.count, no
        return await self._run(script)

    def _s_unknown_devices(self, ids):
        """Store._s_unknown_devices with the ids sent as one binary text[] (psycopg's
        list dumper took about 2 ms per 1 000 ids)."""
        r = yield QB(UNKNOWN, (text_array(ids),))
        return [x[0] for x in r.rows]

    def _s_upsert_latest(self, latest):
        """Move the latest values forward: per object the greatest t stays (on equal t
        the stored one), one row per device (schema 3) or per object (before)."""
        yield QB(UPSERT_LATEST_DEVICE_KEYED if self.latest_keys
                 else UPSERT_LATEST_DEVICE if self.latest_per_device else UPSERT_LATEST_OBJECT,
                 row_arrays(latest))

    # -- time partitions of telemetry (schema 2)

    def _s_layout(self):
        """Find whether telemetry is partitioned (give it its default partition) and
        which partitions exist."""
        r = yield Q("SELECT relkind::text FROM pg_class WHERE oid = 'telemetry'::regclass", ())
        self.frames = r.rows[0][0] == "v"
        self.partitioned = self.frames or r.rows[0][0] == "p"
        self._history = "telemetry_frame" if self.frames else "telemetry"
        r = yield Q("SELECT relkind::text FROM pg_class WHERE oid = 'latest'::regclass", ())
        self.latest_per_device = r.rows[0][0] == "v"
        r = yield Q("SELECT max(version) FROM schema_version", ())
        self.latest_keys = self.latest_per_device and r.rows[0][0] >= 5
        if self.partitioned:
            yield Q("CREATE TABLE IF NOT EXISTS telemetry_other PARTITION OF %s DEFAULT"
                    % self._history, ())
            self._parts = {lo // self.partition_seconds
                           for lo, hi, _ in (yield from self._s_partitions())
                           if hi - lo == self.partition_seconds}

    def _s_partitions(self):
        """[(first t, end t, name)] of the time partitions, oldest first."""
        r = yield Q("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c "
                    "ON c.oid = i.inhrelid WHERE i.inhparent = '%s'::regclass" % self._history,
                    ())
        found = []
        for (name,) in r.rows:
            m = _PART.match(name)
            if m:
                found.append((int(m.group(1)), int(m.group(2)), name))
        return sorted(found)

    def _s_add_partition(self, k):
        w = self.partition_seconds
        yield Q("SELECT pg_advisory_xact_lock(%d)" % LOCK_PARTITIONS, ())
        yield Q("CREATE TABLE IF NOT EXISTS telemetry_%d_%d PARTITION OF %s "
                "FOR VALUES FROM (%d) TO (%d)"
                % (k * w, (k + 1) * w, self._history, k * w, (k + 1) * w), ())

    async def _make_room(self, rows):
        """The partition of the batch's median time and the next one exist (made now
        if not, each in its own transaction). A partition that cannot be made (the
        default partition already holds rows of its range) is not tried again: its
        rows stay in the default partition."""
        if not self.partitioned or not rows:
            return
        w = self.partition_seconds
        k0, k1 = math.floor(rows[0][3] / w), math.floor(rows[-1][3] / w)
        if k0 == k1 and k0 in self._parts and k0 + 1 in self._parts:
            return     # the usual batch: one partition, the next one made already
        ts = sorted(r[3] for r in rows)
        k = math.floor(ts[len(ts) // 2] / w)
        for part in (k, k + 1):
            if part in self._parts or part in self._no_part:
                continue
            try:
                await self._run(lambda: self._s_add_partition(part))
                self._parts.add(part)
            except StoreError as e:
                if isinstance(e, StoreUnavailable):
                    raise
                self._no_part.add(part)
                log.warning("telemetry partition from t=%d not made (rows stay in the "
                            "default partition): %s", part * w, e)

    async def prune_telemetry(self, before_t):
        """Delete telemetry older than before_t: whole partitions that end by then are
        dropped (their rows counted first), the rest deleted row by row."""
        if not self.partitioned:
            return await super().prune_telemetry(before_t)
        check_time(before_t, "before_t")
        cut = float(before_t)
        # the values a partition holds
        counted = "COALESCE(sum(cardinality(objects)), 0)" if self.frames else "count(*)"

        def script():
            yield Q("SELECT pg_advisory_xact_lock(%d)" % LOCK_PARTITIONS, ())
            gone, dropped = 0, []
            for lo, hi, name in (yield from self._s_partitions()):
                if hi <= cut:
                    r = yield Q("SELECT %s FROM %s" % (counted, name), ())
                    gone += r.rows[0][0]
                    yield Q("DROP TABLE " + name, ())
                    dropped.append((lo, hi))
            if self.frames:
                r = yield Q("WITH d AS (DELETE FROM telemetry_frame WHERE t < ? "
                            "RETURNING cardinality(objects) AS n) "
                            "SELECT COALESCE(sum(n), 0) FROM d", (cut,))
                return gone + r.rows[0][0], dropped
            r = yield Q("DELETE FROM telemetry WHERE t < ?", (cut,))
            return gone + r.count, dropped
        count, dropped = await self._run(script)
        w = self.partition_seconds
        for lo, hi in dropped:
            if hi - lo == w:
                self._parts.discard(lo // w)
        return count
