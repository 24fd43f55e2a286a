"""The bridge's durable state: one interface, two backends (SQLite, PostgreSQL).

    store = await open_store("sqlite:///var/lib/spot/bridge.db")
    store = await open_store("postgresql://spot@db.example:5432/spot")
    ...
    await store.close()

Everything the bridge must not lose, and everything another bridge instance
sharing the database needs, lives here: devices (announce, presence, groups),
telemetry (history and the latest value of every object), the durable command
queue (store-and-forward for sleepy devices), plans, the pairing roster and
the audit log. Every method is a coroutine and returns only after its
transaction has committed.

How the two backends share one implementation: each operation is written once
here as a *transaction script*, a generator that yields SQL statements (`Q`,
`Many`) and receives their results (`Result`). A backend only drives scripts:
`SqliteStore` on one dedicated worker thread (WAL, synchronous=FULL),
`PostgresStore` on a psycopg async connection pool. SQL is written with `?`
placeholders; the few statements that differ between the dialects (bulk
insert, SKIP LOCKED, schema types) branch on `self.dialect`.

Decisions, documented once:

- Times are Unix seconds, int or float, always passed in (`now`), never read
  from a clock here. Whole-second times come back as int.
- Values (telemetry, command bodies and results, plan entries, audit detail)
  are SPOT wire values stored as JSON, losslessly (see `dump_value`): maps with
  integer keys become JSON objects with decimal keys; bytes become
  {"b64": "..."}; NaN and infinities become {"f": "nan"}; maps with other keys
  become {"map": [[key, value], ...]}. Other types are rejected (InvalidValue).
- Telemetry for a device the store does not know is rejected: the whole batch
  raises UnknownDevice (listing the ids) and nothing is stored. The bridge
  registers a device (upsert_device) on its first ANNOUNCE. Telemetry is
  idempotent: a row with the same (device, service, object, t) as a stored one
  is ignored (MQTT QoS 1 redelivery), so the first value for a time stands.
- latest() keeps, per object, the value with the greatest time ever stored; a
  late (older) row never replaces it, and retention pruning never removes it.
- Commands move queued -> sent in one write (claim_and_send_many: the
  bridge's deliveries) -> done | error | expired | timeout | rejected.
  "claimed" (claimed, not yet sent) is what bridges before that write left;
  release_claims and a route taken over queue such commands again. A command
  may also be completed straight from queued or claimed (e.g. rejected by
  access control). complete() on a command that is already final returns
  False and changes nothing (a late RESULT racing a timeout).
- Fleet-wide bursts have many-item methods (register_devices,
  claim_and_send_many, complete_many, enqueue_many): one
  transaction for all, and per item the outcome (or the error, as a value)
  its single-item method gives; the single-item methods are these with one
  item.
"""
import abc
import asyncio
import base64
import json
import math
import re
from collections import namedtuple
from dataclasses import dataclass, field, asdict
from typing import Any, Optional
from urllib.parse import urlsplit, unquote

from ..core import frame as _frame
from ..core import plans as _plans
from ..core.roster import ROLE_NAMES
from . import sqlite_rows

SCHEMA_VERSION = 1   # the first schema version; each backend creates its own (Store.schema)

PRESENCE = ("online", "sleeping", "offline")

QUEUED = "queued"
CLAIMED = "claimed"
SENT = "sent"
OPEN_STATUSES = (QUEUED, CLAIMED, SENT)
FINAL_STATUSES = ("done", "error", "expired", "timeout", "rejected")
COMMAND_STATUSES = OPEN_STATUSES + FINAL_STATUSES

PLAN_STATUSES = ("queued", "accepted", "failed", "cancelled")
PLAN_LIVE = ("queued", "accepted")

ROLES = tuple(sorted(ROLE_NAMES.values()))

MAX_NAME = 256              # device ids, actors, group names, controllers
MAX_VALUE_JSON = 1 << 20    # one stored value, as JSON text
MAX_DEPTH = 64              # nesting of one value
MAX_LIMIT = 100000          # rows one list/history call returns


# --------------------------------------------------------------------- errors

class StoreError(Exception):
    """Anything the store refuses or cannot do."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, is busy past the timeout, or the store is closed."""


class StoreCorrupt(StoreUnavailable):
    """The database file is damaged (SQLite: SQLITE_CORRUPT, SQLITE_NOTADB): nothing
    written to it can be trusted until it is recovered."""


class ClaimRefused(StoreError):
    """A device id registered under another identity (upsert_device's claim said no)."""

    def __init__(self, device, held):
        self.device = device
        self.held = held
        super().__init__("device %r is registered under another identity" % (device,))


class SchemaError(StoreError):
    """The database holds a schema this code does not know."""


class InvalidValue(StoreError, ValueError):
    """An argument of the wrong type, out of range, or not storable."""


class UnknownDevice(StoreError, LookupError):
    """A device id the store has never registered (upsert_device)."""

    def __init__(self, devices):
        self.devices = sorted(devices)
        shown = ", ".join(repr(d) for d in self.devices[:5])
        more = " and %d more" % (len(self.devices) - 5) if len(self.devices) > 5 else ""
        super().__init__("unknown device%s: %s%s" % (
            "s" if len(self.devices) > 1 else "", shown, more))


class UnknownCommand(StoreError, LookupError):
    def __init__(self, command_id):
        self.command_id = command_id
        super().__init__("unknown command %r" % (command_id,))


# ---------------------------------------------------------------- records

@dataclass(frozen=True, slots=True)
class Device:
    id: str
    services: list          # [[service id, major, minor], ...]
    consumes: list          # [service id, ...]
    flags: int
    sleepy: bool            # flags bit 0: queue for me
    credential_ref: Optional[str]
    first_seen: float
    last_seen: float
    presence: str           # one of PRESENCE
    presence_at: float      # when presence last changed
    groups: list = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Command:
    id: int
    device: str
    service: int
    op: int
    body: Any
    actor: str
    status: str
    created_at: float
    expires_at: Optional[float]     # not delivered by then: expired
    timeout: Optional[float]        # seconds after sending without answer: timeout
    claimed_by: Optional[str]
    claimed_at: Optional[float]
    mid: Optional[int]
    sent_at: Optional[float]
    completed_at: Optional[float]
    result: Any


@dataclass(frozen=True, slots=True)
class Plan:
    device: str
    plan_id: int
    start: int
    expiry: int
    primacy: int
    entries: dict
    actor: str
    status: str             # one of PLAN_STATUSES
    command_id: Optional[int]
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Pairing:
    device: str
    controller: str
    role: str
    credential: Any         # a reference (kid, PSK identity, key id), str or bytes
    created_at: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    target: Optional[str]
    detail: Any


def as_dict(record):
    """A record as a plain dict (for JSON APIs)."""
    return asdict(record)


# ------------------------------------------------------------- value codec

_TAGS = ("b64", "map", "f")
_INT_KEY = re.compile(r"-?[1-9][0-9]*|0")
_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _enc(v, depth):
    t = type(v)
    if t is int or t is str or t is bool or v is None:
        return v
    if t is float:
        if math.isfinite(v):
            return v
        return {"f": "nan" if v != v else ("inf" if v > 0 else "-inf")}
    if depth > MAX_DEPTH:
        raise InvalidValue("value nested deeper than %d" % MAX_DEPTH)
    if t is list or t is tuple:
        return [_enc(x, depth + 1) for x in v]
    if t is bytes or t is bytearray or t is memoryview:
        return {"b64": base64.b64encode(bytes(v)).decode("ascii")}
    if t is dict:
        ints = strs = 0
        for k in v:
            tk = type(k)
            if tk is int:
                ints += 1
            elif tk is str:
                if _INT_KEY.fullmatch(k) or (len(v) == 1 and k in _TAGS):
                    strs = -1 << 30     # would read back as an int key or a tag
                else:
                    strs += 1
            elif tk is not bytes:
                raise InvalidValue("map key of type %s is not a wire value" % tk.__name__)
        if ints == len(v):
            return {str(k): _enc(x, depth + 1) for k, x in v.items()}
        if strs == len(v):
            return {k: _enc(x, depth + 1) for k, x in v.items()}
        return {"map": [[_enc(k, depth + 1), _enc(x, depth + 1)] for k, x in v.items()]}
    raise InvalidValue("%s is not a wire value" % t.__name__)


def dump_value(v):
    """A wire value as JSON text (lossless, see the module docstring)."""
    t = type(v)
    if t is int:
        return str(v)
    try:
        s = json.dumps(_enc(v, 0), separators=(",", ":"), ensure_ascii=False,
                       allow_nan=False)
    except RecursionError:
        raise InvalidValue("value nested too deeply") from None
    if len(s) > MAX_VALUE_JSON:
        raise InvalidValue("value larger than %d bytes as JSON" % MAX_VALUE_JSON)
    if not _utf8(s):
        raise InvalidValue("text in value is not valid Unicode (lone surrogate)")
    return s


def _dec(j):
    t = type(j)
    if t is list:
        return [_dec(x) for x in j]
    if t is not dict:
        return j
    if len(j) == 1:
        k, x = next(iter(j.items()))
        if k == "b64":
            return base64.b64decode(x)
        if k == "f":
            if x not in _SPECIAL:
                raise StoreError("corrupt stored value: float tag %r" % (x,))
            return _SPECIAL[x]
        if k == "map":
            return {_dec(p[0]): _dec(p[1]) for p in x}
    if j and all(_INT_KEY.fullmatch(k) for k in j):
        return {int(k): _dec(x) for k, x in j.items()}
    return {k: _dec(x) for k, x in j.items()}


def load_value(s):
    """The wire value stored as JSON text `s` (None stays None: no value)."""
    if s is None:
        return None
    j = json.loads(s)
    t = type(j)
    if t is dict or t is list:
        return _dec(j)
    return j


# ---------------------------------------------------------------- checks

def check_time(x, what="time"):
    if (type(x) is not int and type(x) is not float) or not math.isfinite(x):
        raise InvalidValue("%s must be a finite number of Unix seconds, not %r" % (what, x))
    return x


def check_opt_time(x, what):
    return None if x is None else check_time(x, what)


def check_int(x, lo, hi, what):
    if type(x) is not int or not lo <= x <= hi:
        raise InvalidValue("%s must be an integer from %d to %d, not %r" % (what, lo, hi, x))
    return x


def _utf8(s):
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def check_name(x, what="name"):
    if type(x) is not str or not 0 < len(x) <= MAX_NAME or "\x00" in x or not _utf8(x):
        raise InvalidValue("%s must be a non-empty string of at most %d characters "
                           "without NUL, not %r" % (what, MAX_NAME, x))
    return x


def check_names(x, what, seen):
    """check_name for the items of a batch: a name in `seen` (a set) is not checked
    again, a valid one is added to it (the same few controllers, roles and identities
    come with every device of a burst)."""
    if type(x) is not str or x not in seen:
        seen.add(check_name(x, what))
    return x


def check_device(x):
    return check_name(x, "device id")


def check_limit(x):
    return check_int(x, 1, MAX_LIMIT, "limit")


def check_choice(x, choices, what):
    if x not in choices or type(x) is not str:
        raise InvalidValue("%s must be one of %s, not %r" % (what, ", ".join(choices), x))
    return x


def t_out(x):
    """A stored time as given: whole seconds as int."""
    if type(x) is float and x.is_integer():
        return int(x)
    return x


def _check_services(services):
    if type(services) not in (list, tuple):
        raise InvalidValue("services must be a list of [service id, major, minor]")
    out = []
    for s in services:
        if type(s) not in (list, tuple) or len(s) != 3:
            raise InvalidValue("each service must be [service id, major, minor], not %r" % (s,))
        out.append([check_int(s[0], 0, 255, "service id"),
                    check_int(s[1], 0, 0xFFFF, "major version"),
                    check_int(s[2], 0, 0xFFFF, "minor version")])
    return out


def _check_consumes(consumes):
    if type(consumes) not in (list, tuple):
        raise InvalidValue("consumes must be a list of service ids")
    return [check_int(s, 0, 255, "consumed service id") for s in consumes]


def prepare_telemetry(rows):
    """Check and encode telemetry rows (device, service, object, t, value).

    Returns (rows, latest): rows as (device, service, object, float t, JSON
    text) in the batch's order, and, per (device, service, object), the row
    with the greatest t (the first one on equal t), sorted by key so that
    concurrent writers take row locks in one order.
    """
    out = encode_telemetry(rows)
    latest = latest_of(out)
    for dev in {r[0] for r in latest}:
        check_device(dev)
    return out, latest


def encode_telemetry(rows):
    """prepare_telemetry's rows without the latest values: each row checked and encoded
    as (device, service, object, float t, JSON text), in the batch's order (a device
    name other than a str is refused here; the caller checks each distinct name)."""
    out = []
    isfinite = math.isfinite
    for n, r in enumerate(rows):
        try:
            dev, sid, oid, t, v = r
        except (TypeError, ValueError):
            raise InvalidValue("telemetry row %d must be (device, service, object, t, value)"
                               % n) from None
        if type(dev) is not str:
            check_device(dev)
        if type(sid) is not int or not 0 <= sid <= 255:
            check_int(sid, 0, 255, "telemetry row %d service" % n)
        if type(oid) is not int or not 0 <= oid <= 0x7FFFFFFF:
            check_int(oid, 0, 0x7FFFFFFF, "telemetry row %d object" % n)
        tt = type(t)
        if (tt is not int and tt is not float) or not isfinite(t):
            check_time(t, "telemetry row %d time" % n)
        # (an integer's text here: the usual value, without a call per row)
        out.append((dev, sid, oid, float(t), str(v) if type(v) is int else value_text(v)))
    return out


def value_text(v):
    """A telemetry value as the tables hold it: an integer's digits, a finite float's
    repr, anything else as dump_value writes it (which refuses what cannot be stored)."""
    tv = type(v)
    if tv is int:
        return str(v)
    if tv is float and math.isfinite(v):
        return repr(v)
    return dump_value(v)


def latest_of(rows):
    """Of stored-form rows (device, service, object, float t, text), per (device, service,
    object) the row with the greatest t (the first one on equal t), sorted by key so that
    concurrent writers take row locks in one order."""
    best = {}
    for row in rows:
        key = row[:3]
        old = best.get(key)
        if old is None or row[3] > old[3]:
            best[key] = row
    return [best[k] for k in sorted(best)]


def s_conflicts(frames):
    """[refused] for each frame of stored-form rows: True if a row of it has the key
    (device, service, object, t) of a stored row, or of a row of an earlier frame
    taken here, with another value (a script step: it reads the stored rows)."""
    rows = [r for fr in frames for r in fr]
    stored = {}
    for i in range(0, len(rows), 256):
        part = rows[i:i + 256]
        r = yield Q("WITH b (device, service, object, t) AS (VALUES %s) "
                    "SELECT telemetry.device, telemetry.service, telemetry.object, "
                    "telemetry.t, telemetry.value FROM b JOIN telemetry USING "
                    "(device, service, object, t)" % ",".join(("(?,?,?,?)",) * len(part)),
                    [x for row in part for x in row[:4]])
        for d, sv, o, t, v in r.rows:
            stored[(d, sv, o, t)] = v
    refused = []
    for fr in frames:
        bad = any(stored.get(r[:4], r[4]) != r[4] for r in fr)
        if not bad:
            for r in fr:   # taken: a later frame of the batch must agree with it
                stored.setdefault(r[:4], r[4])
        refused.append(bad)
    return refused


# ---------------------------------------------------------- row converters

DEVICE_COLS = ("id, services, consumes, flags, credential_ref, first_seen, last_seen, "
               "presence, presence_at")
COMMAND_COLS = ("id, device, service, op, body, actor, status, created_at, expires_at, "
                "timeout, claimed_by, claimed_at, mid, sent_at, completed_at, result")
PLAN_COLS = ("device, plan_id, start, expiry, primacy, entries, actor, status, command_id, "
             "created_at, updated_at")
PAIRING_COLS = "device, controller, role, credential, created_at"
AUDIT_COLS = "id, at, actor, action, target, detail"


def device_of(r, groups):
    return Device(r[0], json.loads(r[1]), json.loads(r[2]), r[3], bool(r[3] & 1), r[4],
                  t_out(r[5]), t_out(r[6]), r[7], t_out(r[8]), groups)


# the columns of a queued command that no claim or send has set (COMMAND_COLS' first ten
# but status)
_QUEUED_COLS = ("commands.id, device, service, op, body, actor, created_at, expires_at, "
                "timeout")


def command_of(r):
    return Command(r[0], r[1], r[2], r[3], load_value(r[4]), r[5], r[6], t_out(r[7]),
                   t_out(r[8]), t_out(r[9]), r[10], t_out(r[11]), r[12], t_out(r[13]),
                   t_out(r[14]), load_value(r[15]))


def _sent_command(instance_id, now):
    """command_of for rows (_QUEUED_COLS, mid) of commands just recorded sent by
    instance_id at now (claim_and_send_many)."""
    t = t_out(float(now))

    def of(r):
        return Command(r[0], r[1], r[2], r[3], load_value(r[4]), r[5], SENT, t_out(r[6]),
                       t_out(r[7]), t_out(r[8]), instance_id, t, r[9], t, None, None)
    return of


def queued_commands(ids, devices, service, op, body, actor, now, expires_at, timeout):
    """The Commands that enqueue_many(devices, service, op, body, actor, now, expires_at,
    timeout) stored under ids, as get_commands would read them right after (status
    queued): a group command's answer without reading its 10 000 rows back while their
    deliveries start. The body is its stored form decoded, once, and shared."""
    stored = load_value(dump_value(body))
    created, expires = t_out(float(now)), t_out(None if expires_at is None else float(expires_at))
    timeout = t_out(None if timeout is None else float(timeout))
    return [Command(cid, device, service, op, stored, actor, "queued", created, expires, timeout,
                    None, None, None, None, None, None) for cid, device in zip(ids, devices)]


def plan_of(r):
    return Plan(r[0], r[1], t_out(r[2]), t_out(r[3]), r[4], load_value(r[5]), r[6], r[7],
                r[8], t_out(r[9]), t_out(r[10]))


def pairing_of(r):
    return Pairing(r[0], r[1], r[2], load_value(r[3]), t_out(r[4]))


def audit_of(r):
    return AuditEntry(r[0], t_out(r[1]), r[2], r[3], r[4], load_value(r[5]))


# -------------------------------------------------------------- statements

Q = namedtuple("Q", "sql params")          # one statement
Many = namedtuple("Many", "sql seq")       # one statement, many parameter rows
Result = namedtuple("Result", "rows count")  # rows (or []) and the row count
# PostgreSQL only: COPY rows into a table, in a savepoint; count None if a row
# broke a unique key (nothing of it stays: the script falls back to INSERT)
Copy = namedtuple("Copy", "table columns seq")
# PostgreSQL: a batch's history rows (as arrays of its columns), those already stored skipped
PG_INSERT_TELEMETRY_IGNORING = (
    "INSERT INTO telemetry (device, service, object, t, value) "
    "SELECT * FROM unnest(?::text[], ?::smallint[], ?::integer[], ?::float8[], ?::json[]) "
    "ON CONFLICT DO NOTHING")
TELEMETRY_COLUMNS = ("device", "service", "object", "t", "value")
# one ANNOUNCE to register (register_devices): what upsert_device takes
Announce = namedtuple("Announce", "id services consumes flags now credential_ref "
                      "first_pairings first_audit claim", defaults=(None, (), None, None))


def check_registration(id, services, consumes, flags, now, credential_ref):
    """InvalidValue unless register_devices would take these values (its own checks):
    a bridge refuses such a registration before it writes it or counts it against a
    limit."""
    Store._device_row(id, services, consumes, flags, now, credential_ref)


def _in(n):
    return ",".join("?" * n)


# SQLite: command rows read in one step (sqlite_rows); the REAL columns of COMMAND_COLS
_COMMAND_REALS = (7, 8, 9, 11, 13, 14)
_SQLITE_COMMANDS = sqlite_rows.rows_out(COMMAND_COLS, [c.strip() for i, c in enumerate(
    COMMAND_COLS.split(",")) if i in _COMMAND_REALS])


# SQLite: a batch's rows (one JSON parameter) as table v(columns) to join an UPDATE with;
# materialized, so the planner looks each row up by its key instead of scanning for it
_SQLITE_ROWS = "WITH v(%s) AS MATERIALIZED (SELECT %s FROM json_each(?)) "


# whether the device (an SQL expression) has another queued, unexpired command (? = now)
_MORE = ("EXISTS (SELECT 1 FROM commands q WHERE q.device = %s AND q.status = 'queued' "
         "AND (q.expires_at IS NULL OR q.expires_at > ?))")


def _no_groups():
    """A transaction-script step that runs nothing and yields no groups."""
    return {}
    yield


def _rounds(items, key):
    """items split into lists in which no key repeats, in order (the first of each
    key in the first round, its second in the second ...): one bulk statement per
    round, so an item listed twice is applied after the first, not merged with it."""
    rounds, seen = [], {}
    for item in items:
        k = key(item)
        n = seen.get(k, 0)
        seen[k] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(item)
    return rounds


class Store(abc.ABC):
    """The bridge's storage. Backends implement _run, open and close."""

    dialect = None          # "sqlite" or "postgresql"
    copy_telemetry = True   # postgresql: new history rows by COPY (False: always INSERT)
    schema = SCHEMA_VERSION  # the schema version a backend creates (SQLite 2, PostgreSQL 5)
    history_table = "telemetry"   # the table (or view) delete_device deletes history from

    # -- backend

    @abc.abstractmethod
    async def _run(self, script, write=True):
        """Run script() (a transaction script) in one transaction; return its value."""

    async def _run_one_round(self, script, one):
        """A batch's script: when `one` (PostgreSQL, one round), its first statement
        makes every write and the statements after it only read why an item missed
        (they may see a later state): run as _run_single; else in one transaction."""
        return await (self._run_single(script) if one else self._run(script))

    async def _run_single(self, script):
        """_run for a script of ONE statement (PostgresStore runs it as its own
        transaction, without the round trips of BEGIN and COMMIT; a statement after
        it, a read, as one more)."""
        return await self._run(script)

    async def _make_room(self, rows):
        """Before storing prepared telemetry rows: make room for them (PostgreSQL:
        the time partitions they fall in)."""

    async def _offload(self, fn, *args):
        """Run CPU-heavy preparation off the event loop."""
        return await asyncio.to_thread(fn, *args)

    @abc.abstractmethod
    async def open(self):
        """Connect and create or check the schema (idempotent)."""

    @abc.abstractmethod
    async def close(self):
        """Finish pending work and release the database. Idempotent."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # -- schema

    def _s_schema(self, ddl, now):
        if self.dialect == "postgresql":
            # several instances may start at once
            yield Q("SELECT pg_advisory_xact_lock(7012)", ())
        for stmt in ddl:
            yield Q(stmt, ())
        r = yield Q("SELECT max(version) FROM schema_version", ())
        v = r.rows[0][0]
        if v is None:
            yield Q("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (self.schema, float(now)))
            v = self.schema
        if v > self.schema:
            raise SchemaError("database schema version %d is newer than this bridge's %d"
                              % (v, self.schema))
        # a backend's own migrations follow in its override (SqliteStore: schema 1 -> 2,
        # sqlite_frames); PostgreSQL's older schemas keep working as they are
        return v

    async def schema_version(self):
        def script():
            r = yield Q("SELECT max(version) FROM schema_version", ())
            return r.rows[0][0]
        return await self._run(script, write=False)

    # -- devices

    def _s_need_device(self, device):
        r = yield Q("SELECT 1 FROM devices WHERE id = ?", (device,))
        if not r.rows:
            raise UnknownDevice([device])

    # %s: where the rows come from (_s_insert_rows)
    _UPSERT = ("INSERT INTO devices (" + DEVICE_COLS + ") %s "
               "ON CONFLICT (id) DO UPDATE SET services = excluded.services, "
               "consumes = excluded.consumes, flags = excluded.flags, "
               "credential_ref = COALESCE(excluded.credential_ref, devices.credential_ref), "
               "last_seen = excluded.last_seen, presence = 'online', "
               "presence_at = CASE WHEN devices.presence = 'online' "
               "THEN devices.presence_at ELSE excluded.presence_at END")
    _PAIR_FIRST = ("INSERT INTO pairings (" + PAIRING_COLS + ") %s "
                   "ON CONFLICT (device, controller) DO UPDATE SET role = excluded.role")
    _AUDIT_FIRST = "INSERT INTO audit (at, actor, action, target, detail) %s"

    _UPSERT_TYPES = ("text", "json", "json", "int4", "text", "float8", "float8", "text", "float8")
    _PAIR_TYPES = ("text", "text", "text", "json", "float8")
    _AUDIT_TYPES = ("float8", "text", "text", "text", "json")

    def _s_insert_rows(self, sql, rows, types):
        """Run an INSERT template (%s: the rows' source) for rows (tuples of one length,
        of PostgreSQL `types`) in ONE statement: PostgreSQL a column array each
        (unnest), SQLite the rows in one JSON parameter (sqlite_rows)."""
        if not rows:
            return
        if self.dialect == "postgresql":
            yield Q(sql % _pg_unnest(types), tuple(list(col) for col in zip(*rows)))
        else:
            yield Q(sql % ("SELECT %s FROM json_each(?) WHERE true"
                           % sqlite_rows.rows_in(len(rows[0]))), (sqlite_rows.dumps(rows),))

    @staticmethod
    def _device_row(id, services, consumes, flags, now, credential_ref, lists=None,
                    names=None):
        """lists (optional): a dict of the services and consumes checked and encoded so
        far, by their text (a batch of one model's devices announces the same lists);
        names (optional): a set of the names checked so far (check_names)."""
        check_device(id)
        key = (repr(services), repr(consumes)) if lists is not None else None
        sv_cs = lists.get(key) if key is not None else None
        if sv_cs is None:
            sv_cs = (json.dumps(_check_services(services)), json.dumps(_check_consumes(consumes)))
            if key is not None:
                lists[key] = sv_cs
        sv, cs = sv_cs
        check_int(flags, 0, 0x7FFFFFFF, "flags")
        if credential_ref is not None:
            if names is None:
                check_name(credential_ref, "credential_ref")
            else:
                check_names(credential_ref, "credential_ref", names)
        return (id, sv, cs, flags, credential_ref, float(now), float(now), "online", float(now))

    async def upsert_device(self, id, services, consumes, flags, now, credential_ref=None,
                            first_pairings=(), first_audit=None, claim=None):
        """Register a device or update it from an ANNOUNCE; it is online now.

        services: [[service id, major, minor], ...]; consumes: [service id, ...];
        flags: the ANNOUNCE flags (bit 0 = sleepy). credential_ref (optional)
        replaces the stored one when given. When the device is new, first_pairings
        [(controller, role)] and first_audit (actor, action, detail) are written in
        the same transaction, so no reader sees a new device without its owner.
        claim (optional): claim(stored credential_ref) -> bool, asked in the same
        transaction for a known device; False raises ClaimRefused and changes nothing.
        Returns True for a new device.
        """
        outcome = (await self.register_devices([Announce(
            id, services, consumes, flags, now, credential_ref, first_pairings, first_audit,
            claim)]))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def register_devices(self, announces):
        """upsert_device() for many Announces in ONE transaction (ANNOUNCEs that
        arrived together): per announce, in order, True (new device), False, or
        the InvalidValue / ClaimRefused that upsert_device would raise (that one
        changes nothing, the others are stored). An id listed twice is
        registered twice, in order."""
        return (await self.register_devices_waiting(announces))[0]

    async def register_devices_waiting(self, announces, then=None):
        """register_devices(), and in the same transaction the ids among the registered
        that have a queued command then: (outcomes, set of ids, then's value). A device
        with none needs no delivery for its registration (a command queued after this
        transaction commits is its queuer's to deliver). then (optional): then(ids
        registered) -> a transaction script run last in the same transaction (the
        routes of several instances, cloud_bridge/instances.py); None without it.
        PostgreSQL folds a `then` that has sql_parts (instances.RouteRecord) into
        its registration statement."""
        items = list(announces)
        out = [None] * len(items)
        valid = []
        details = {}   # id(audit detail) -> (detail, its JSON): a bridge passes one object
        lists = {}     # the batch's services and consumes, checked and encoded once each
        names = set()  # the names checked valid in this batch
        for i, a in enumerate(items):
            try:
                check_time(a.now, "now")
                row = self._device_row(a.id, a.services, a.consumes, a.flags, a.now,
                                       a.credential_ref, lists, names)
                pairings = [(check_names(c, "controller", names),
                             check_choice(r, ROLES, "role")) for c, r in a.first_pairings]
                audit = None
                if a.first_audit is not None:
                    detail = a.first_audit[2]
                    known = details.get(id(detail))
                    if known is None or known[0] is not detail:
                        known = details[id(detail)] = (detail, dump_value(detail))
                    audit = (float(a.now), check_names(a.first_audit[0], "actor", names),
                             check_names(a.first_audit[1], "action", names), a.id, known[1])
                valid.append((i, a, row, pairings, audit))
            except InvalidValue as e:
                out[i] = e
        pg = self.dialect == "postgresql"
        none = dump_value(None)
        rounds = _rounds(valid, lambda v: v[1].id)
        # PostgreSQL decides the claims inside its writing statement when they say how
        # (a `sql_rule`, registration.Claim); any other claim is asked after a read
        rules = {getattr(v[1].claim, "sql_rule", None) for v in valid if v[1].claim is not None}
        in_sql = pg and None not in rules and len(rules) <= 1
        rule = rules.pop() if in_sql and rules else None
        fold = then if in_sql and len(rounds) <= 1 and hasattr(then, "sql_parts") else None

        def script():
            res = list(out)
            stored, waiting = [], set()
            for part in rounds:
                if in_sql:
                    written, queued, routed = yield from self._s_register_pg(
                        part, rule, res, none, fold)
                    stored += written
                    waiting |= queued
                    if fold is not None:
                        return res, waiting, fold.result(routed) if stored else None
                    continue
                ids = [v[1].id for v in part]
                if pg:
                    r = yield Q("SELECT id, credential_ref FROM devices WHERE id = ANY(?)", (ids,))
                    held = dict(r.rows)
                else:   # SQLite: each statement of few steps (sqlite_rows)
                    r = yield Q("SELECT " + sqlite_rows.rows_out("id, credential_ref") +
                                " FROM devices WHERE id IN (SELECT value FROM json_each(?))",
                                (json.dumps(ids),))
                    held = dict(sqlite_rows.unpack(r.rows[0][0]))
                take = []
                for v in part:
                    i, a = v[0], v[1]
                    if a.id in held and a.claim is not None and not a.claim(held[a.id]):
                        res[i] = ClaimRefused(a.id, held[a.id])
                    else:
                        res[i] = a.id not in held
                        take.append(v)
                if not take:
                    continue
                if pg:   # the claims are decided: the same one statement writes
                    written, queued, _ = yield from self._s_register_pg(take, None, res, none)
                    stored += written
                    waiting |= queued
                    continue
                take.sort(key=lambda v: v[1].id)    # one lock order
                new = [v for v in take if v[1].id not in held]
                pair_rows = [(v[1].id, c, role, none, float(v[1].now))
                             for v in new for c, role in v[3]]
                audit_rows = [v[4] for v in new if v[4] is not None]
                stored += [v[1].id for v in take]
                yield from self._s_insert_rows(self._UPSERT, [v[2] for v in take],
                                               self._UPSERT_TYPES)
                yield from self._s_insert_rows(self._PAIR_FIRST, pair_rows, self._PAIR_TYPES)
                yield from self._s_insert_rows(self._AUDIT_FIRST, audit_rows, self._AUDIT_TYPES)
            if stored and not pg:
                waiting |= yield from self._s_queued_of(stored)
            value = (yield from then(stored)) if then is not None and stored else None
            return res, waiting, value
        if in_sql and len(rounds) <= 1 and (then is None or fold is not None):
            return await self._run_single(script)   # one statement: its own transaction
        return await self._run(script)

    # PostgreSQL's registration statement (_s_register_pg): the batch's device rows and
    # the claimant of each as table n; `old` the stored rows of their ids (locked, in id
    # order; spot_devices_held, planned for the ids given at each call: a join of n with
    # devices kept the generic plan psycopg's prepared statement made while the table
    # was small, a scan of the whole table for every batch); `ok` the rows whose claim
    # holds (%(rule)s: the claim's SQL rule over o.credential_ref and n.claimant, or
    # n.checked: decided already). `old` is read whole (count) before `ok` gives a row:
    # a row the upsert changed first would be skipped by old's lock (changed by this
    # statement), and the device taken for new.
    # The upsert's update checks the claim again (%(recheck)s) against a row it meets
    # that `old` did not read: one another statement inserted meanwhile (a first
    # registration of the same id at the same time) is updated only if the claim holds
    # against it (old's rows first: a hashed look-up, not a scan of n for each row)
    _REG_PG = (
        "WITH n AS (SELECT * FROM unnest(%(n)s) AS n(id, services, consumes, flags, "
        "credential_ref, first_seen, last_seen, presence, presence_at, claimant, checked)), "
        "old AS (SELECT * FROM spot_devices_held(ARRAY(SELECT id FROM n))), "
        "ok AS (SELECT n.* FROM n LEFT JOIN old o ON o.id = n.id "
        "WHERE (SELECT count(*) FROM old) >= 0 AND (o.id IS NULL OR n.checked OR %(rule)s)), "
        "d AS (%(upsert)s WHERE devices.id IN (SELECT id FROM old) OR EXISTS (SELECT 1 "
        "FROM n WHERE n.id = excluded.id AND (n.checked OR %(recheck)s)) RETURNING id), "
        "p AS (%(pair)s), a AS (%(audit)s)%(more)s "
        "SELECT 0, id, credential_ref FROM old UNION ALL SELECT 1, id, NULL FROM d "
        "UNION ALL (SELECT DISTINCT 2, device, NULL FROM commands "
        "WHERE device IN (SELECT id FROM d) AND status = 'queued')%(rows)s")
    # first pairings and audit rows: only of the devices written that were not stored
    _REG_PG_FIRST = (" AS x(%s) WHERE x.%s IN (SELECT id FROM d) "
                     "AND x.%s NOT IN (SELECT id FROM old)")

    def _s_register_pg(self, part, rule, res, none, fold=None):
        """PostgreSQL: one round of registrations (ids unique) in ONE statement: the read
        of who holds the ids, the claims (rule: the claims' SQL rule; None: the rows of
        `part` are claimed already), the device upsert, the new devices' first pairings
        and audit rows, and the devices with a queued command. Sets res[i] per item (new,
        or ClaimRefused); returns (the ids written, the set of those with a command
        queued, the rows (kind, device) of fold's parts: fold, a `then` with sql_parts
        over the CTE d of the ids written, run in the same statement)."""
        from .pg_binary import column_arrays   # PostgreSQL only: psycopg is optional
        by_id = {v[1].id: v for v in sorted(part, key=lambda v: v[1].id)}
        rows = [v[2] + (v[1].claim.identity if rule is not None and v[1].claim is not None
                        else None, rule is None or v[1].claim is None)
                for v in by_id.values()]
        pair_rows = [(v[1].id, c, role, none, float(v[1].now))
                     for v in by_id.values() for c, role in v[3]]
        audit_rows = [v[4] for v in by_id.values() if v[4] is not None]
        first = self._REG_PG_FIRST
        ctes, cte_params, rows_sql, rows_params = fold.sql_parts("d") if fold else ("", (), "", ())
        sql = self._REG_PG % {
            "more": ", " + ctes if ctes else "", "rows": rows_sql,
            "n": ", ".join("?::%s[]" % t for t in self._UPSERT_TYPES + ("text", "bool")),
            "rule": rule("o.credential_ref", "n.claimant") if rule is not None else "false",
            "recheck": rule("devices.credential_ref", "n.claimant") if rule is not None
            else "false",
            "upsert": self._UPSERT % ("SELECT " + DEVICE_COLS + " FROM ok ORDER BY id"),
            "pair": self._PAIR_FIRST % (_pg_unnest(self._PAIR_TYPES) + first % (
                PAIRING_COLS, "device", "device")),
            "audit": self._AUDIT_FIRST % (_pg_unnest(self._AUDIT_TYPES) + first % (
                "at, actor, action, target, detail", "target", "target"))}
        r = yield Q(sql, column_arrays(self._UPSERT_TYPES + ("text", "bool"), rows)
                    + column_arrays(self._PAIR_TYPES, pair_rows)
                    + column_arrays(self._AUDIT_TYPES, audit_rows) + tuple(cte_params)
                    + tuple(rows_params))
        held, written, queued, routed = {}, [], set(), []
        for kind, dev, cred in r.rows:
            if kind == 0:
                held[dev] = cred
            elif kind == 1:
                written.append(dev)
            elif kind == 2:
                queued.add(dev)
            else:
                routed.append((kind, dev))
        done = set(written)
        for dev, v in by_id.items():
            res[v[0]] = (dev not in held) if dev in done else ClaimRefused(dev, held.get(dev))
        return written, queued, routed

    @staticmethod
    def _s_queued_of(ids):
        """SQLite: the ids among `ids` with a queued command (expired or not: the claim
        decides), read in one row."""
        r = yield Q("SELECT json_group_array(device) FROM (SELECT DISTINCT device FROM "
                    "commands WHERE device IN (SELECT value FROM json_each(?)) "
                    "AND status = 'queued')", (json.dumps(sorted(set(ids))),))
        return set(json.loads(r.rows[0][0]))

    async def upsert_devices(self, announces, now):
        """upsert_device for many devices in one transaction (a reconnect storm).

        announces: [(id, services, consumes, flags), ...]. Returns the ids
        that were new, sorted. One bad announce rejects the whole call.
        """
        check_time(now, "now")
        if type(announces) not in (list, tuple):
            raise InvalidValue("announces must be a list of (id, services, consumes, flags)")
        rows = {}
        for a in announces:
            if type(a) not in (list, tuple) or len(a) != 4:
                raise InvalidValue("each announce must be (id, services, consumes, flags)")
            rows[a[0]] = self._device_row(a[0], a[1], a[2], a[3], now, None)
        ids = sorted(rows)
        if not ids:
            return []

        def script():
            new = yield from self._s_unknown_devices(ids)
            yield from self._s_insert_rows(self._UPSERT, [rows[i] for i in ids],  # one lock order
                                           self._UPSERT_TYPES)
            return sorted(new)
        return await self._run(script)

    def _s_groups(self, ids):
        if self.dialect == "postgresql":
            r = yield Q("SELECT device, grp FROM device_groups WHERE device = ANY(?) "
                        "ORDER BY device, grp", (list(ids),))
        else:
            r = yield Q("SELECT device, grp FROM device_groups WHERE device IN "
                        "(SELECT value FROM json_each(?)) ORDER BY device, grp",
                        (json.dumps(list(ids)),))
        groups = {}
        for dev, g in r.rows:
            groups.setdefault(dev, []).append(g)
        return groups

    async def get_device(self, id):
        """The Device, or None if unknown."""
        check_device(id)

        def script():
            r = yield Q("SELECT " + DEVICE_COLS + " FROM devices WHERE id = ?", (id,))
            if not r.rows:
                return None
            g = yield Q("SELECT grp FROM device_groups WHERE device = ? ORDER BY grp", (id,))
            return device_of(r.rows[0], [x[0] for x in g.rows])
        return await self._run(script, write=False)

    async def list_devices(self, presence=None):
        """Every Device (optionally only those with this presence), by id."""
        if presence is not None:
            check_choice(presence, PRESENCE, "presence")

        def script():
            if presence is None:
                r = yield Q("SELECT " + DEVICE_COLS + " FROM devices ORDER BY id", ())
                g = yield Q("SELECT device, grp FROM device_groups ORDER BY device, grp", ())
                groups = {}
                for dev, grp in g.rows:
                    groups.setdefault(dev, []).append(grp)
            else:
                r = yield Q("SELECT " + DEVICE_COLS + " FROM devices WHERE presence = ? "
                            "ORDER BY id", (presence,))
                groups = yield from self._s_groups([x[0] for x in r.rows])
            return [device_of(x, groups.get(x[0], [])) for x in r.rows]
        return await self._run(script, write=False)

    async def list_devices_page(self, after=None, limit=1000, presence=None, group=None,
                                controller=None, profile=None, alarm=None):
        """One page of Devices by id: those after `after` (None: from the first), at
        most `limit`, optionally only those with this presence, in this group, or
        paired with this controller, serving this profile (service id), or with
        (alarm=True) or without (False) an active alarm in their latest values.
        Each page costs the same however many devices there are (the id, group
        and controller indexes lead; the other filters are checked row by row
        in id order until the page is full)."""
        check_limit(limit)
        if profile is not None:
            check_int(profile, 0, 255, "profile")
        if alarm not in (None, True, False):
            raise InvalidValue("alarm must be True, False or None")
        for value, what in ((after, "after"), (group, "group"), (controller, "controller")):
            if value is not None:
                check_name(value, what)
        if presence is not None:
            check_choice(presence, PRESENCE, "presence")
        cols = ", ".join("d." + c.strip() for c in DEVICE_COLS.split(","))
        if controller is not None:     # drive from the controller's pairings
            sql = ("SELECT " + cols + " FROM pairings p JOIN devices d ON d.id = p.device "
                   "WHERE p.controller = ?")
            params, key = [controller], "p.device"
        elif group is not None:        # drive from the group's members
            sql = ("SELECT " + cols + " FROM device_groups g JOIN devices d ON d.id = g.device "
                   "WHERE g.grp = ?")
            params, key, group = [group], "g.device", None
        else:
            sql, params, key = "SELECT " + cols + " FROM devices d WHERE 1 = 1", [], "d.id"
        if group is not None:
            sql += " AND EXISTS (SELECT 1 FROM device_groups g WHERE g.device = d.id AND g.grp = ?)"
            params.append(group)
        if presence is not None:
            sql += " AND d.presence = ?"
            params.append(presence)
        if profile is not None:
            if self.dialect == "postgresql":
                sql += (" AND EXISTS (SELECT 1 FROM json_array_elements(d.services) s "
                        "WHERE (s->>0)::int = ?)")
                params.append(profile)
            else:
                sql += (" AND EXISTS (SELECT 1 FROM json_each(d.services) s "
                        "WHERE json_extract(s.value, '$[0]') = ?)")
                params.append(profile)
        if alarm is not None:
            from .store_fleet import alarm_sql
            cond, cond_params = alarm_sql(self, "d.id")
            sql += (" AND " if alarm else " AND NOT ") + cond
            params.extend(cond_params)
        if after is not None:
            sql += " AND %s > ?" % key
            params.append(after)
        sql += " ORDER BY %s LIMIT ?" % key
        params.append(limit)

        def script():
            r = yield Q(sql, tuple(params))
            groups = yield from self._s_groups([x[0] for x in r.rows]) if r.rows else _no_groups()
            return [device_of(x, groups.get(x[0], [])) for x in r.rows]
        return await self._run(script, write=False)

    async def silent_devices(self, before):
        """[(id, sleepy)] of the online devices last seen before `before`, by id: what a
        presence sweep marks offline (or sleeping), without reading every Device."""
        check_time(before, "before")

        def script():
            r = yield Q("SELECT id, flags FROM devices WHERE presence = 'online' "
                        "AND last_seen < ? ORDER BY id", (float(before),))
            return [(x[0], bool(x[1] & 1)) for x in r.rows]
        return await self._run(script, write=False)

    async def delete_device(self, id, actor, now, detail=None):
        """Forget a device and all the store keeps about it (telemetry, latest values,
        commands, plans, pairings, groups) and audit it, in one transaction: its id
        is free to be registered again. False (nothing written) for an unknown id."""
        check_device(id)
        check_name(actor, "actor")
        check_time(now, "now")
        audit_detail = dump_value(detail)

        def script():
            r = yield Q("SELECT 1 FROM devices WHERE id = ?", (id,))
            if not r.rows:
                return False
            for table in (self.history_table, "latest", "plans", "commands", "pairings",
                          "device_groups"):   # plans before the commands they name
                yield Q("DELETE FROM " + table + " WHERE device = ?", (id,))
            yield Q("DELETE FROM devices WHERE id = ?", (id,))
            yield Q("INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                    (float(now), actor, "delete", id, audit_detail))
            return True
        return await self._run(script)

    async def set_presence(self, id, presence, now):
        """Set presence ("online", "sleeping", "offline"); return the previous one."""
        check_device(id)
        check_choice(presence, PRESENCE, "presence")
        check_time(now, "now")
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""

        def script():
            r = yield Q("SELECT presence FROM devices WHERE id = ?" + lock, (id,))
            if not r.rows:
                raise UnknownDevice([id])
            old = r.rows[0][0]
            if old != presence:
                yield Q("UPDATE devices SET presence = ?, presence_at = ? WHERE id = ?",
                        (presence, float(now), id))
            return old
        return await self._run(script)

    async def touch(self, id, now):
        """Record that the device was heard from at `now` (last_seen never goes back)."""
        check_device(id)
        check_time(now, "now")

        def script():
            r = yield Q("UPDATE devices SET last_seen = CASE WHEN last_seen > ? THEN last_seen "
                        "ELSE ? END WHERE id = ?", (float(now), float(now), id))
            if r.count == 0:
                raise UnknownDevice([id])
        return await self._run(script)

    async def set_groups(self, id, groups):
        """Replace the device's groups (names for group commands)."""
        check_device(id)
        if type(groups) not in (list, tuple, set, frozenset):
            raise InvalidValue("groups must be a list of names")
        gs = sorted({check_name(g, "group") for g in groups})

        def script():
            yield from self._s_need_device(id)
            yield Q("DELETE FROM device_groups WHERE device = ?", (id,))
            if gs:
                yield Many("INSERT INTO device_groups (device, grp) VALUES (?, ?)",
                           [(id, g) for g in gs])
        return await self._run(script)

    async def devices_in_group(self, group):
        """Ids of the devices in the group, sorted."""
        check_name(group, "group")

        def script():
            r = yield Q("SELECT device FROM device_groups WHERE grp = ? ORDER BY device",
                        (group,))
            return [x[0] for x in r.rows]
        return await self._run(script, write=False)

    # -- telemetry

    def _s_unknown_devices(self, ids):
        if self.dialect == "postgresql":
            r = yield Q("SELECT d FROM unnest(?::text[]) AS d "
                        "WHERE NOT EXISTS (SELECT 1 FROM devices WHERE id = d)", (ids,))
        else:
            r = yield Q("SELECT value FROM json_each(?) "
                        "WHERE value NOT IN (SELECT id FROM devices)", (json.dumps(ids),))
        return [x[0] for x in r.rows]

    async def add_telemetry(self, rows):
        """Store telemetry rows (device, service, object, t, value) in one transaction.

        Also moves the latest-value table forward. Returns how many rows were
        new (rows already stored for the same time are ignored). Raises
        UnknownDevice (storing nothing) if any device is not registered.
        Each backend does it in its own statements (store_sqlite, store_postgres).
        """
        raise NotImplementedError

    async def add_telemetry_frames(self, frames):
        """Store the rows of several NOTIFY frames (a list of row lists, each row checked
        as ingest.notify_rows checks it) in one transaction; [refused] per frame.

        A refused frame (True) gave a stored (device, service, object, t), or one an
        earlier frame of the batch gave, another value: nothing of it is stored. A
        frame repeating stored values (a retransmission) is taken and stored once.
        Each backend does it in its own statements (store_sqlite, store_postgres).
        """
        raise NotImplementedError

    async def latest(self, device):
        """{(service, object): (value, t)}: the newest value of every object ({} if unknown)."""
        check_device(device)

        def script():
            r = yield Q("SELECT service, object, value, t FROM latest WHERE device = ?",
                        (device,))
            return {(x[0], x[1]): (load_value(x[2]), t_out(x[3])) for x in r.rows}
        return await self._run(script, write=False)

    async def history(self, device, service, object, t_from=None, t_to=None, limit=1000,
                      descending=False):
        """[(t, value), ...] of one object with t_from <= t < t_to, oldest first.

        Either bound may be None (open). At most `limit` rows: the oldest ones,
        or with descending=True the newest ones, newest first.
        """
        check_device(device)
        check_int(service, 0, 255, "service")
        check_int(object, 0, 0x7FFFFFFF, "object")
        check_opt_time(t_from, "t_from")
        check_opt_time(t_to, "t_to")
        check_limit(limit)
        sql = "SELECT t, value FROM telemetry WHERE device = ? AND service = ? AND object = ?"
        params = [device, service, object]
        if t_from is not None:
            sql += " AND t >= ?"
            params.append(float(t_from))
        if t_to is not None:
            sql += " AND t < ?"
            params.append(float(t_to))
        sql += " ORDER BY t DESC LIMIT ?" if descending else " ORDER BY t LIMIT ?"
        params.append(limit)

        def script():
            r = yield Q(sql, tuple(params))
            return [(t_out(x[0]), load_value(x[1])) for x in r.rows]
        return await self._run(script, write=False)

    async def prune_telemetry(self, before_t):
        """Delete telemetry older than before_t (the latest table keeps its values).

        Returns the number of rows deleted.
        """
        check_time(before_t, "before_t")

        def script():
            r = yield Q("DELETE FROM telemetry WHERE t < ?", (float(before_t),))
            return r.count
        return await self._run(script)

    # -- commands

    def _check_command(self, device, service, op, actor, now, expires_at, timeout):
        check_device(device)
        check_int(service, 0, 254, "service")
        if op not in _frame.REQUESTS or type(op) is not int:
            raise InvalidValue("op must be a request operation %s, not %r"
                               % (list(_frame.REQUESTS), op))
        check_name(actor, "actor")
        check_time(now, "now")
        check_opt_time(expires_at, "expires_at")
        if expires_at is not None and expires_at <= now:
            raise InvalidValue("expires_at must be after now")
        if timeout is not None:
            check_time(timeout, "timeout")
            if timeout <= 0:
                raise InvalidValue("timeout must be positive")

    def _s_enqueue(self, device, service, op, body, actor, now, expires_at, timeout):
        yield from self._s_need_device(device)
        r = yield Q("INSERT INTO commands (device, service, op, body, actor, status, "
                    "created_at, expires_at, timeout) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?) "
                    "RETURNING id",
                    (device, service, op, body, actor, float(now),
                     None if expires_at is None else float(expires_at),
                     None if timeout is None else float(timeout)))
        return r.rows[0][0]

    async def enqueue(self, device, service, op, body, actor, now, expires_at=None,
                      timeout=None):
        """Queue a request (READ/WRITE/INVOKE/SUBSCRIBE/UNSUBSCRIBE) for a device.

        actor: who asked (user, API key, plugin). expires_at: give up if not
        sent by then (None: never). timeout: seconds to wait for the answer
        once sent (None: forever). Returns the command id.
        """
        ids = await self.enqueue_many([device], service, op, body, actor, now, expires_at, timeout)
        return ids[0]

    async def enqueue_many(self, devices, service, op, body, actor, now, expires_at=None,
                           timeout=None):
        """enqueue() the same request for each of devices in ONE transaction (a group
        command): all are queued or, on any error, none. Returns their ids in order."""
        devices = list(devices)
        for device in devices:
            self._check_command(device, service, op, actor, now, expires_at, timeout)
        b = dump_value(body)
        if len(devices) < 2:
            def script():
                ids = []
                for device in devices:
                    ids.append((yield from self._s_enqueue(device, service, op, b, actor, now,
                                                           expires_at, timeout)))
                return ids
            return await self._run(script)
        params = (service, op, b, actor, float(now),
                  None if expires_at is None else float(expires_at),
                  None if timeout is None else float(timeout))

        def bulk():   # few statements whatever the number of devices
            unknown = set((yield from self._s_unknown_devices(sorted(set(devices)))))
            if unknown:
                raise UnknownDevice([next(d for d in devices if d in unknown)])
            if self.dialect != "postgresql":   # SQLite: one INSERT, the ids read in one row
                r = yield Q("SELECT max(id) FROM commands", ())
                yield Q("INSERT INTO commands (device, service, op, body, actor, status, "
                        "created_at, expires_at, timeout) SELECT value, ?, ?, ?, ?, 'queued', "
                        "?, ?, ? FROM json_each(?) ORDER BY key", params + (json.dumps(devices),))
                # the only writer: the rows after the old largest id are these, in order
                r = yield Q("SELECT json_group_array(id) FROM (SELECT id FROM commands "
                            "WHERE id > ? ORDER BY id)", (r.rows[0][0] or 0,))
                return sorted(json.loads(r.rows[0][0]))
            ids = [None] * len(devices)
            for part in _rounds(range(len(devices)), lambda i: devices[i]):
                r = yield Q("INSERT INTO commands (device, service, op, body, actor, status, "
                            "created_at, expires_at, timeout) SELECT d, ?, ?, ?, ?, 'queued', "
                            "?, ?, ? FROM unnest(?::text[]) WITH ORDINALITY AS u(d, n) "
                            "ORDER BY n RETURNING id, device",
                            params + ([devices[i] for i in part],))
                got = dict((dev, cid) for cid, dev in r.rows)
                for i in part:
                    ids[i] = got[devices[i]]
            return ids
        return await self._run(bulk)

    async def next_pending(self, device, now):
        """The oldest queued, unexpired command for the device, or None (changes nothing)."""
        check_device(device)
        check_time(now, "now")

        def script():
            r = yield Q("SELECT " + COMMAND_COLS + " FROM commands WHERE device = ? AND "
                        "status = 'queued' AND (expires_at IS NULL OR expires_at > ?) "
                        "ORDER BY id LIMIT 1", (device, float(now)))
            return command_of(r.rows[0]) if r.rows else None
        return await self._run(script, write=False)

    async def release_claims(self, instance_id):
        """Queue again every command instance_id claimed and never sent (it stopped
        between the claim and the send: nothing went out); the device of each, one a command.
        Call only while no running bridge holds that id."""
        check_name(instance_id, "instance_id")
        return await self._run(lambda: s_release_claims(instance_id))

    async def claim_and_send_many(self, sends, now, instance_id, routed=False):
        """For each (device, mid) of sends, in ONE write: take the device's oldest
        queued, unexpired command for this instance and record it sent with that
        message id at `now` (status sent, claimed_by and claimed_at set to this
        instance and now): [Command (status "sent") or None] in the order given.

        The record of the send is the claim, so the frame goes out after one
        commit. A crash after it leaves the command sent (it times out unanswered,
        never goes out twice). Two callers never get one command. With `routed`
        (PostgreSQL shared by instances, cloud_bridge/instances.py), a device whose
        route another instance holds gets None: after a hand-over the old holder
        sends nothing, and what the hand-over queued again stays for the new holder.
        (Status "claimed" is what bridges before this call left: release_claims.)"""
        sends = [tuple(x) for x in sends]
        for device, mid in sends:
            check_device(device)
            check_int(mid, 0, 0xFFFF, "mid")
        check_time(now, "now")
        check_name(instance_id, "instance_id")
        devices = [d for d, _ in sends]
        mids = [m for _, m in sends]
        routed = routed and self.dialect == "postgresql"
        cond = "status = 'queued'"
        pick = ("SELECT id FROM commands WHERE device = %s "
                "AND (expires_at IS NULL OR expires_at > ?) AND " + cond + " ORDER BY id LIMIT 1")
        # the claim records the send: one commit before the frame goes out
        head = ("UPDATE commands SET status = 'sent', claimed_by = ?, claimed_at = ?, "
                "mid = %s.pmid, sent_at = ? ")
        head_params = (instance_id, float(now), float(now))
        pg = self.dialect == "postgresql"
        # PostgreSQL: what the write set is known, the rest only is read back
        tail = " AND " + cond + " RETURNING " + _QUEUED_COLS + ", picked.pmid"
        as_command = _sent_command(instance_id, now)

        rounds = _rounds(range(len(devices)), lambda i: devices[i])

        def script():
            out = [None] * len(devices)
            for part in rounds:
                if pg:   # one statement for the round; a row another claimer holds is skipped
                    # (MATERIALIZED: the picks are made once, not again for each row updated)
                    if routed:   # route rows locked in device order, as hand-overs lock them
                        part = sorted(part, key=lambda i: devices[i])
                    arrays = (_pg_array("text", [devices[i] for i in part]),
                              _pg_array("int4", [mids[i] for i in part]))
                    source = "unnest(?::text[], ?::int4[]) AS d(dev, mid)"
                    if routed:
                        # a device whose route another instance holds is skipped; its route
                        # row is read FOR SHARE before its command is picked, so a hand-over
                        # in flight (it holds the row FOR UPDATE) is waited for and then seen
                        # (none of the device's commands goes out here), and one that starts
                        # later waits for this statement (what it sent stays sent, once)
                        source = ("(SELECT * FROM " + source + " WHERE coalesce((SELECT "
                                  "r.instance FROM device_routes r WHERE r.device = d.dev "
                                  "FOR SHARE), ?) = ? OFFSET 0) AS d")
                    r = yield Q("WITH picked AS MATERIALIZED (SELECT c.id AS pid, d.mid AS pmid"
                                " FROM " + source + " CROSS JOIN LATERAL (" + pick % "d.dev"
                                + " FOR UPDATE SKIP LOCKED) AS c) " + head % "picked"
                                + "FROM picked WHERE commands.id = picked.pid" + tail,
                                arrays + ((instance_id, instance_id) if routed else ())
                                + (float(now),) + head_params)
                    got = {row[1]: as_command(row) for row in r.rows}
                    for i in part:
                        out[i] = got.get(devices[i])
                    continue
                # SQLite (one writer at a time: what is read stays so until the commit):
                # the round's picks read whole in one row, then claimed in one UPDATE
                c = yield Q("SELECT " + _SQLITE_COMMANDS + " FROM commands WHERE id IN ("
                            "SELECT min(id) FROM commands WHERE device IN "
                            "(SELECT value FROM json_each(?)) AND (expires_at IS NULL OR "
                            "expires_at > ?) AND " + cond + " GROUP BY device)",
                            (json.dumps([devices[i] for i in part]), float(now)))
                picked = sqlite_rows.unpack(c.rows[0][0], _COMMAND_REALS)
                if not picked:
                    continue
                mid_of = {devices[i]: mids[i] for i in part}
                yield Q(_SQLITE_ROWS % ("cid, pmid", sqlite_rows.rows_in(2)) + head % "v"
                        + "FROM v WHERE commands.id = v.cid",
                        (json.dumps([[row[0], mid_of[row[1]]] for row in picked]),)
                        + head_params)
                got = {}
                for row in picked:
                    row[6], row[10], row[11] = SENT, instance_id, float(now)
                    row[12], row[13] = mid_of[row[1]], float(now)
                    got[row[1]] = command_of(row)
                for i in part:
                    out[i] = got.get(devices[i])
            return out
        return await self._run_one_round(script, pg and len(rounds) <= 1)

    def _s_plan_outcome(self, ids, status, now):
        plan_status = "accepted" if status == "done" else "failed"
        ids = list(ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            yield Q("UPDATE plans SET status = ?, updated_at = ? WHERE status = 'queued' "
                    "AND command_id IN (" + _in(len(chunk)) + ")",
                    (plan_status, float(now)) + tuple(chunk))

    async def complete(self, command_id, status, result, now):
        """Finish a command: status done, error, expired, timeout or rejected.

        result: the RESULT body or the ERROR [code, detail] (a wire value).
        Returns True, or False if the command was already final (nothing
        changes). A plan pushed by this command becomes accepted (done) or
        failed (anything else).
        """
        outcome = (await self.complete_many([(command_id, status, result)], now))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def complete_many(self, completions, now):
        """complete() for many (command id, status, result) in ONE transaction: per
        completion, in order, True, False (already final) or the InvalidValue /
        UnknownCommand that complete would raise (that one changes nothing)."""
        return await self._complete(completions, now, False)

    async def complete_and_look_many(self, completions, now):
        """complete_many, and in the same write whether the device of each command it
        completed has another queued, unexpired command: per completion, in order,
        (True, True or False), or (complete_many's other outcome, None). A delivery
        that learns its device has nothing more to send ends without asking (a
        command queued after this write kicks the device again, as for a claim)."""
        return await self._complete(completions, now, True)

    async def _complete(self, completions, now, look):
        check_time(now, "now")
        items = [tuple(x) for x in completions]
        out = [None] * len(items)
        valid = []
        for i, (command_id, status, result) in enumerate(items):
            try:
                check_int(command_id, 1, 2**63 - 1, "command id")
                check_choice(status, FINAL_STATUSES, "status")
                valid.append((i, command_id, status, dump_value(result)))
            except InvalidValue as e:
                out[i] = (e, None) if look else e
        pg = self.dialect == "postgresql"

        rounds = _rounds(valid, lambda v: v[1])

        def script():
            res = list(out)
            for part in rounds:
                if pg:   # the commands, and the plans they pushed (_s_plan_outcome), at once
                    r = yield Q("WITH c AS (UPDATE commands SET status = v.st, result = v.res, "
                                "completed_at = ? FROM unnest(?::bigint[], ?::text[], ?::json[]) "
                                "AS v(cid, st, res) WHERE commands.id = v.cid "
                                "AND commands.status IN ('queued', 'claimed', 'sent') "
                                "RETURNING commands.id, v.st, commands.device), "
                                "pl AS (UPDATE plans SET status = CASE WHEN c.st = 'done' "
                                "THEN 'accepted' ELSE 'failed' END, updated_at = ? FROM c "
                                "WHERE plans.status = 'queued' AND plans.command_id = c.id) "
                                "SELECT id" + (", " + _MORE % "c.device" if look else "")
                                + " FROM c",
                                (float(now), _pg_array("int8", [v[1] for v in part]),
                                 _pg_array("text", [v[2] for v in part]),
                                 _pg_array("json", [v[3] for v in part]), float(now))
                                + ((float(now),) if look else ()))
                    finished = {row[0] for row in r.rows}
                    more = {row[0] for row in r.rows if look and row[1]}
                    missed = [v[1] for v in part if v[1] not in finished]
                    known = set()
                    for k in range(0, len(missed), 500):
                        chunk = missed[k:k + 500]
                        e = yield Q("SELECT id FROM commands WHERE id IN (" + _in(len(chunk))
                                    + ")", tuple(chunk))
                        known.update(x[0] for x in e.rows)
                else:   # SQLite: the round's states in one row, then one UPDATE
                    r = yield Q("SELECT " + sqlite_rows.rows_out("id, status") +
                                " FROM commands WHERE id IN (SELECT value FROM json_each(?))",
                                (json.dumps([v[1] for v in part]),))
                    state = dict(sqlite_rows.unpack(r.rows[0][0]))
                    known = set(state)
                    finished = {cid for cid, st in state.items() if st in OPEN_STATUSES}
                    if finished:
                        yield Q(_SQLITE_ROWS % ("cid, st, res", sqlite_rows.rows_in(3)) +
                                "UPDATE commands SET status = v.st, result = v.res, "
                                "completed_at = ? FROM v WHERE commands.id = v.cid "
                                "AND commands.status IN ('queued', 'claimed', 'sent')",
                                (json.dumps([v[1:] for v in part if v[1] in finished]),
                                 float(now)))
                    more = set()
                    if finished and look:
                        m = yield Q("SELECT c.id FROM commands c WHERE c.id IN (SELECT value "
                                    "FROM json_each(?)) AND " + _MORE % "c.device",
                                    (json.dumps(sorted(finished)), float(now)))
                        more = {row[0] for row in m.rows}
                by_status = {}
                for i, cid, st, _ in part:
                    if cid in finished:
                        res[i] = (True, cid in more) if look else True
                        by_status.setdefault(st, []).append(cid)
                    else:
                        res[i] = False if cid in known else UnknownCommand(cid)
                        if look:
                            res[i] = (res[i], None)
                for st, ids in sorted(by_status.items()) if not pg else ():
                    yield from self._s_plan_outcome(ids, st, now)
            return res
        return await self._run_one_round(script, pg and len(rounds) <= 1)

    async def get_command(self, command_id):
        """The Command, or None."""
        check_int(command_id, 1, 2**63 - 1, "command id")

        def script():
            r = yield Q("SELECT " + COMMAND_COLS + " FROM commands WHERE id = ?", (command_id,))
            return command_of(r.rows[0]) if r.rows else None
        return await self._run(script, write=False)

    async def get_commands(self, command_ids):
        """The Commands of these ids, in the same order (None for an unknown id)."""
        ids = list(command_ids)
        for command_id in ids:
            check_int(command_id, 1, 2**63 - 1, "command id")

        def script():
            found = {}
            if self.dialect != "postgresql":   # SQLite: all of them in one row
                r = yield Q("SELECT " + _SQLITE_COMMANDS + " FROM commands WHERE id IN "
                            "(SELECT value FROM json_each(?))", (json.dumps(ids),))
                found = {row[0]: command_of(row)
                         for row in sqlite_rows.unpack(r.rows[0][0], _COMMAND_REALS)}
                return [found.get(i) for i in ids]
            for i in range(0, len(ids), 500):   # within every SQL engine's parameter limit
                chunk = ids[i:i + 500]
                r = yield Q("SELECT " + COMMAND_COLS + " FROM commands WHERE id IN (%s)"
                            % ", ".join("?" * len(chunk)), tuple(chunk))
                for row in r.rows:
                    found[row[0]] = command_of(row)
            return [found.get(i) for i in ids]
        return await self._run(script, write=False)

    async def find_sent(self, device, mid):
        """The newest command sent to the device with message id mid and no answer yet.

        How a RESULT or ERROR is matched to its command, on any instance.
        """
        check_device(device)
        check_int(mid, 0, 0xFFFF, "mid")

        def script():
            r = yield Q("SELECT " + COMMAND_COLS + " FROM commands WHERE device = ? AND "
                        "mid = ? AND status = 'sent' ORDER BY id DESC LIMIT 1", (device, mid))
            return command_of(r.rows[0]) if r.rows else None
        return await self._run(script, write=False)

    async def list_commands(self, device=None, limit=100, status=None):
        """Commands, newest first; optionally of one device and/or one status."""
        if device is not None:
            check_device(device)
        if status is not None:
            check_choice(status, COMMAND_STATUSES, "status")
        check_limit(limit)
        sql = "SELECT " + COMMAND_COLS + " FROM commands"
        where, params = [], []
        if device is not None:
            where.append("device = ?")
            params.append(device)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)

        def script():
            r = yield Q(sql, tuple(params))
            return [command_of(x) for x in r.rows]
        return await self._run(script, write=False)

    async def expire(self, now):
        """Mark queued or claimed commands whose expires_at has passed as expired.

        Returns their ids, ascending.
        """
        check_time(now, "now")

        def script():
            r = yield Q("UPDATE commands SET status = 'expired', completed_at = ? "
                        "WHERE status IN ('queued', 'claimed') AND expires_at <= ? RETURNING id",
                        (float(now), float(now)))
            ids = sorted(x[0] for x in r.rows)
            yield from self._s_plan_outcome(ids, "expired", now)
            return ids
        return await self._run(script)

    async def time_out(self, now):
        """Mark sent commands unanswered for longer than their timeout as timeout.

        Returns their ids, ascending.
        """
        check_time(now, "now")

        def script():
            r = yield Q("UPDATE commands SET status = 'timeout', completed_at = ? "
                        "WHERE status = 'sent' AND timeout IS NOT NULL "
                        "AND sent_at + timeout <= ? RETURNING id", (float(now), float(now)))
            ids = sorted(x[0] for x in r.rows)
            yield from self._s_plan_outcome(ids, "timeout", now)
            return ids
        return await self._run(script)

    # -- plans

    def _check_plan(self, plan_id, start, expiry, primacy, entries):
        check_int(plan_id, 1, 0xFFFFFFFF, "plan id")
        check_int(start, 0, 2**63 - 1, "plan start")
        check_int(expiry, 0, 2**63 - 1, "plan expiry")
        if expiry <= start:
            raise InvalidValue("plan expiry must be after its start")
        check_int(primacy, 0, _plans.MAX_PRIMACY, "primacy")
        if type(entries) is not dict:
            raise InvalidValue("plan entries must be a map {service: {object: value}}")
        return dump_value(entries)

    def _s_record_plan(self, device, plan_id, start, expiry, primacy, entries, actor, now,
                       command_id, status):
        yield from self._s_need_device(device)
        yield Q("INSERT INTO plans (" + PLAN_COLS + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (device, plan_id) DO UPDATE SET start = excluded.start, "
                "expiry = excluded.expiry, primacy = excluded.primacy, "
                "entries = excluded.entries, actor = excluded.actor, "
                "status = excluded.status, command_id = excluded.command_id, "
                "updated_at = excluded.updated_at",
                (device, plan_id, float(start), float(expiry), primacy, entries, actor, status,
                 command_id, float(now), float(now)))

    async def record_plan(self, device, plan_id, start, expiry, primacy, entries, actor, now,
                          command_id=None, status="queued"):
        """Record a plan pushed to a device (replaces one with the same id)."""
        check_device(device)
        e = self._check_plan(plan_id, start, expiry, primacy, entries)
        check_name(actor, "actor")
        check_time(now, "now")
        check_choice(status, PLAN_STATUSES, "plan status")
        if command_id is not None:
            check_int(command_id, 1, 2**63 - 1, "command id")
        return await self._run(lambda: self._s_record_plan(
            device, plan_id, start, expiry, primacy, e, actor, now, command_id, status))

    async def enqueue_plan(self, device, plan, actor, now, expires_at=None, timeout=None):
        """Queue INVOKE plans.push [id, start, expiry, primacy, entries] and record the plan.

        Both in one transaction. Returns the command id; the plan becomes
        accepted or failed when the command completes.
        """
        if type(plan) not in (list, tuple) or len(plan) != 5:
            raise InvalidValue("plan must be [id, start, expiry, primacy, entries]")
        pid, start, expiry, primacy, entries = plan
        self._check_command(device, _plans.SERVICE, _frame.INVOKE, actor, now, expires_at,
                            timeout)
        e = self._check_plan(pid, start, expiry, primacy, entries)
        body = dump_value([_plans.PUSH, list(plan)])

        def script():
            cid = yield from self._s_enqueue(device, _plans.SERVICE, _frame.INVOKE, body, actor,
                                             now, expires_at, timeout)
            yield from self._s_record_plan(device, pid, start, expiry, primacy, e, actor, now,
                                           cid, "queued")
            return cid
        return await self._run(script)

    async def set_plan_status(self, device, plan_id, status, now):
        """Set a plan's status (e.g. cancelled); False if there is no such plan."""
        check_device(device)
        check_int(plan_id, 1, 0xFFFFFFFF, "plan id")
        check_choice(status, PLAN_STATUSES, "plan status")
        check_time(now, "now")

        def script():
            r = yield Q("UPDATE plans SET status = ?, updated_at = ? "
                        "WHERE device = ? AND plan_id = ?", (status, float(now), device, plan_id))
            return r.count > 0
        return await self._run(script)

    async def list_plans(self, device, now, include_inactive=False):
        """The device's plans not yet expired and not failed or cancelled, by start.

        include_inactive=True: every plan recorded for the device.
        """
        check_device(device)
        check_time(now, "now")
        if include_inactive:
            sql = "SELECT " + PLAN_COLS + " FROM plans WHERE device = ? ORDER BY start, plan_id"
            params = (device,)
        else:
            sql = ("SELECT " + PLAN_COLS + " FROM plans WHERE device = ? AND expiry > ? "
                   "AND status IN ('queued', 'accepted') ORDER BY start, plan_id")
            params = (device, float(now))

        def script():
            r = yield Q(sql, params)
            return [plan_of(x) for x in r.rows]
        return await self._run(script, write=False)

    # -- pairing roster

    async def add_pairing(self, device, controller, role, credential, now):
        """Pair a controller with a device in a role (owner, installer, aggregator,
        monitor); pairing again replaces role and credential."""
        check_device(device)
        check_name(controller, "controller")
        check_choice(role, ROLES, "role")
        if credential is not None and type(credential) not in (str, bytes):
            raise InvalidValue("credential must be a str or bytes reference")
        cred = dump_value(credential)
        check_time(now, "now")

        def script():
            yield from self._s_need_device(device)
            yield Q("INSERT INTO pairings (" + PAIRING_COLS + ") VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (device, controller) DO UPDATE SET role = excluded.role, "
                    "credential = excluded.credential",
                    (device, controller, role, cred, float(now)))
        return await self._run(script)

    async def remove_pairing(self, device, controller):
        """Unpair; True if the pairing existed."""
        check_device(device)
        check_name(controller, "controller")

        def script():
            r = yield Q("DELETE FROM pairings WHERE device = ? AND controller = ?",
                        (device, controller))
            return r.count > 0
        return await self._run(script)

    async def pairings(self, device):
        """The device's Pairings, by controller."""
        check_device(device)

        def script():
            r = yield Q("SELECT " + PAIRING_COLS + " FROM pairings WHERE device = ? "
                        "ORDER BY controller", (device,))
            return [pairing_of(x) for x in r.rows]
        return await self._run(script, write=False)

    async def role_of(self, device, controller):
        """The controller's role on the device, or None if not paired."""
        check_device(device)
        check_name(controller, "controller")

        def script():
            r = yield Q("SELECT role FROM pairings WHERE device = ? AND controller = ?",
                        (device, controller))
            return r.rows[0][0] if r.rows else None
        return await self._run(script, write=False)

    async def roles_of(self, devices, controller):
        """{device: role} of the controller on each of devices it is paired with (a
        group command's access check in one query, not one per device)."""
        devices = list(devices)
        for device in devices:
            check_device(device)
        check_name(controller, "controller")

        def script():
            if self.dialect == "postgresql":
                r = yield Q("SELECT device, role FROM pairings WHERE controller = ? "
                            "AND device = ANY(?)", (controller, devices))
            else:
                r = yield Q("SELECT device, role FROM pairings WHERE controller = ? AND device "
                            "IN (SELECT value FROM json_each(?))",
                            (controller, json.dumps(devices)))
            return dict(r.rows)
        return await self._run(script, write=False)

    # -- audit log

    async def audit(self, actor, action, target, detail, now):
        """Append to the audit log; returns the entry's id."""
        check_name(actor, "actor")
        check_name(action, "action")
        if target is not None:
            check_name(target, "target")
        d = dump_value(detail)
        check_time(now, "now")

        def script():
            r = yield Q("INSERT INTO audit (at, actor, action, target, detail) "
                        "VALUES (?, ?, ?, ?, ?) RETURNING id",
                        (float(now), actor, action, target, d))
            return r.rows[0][0]
        return await self._run(script)

    async def list_audit(self, limit=100, target=None):
        """Audit entries, newest first; optionally only those about one target."""
        check_limit(limit)
        if target is None:
            sql, params = "SELECT " + AUDIT_COLS + " FROM audit ORDER BY id DESC LIMIT ?", \
                (limit,)
        else:
            check_name(target, "target")
            sql = "SELECT " + AUDIT_COLS + " FROM audit WHERE target = ? ORDER BY id DESC LIMIT ?"
            params = (target, limit)

        def script():
            r = yield Q(sql, params)
            return [audit_of(x) for x in r.rows]
        return await self._run(script, write=False)


# ---------------------------------------------------------------- shared scripts

def _pg_array(pgtype, values):
    """PostgreSQL: values as one binary array parameter (pg_binary.column_array)."""
    from .pg_binary import column_array   # psycopg is optional: only a PostgreSQL store
    return column_array(pgtype, values)


def _pg_unnest(types):
    """PostgreSQL: the rows source of a column array per type, one `?` each."""
    return "SELECT * FROM unnest(%s)" % ", ".join("?::%s[]" % t for t in types)


def s_release_claims(owner):
    """Transaction script of Store.release_claims (also run by cloud_bridge.instances
    inside its own lock checks)."""
    r = yield Q("UPDATE commands SET status = 'queued', claimed_by = NULL, claimed_at = NULL "
                "WHERE status = 'claimed' AND claimed_by = ? RETURNING device", (owner,))
    return [row[0] for row in r.rows]


# ---------------------------------------------------------------- factory

def parse_url(url):
    """("sqlite", path) or ("postgresql", conninfo URL) for a store URL.

    sqlite:///abs/path.db is the absolute path /abs/path.db (as in file://
    URLs); sqlite:relative/path.db is relative to the working directory.
    postgresql:// and postgres:// URLs go to libpq as they are.
    """
    if type(url) is not str:
        raise InvalidValue("store URL must be a string")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc not in ("", "localhost"):
            raise InvalidValue("sqlite URL must be sqlite:///absolute/path or "
                               "sqlite:relative/path, not %r" % url)
        path = unquote(parts.path)
        if not path or path == "/":
            raise InvalidValue("sqlite URL %r has no file path" % url)
        return "sqlite", path
    if scheme in ("postgresql", "postgres"):
        return "postgresql", url
    raise InvalidValue("unsupported store URL scheme %r (sqlite or postgresql)" % parts.scheme)


async def open_store(url, **options):
    """Open (and create or check the schema of) the store at `url`."""
    kind, where = parse_url(url)
    if kind == "sqlite":
        from .store_sqlite import SqliteStore
        store = SqliteStore(where, **options)
    else:
        from .store_postgres import PostgresStore
        store = PostgresStore(where, **options)
    await store.open()
    return store
