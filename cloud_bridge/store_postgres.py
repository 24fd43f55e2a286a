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
text is kept as written), so floats such as 1e+20 keep their type.

Needs: pip install "psycopg[binary,pool]".
"""
import time

import psycopg
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .store import Store, Copy, Many, Result, StoreError, StoreUnavailable

RETRIES = 3

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
    # no foreign key (it would lock device rows on every insert):
    # add_telemetry checks the batch's devices once
    """CREATE TABLE IF NOT EXISTS telemetry (
        device text NOT NULL,
        service smallint NOT NULL,
        object integer NOT NULL,
        t double precision NOT NULL,
        value json NOT NULL,
        PRIMARY KEY (device, service, object, t))""",
    # rows arrive roughly in time order: a BRIN index makes pruning cheap
    "CREATE INDEX IF NOT EXISTS telemetry_t ON telemetry USING brin (t)",
    """CREATE TABLE IF NOT EXISTS latest (
        device text NOT NULL,
        service smallint NOT NULL,
        object integer NOT NULL,
        t double precision NOT NULL,
        value json NOT NULL,
        PRIMARY KEY (device, service, object)) WITH (fillfactor = 50)""",
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
    "CREATE INDEX IF NOT EXISTS latest_object ON latest (object, service)",
    "CREATE INDEX IF NOT EXISTS plans_expiry ON plans (expiry)",
    """CREATE TABLE IF NOT EXISTS fleet_power (
        t double precision NOT NULL,
        service smallint NOT NULL,
        watts double precision NOT NULL,
        devices integer NOT NULL,
        PRIMARY KEY (t, service))""",
)

_SQL = {}


def _pg(sql):
    """The statement with psycopg placeholders (scripts use `?`)."""
    s = _SQL.get(sql)
    if s is None:
        s = _SQL[sql] = sql.replace("%", "%%").replace("?", "%s")
    return s


async def _configure(conn):
    # json columns come back as the stored text; store.load_value decodes it
    conn.adapters.register_loader("json", TextLoader)


async def _copy(conn, cur, stmt):
    """COPY stmt.seq into stmt.table in a savepoint; Result count None on a unique violation."""
    sql = "COPY %s (%s) FROM STDIN" % (stmt.table, ", ".join(stmt.columns))
    try:
        async with conn.transaction():      # a savepoint: a refused COPY leaves nothing
            async with cur.copy(sql) as copy:
                for row in stmt.seq:
                    await copy.write_row(row)
    except psycopg.errors.UniqueViolation:
        return Result([], None)
    return Result([], cur.rowcount)


class PostgresStore(Store):
    """Store on a PostgreSQL database; conninfo is a libpq URL or DSN."""

    dialect = "postgresql"

    def __init__(self, conninfo, min_size=1, max_size=8, timeout=30.0):
        self.conninfo = conninfo
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self._pool = None

    async def _run(self, script, write=True):
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("store is closed")
        for attempt in range(RETRIES + 1):
            try:
                async with pool.connection() as conn:
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

    @staticmethod
    async def _drive(conn, gen):
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
                    res = await _copy(conn, cur, stmt)
                else:
                    await cur.execute(_pg(stmt.sql), stmt.params)
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
            check=AsyncConnectionPool.check_connection, name="spot-store")
        try:
            await pool.open(wait=True, timeout=self.timeout)
        except (PoolTimeout, psycopg.Error) as e:
            await pool.close()
            raise StoreUnavailable("cannot connect to postgresql: %s" % e) from e
        self._pool = pool
        try:
            await self._run(lambda: self._s_schema(DDL, time.time()))
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
