"""SQLite latest values one row per device and service (schema 3), read as one row per value.

Schema 2 kept one `latest` row per (device, service, object): a 21-value NOTIFY
was 21 upserts. Here a device's latest values of one service are one row of
`latest_frame` keyed (device, service):

- `vals`: {"<object id>": "<value text>", ...}, the texts the old table held
  (the history's `vals` format, sqlite_frames), so a NOTIFY's row is the very
  text its history row got;
- `tv`: {"<object id>": t, ...}, each value's time (a float's shortest text,
  read back as the same REAL); `t`: the greatest of them;
- `keys`: the object ids of `vals`, comma-separated, in its order, or NULL
  (not known: the row was patched).

A NOTIFY later than every value of its stored row goes in by one upsert, decided
by SQL (`t` greater): every stored value is older than the incoming one of its
object. The usual one (the objects of the stored row, in its order: `keys`
equal) replaces the row; one with other objects (a device notifying what
changed) is patched in (json_patch of `vals` and of `tv`), the values it lacks
kept with their times. Any other batch (a late frame, a frame at a stored time)
is merged here in Python from the stored rows by the rule of schema 2's upsert:
per object the greatest t, the stored value on equal t, the first of the batch
on equal t (s_merge; the merge is idempotent, so a batch whose upsert fell
short is merged whole).

Readers see the view `latest` (device, service, object, t, value), one row per
value as the table was (Store.latest reads it by device). A DELETE on the view
deletes the device's latest values (as PostgreSQL's rule does; delete_device).
The fleet figures, the power sample and the alarm filter (store_fleet) read
`latest_fleet` instead: the old table's layout and upsert, for the objects they
read alone (FLEET_POINT: each profile's active power, the flexibility terms,
the alarm objects; two of a heat pump's 21), with its (object, service) index.
Which objects those are is data of this version (`latest_fleet_rules`): a
version reading others fills the table again from the view when it opens the
database.

A database of schema 2 is migrated when opened (s_migrate, in the schema
transaction): the fleet objects' rows copied from the old table, its rows
grouped per (device, service), the table dropped. If anything fails nothing
changes.
"""
import json
import sqlite3
from itertools import chain

from . import sqlite_frames
from .store import Q
from .store_fleet import FLEX, P, PROFILES, ALARM_COUNT, alarm_objects, alarm_point_sql, \
    fleet_point_sql, _object_id

SCHEMA = 3      # 2: latest one row per value; 3: one row per (device, service)

TABLES = (
    """CREATE TABLE IF NOT EXISTS latest_frame (
        device TEXT NOT NULL,
        service INTEGER NOT NULL,
        t REAL NOT NULL,
        vals TEXT NOT NULL,
        tv TEXT NOT NULL,
        keys TEXT,
        PRIMARY KEY (device, service)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS latest_fleet (
        device TEXT NOT NULL,
        service INTEGER NOT NULL,
        object INTEGER NOT NULL,
        t REAL NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (device, service, object)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS latest_fleet_object ON latest_fleet (object, service)",
    "CREATE TABLE IF NOT EXISTS latest_fleet_rules (rules TEXT NOT NULL)",
)

# made after the migration (schema 2's table has the view's name)
VIEW = (
    """CREATE VIEW IF NOT EXISTS latest (device, service, object, t, value) AS
        SELECT l.device, l.service, CAST(j.key AS INTEGER),
            CAST(json_extract(l.tv, '$."' || j.key || '"') AS REAL), j.value
        FROM latest_frame l, json_each(l.vals) j""",
    """CREATE TRIGGER IF NOT EXISTS latest_delete INSTEAD OF DELETE ON latest BEGIN
        DELETE FROM latest_frame WHERE device = old.device;
        DELETE FROM latest_fleet WHERE device = old.device; END""",
)

# schema 2 -> 3: each (device, service) of the old table becomes one row (the table's
# key order: its objects ascending), `tv` made from the keys and the greatest t, then
# written again value by value where the times differ (17 significant digits:
# SQLite's JSON writes 15; they read back as the same REAL)
_MAX_T = "printf('%!.17g', max(t))"
MIGRATE = (
    "INSERT INTO latest_frame (device, service, t, vals, tv, keys) "
    "SELECT device, service, max(t), "
    "json_group_object(CAST(object AS TEXT), CAST(value AS TEXT)), "
    "'{\"' || replace(group_concat(object, ','), ',', '\":' || " + _MAX_T + " || ',\"') "
    "|| '\":' || " + _MAX_T + " || '}', group_concat(object, ',') "
    "FROM latest GROUP BY device, service",
    "UPDATE latest_frame SET tv = (SELECT json_group_object(CAST(o.object AS TEXT), "
    "json(printf('%!.17g', o.t))) FROM latest o WHERE o.device = latest_frame.device "
    "AND o.service = latest_frame.service) "
    "WHERE EXISTS (SELECT 1 FROM latest o WHERE o.device = latest_frame.device "
    "AND o.service = latest_frame.service AND o.t <> latest_frame.t)",
    "DROP TABLE latest",
)

# the objects latest_fleet keeps, as SQL on `l` (service, object) and as Python data
FLEET_POINT = "(%s OR %s)" % (fleet_point_sql(), alarm_point_sql("sqlite", keys_only=True))


def _fleet_objects():
    """{service: frozenset of object ids} of FLEET_POINT."""
    pairs = {(sid, P) for sid in PROFILES}
    pairs.update((sid, _object_id(sid, name)) for terms in FLEX.values()
                 for sid, name, _ in terms)
    pairs.update([ALARM_COUNT] + alarm_objects())
    out = {}
    for sid, oid in pairs:
        out.setdefault(sid, set()).add(oid)
    return {sid: frozenset(oids) for sid, oids in out.items()}


FLEET = _fleet_objects()
_NONE = frozenset()

SIZES = (128, 64, 32, 16, 8, 4, 2, 1) if sqlite3.sqlite_version_info >= (3, 32) \
    else (64, 32, 16, 8, 4, 2, 1)   # 6 parameters a row (999 at most before 3.32)
# A frame newer than every value of its stored row (the usual frame): the row
# replaced when it holds the same objects in the same order (`keys`); else the
# frame's values and times patched in (json_patch: its objects' replaced, the
# others' kept) and `keys` unknown (NULL: such a row is patched from then on).
_SAME = "latest_frame.keys = excluded.keys"
FAST = {n: "INSERT INTO latest_frame (device, service, t, vals, tv, keys) VALUES "
           + ",".join(("(?,?,?,?,?,?)",) * n) + " ON CONFLICT (device, service) DO UPDATE "
           "SET t = excluded.t, "
           "vals = CASE WHEN " + _SAME + " THEN excluded.vals "
           "ELSE json_patch(latest_frame.vals, excluded.vals) END, "
           "tv = CASE WHEN " + _SAME + " THEN excluded.tv "
           "ELSE json_patch(latest_frame.tv, excluded.tv) END, "
           "keys = CASE WHEN " + _SAME + " THEN excluded.keys END "
           "WHERE latest_frame.t < excluded.t"
        for n in SIZES}
# a merged row written as it is
PUT = {n: "INSERT INTO latest_frame (device, service, t, vals, tv, keys) VALUES "
          + ",".join(("(?,?,?,?,?,?)",) * n) + " ON CONFLICT (device, service) DO UPDATE "
          "SET t = excluded.t, vals = excluded.vals, tv = excluded.tv, keys = excluded.keys"
       for n in SIZES}
# schema 2's upsert on the fleet rows: rows of one key in one statement go in order,
# the greatest t wins, the first on equal t
FLEET_SIZES = (512, 256, 128, 64, 32, 16, 8, 4, 2, 1) if sqlite3.sqlite_version_info >= (3, 32) \
    else (128, 64, 32, 16, 8, 4, 2, 1)
UPSERT_FLEET = {n: "INSERT INTO latest_fleet (device, service, object, t, value) VALUES "
                   + ",".join(("(?,?,?,?,?)",) * n) + " "
                   "ON CONFLICT (device, service, object) DO UPDATE "
                   "SET t = excluded.t, value = excluded.value "
                   "WHERE latest_fleet.t < excluded.t" for n in FLEET_SIZES}

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def s_frames(packed, keys, rows):
    """The latest values of frames just stored as history (sqlite_frames.pack's
    `packed`, their `keys`, and their rows (device, service, object, t, value: an int
    or its stored text) in batch order): one upsert replacing the rows of the usual
    frames, the batch merged if one was not (a script step)."""
    n = len(keys)
    flat = []   # (device, service, t, vals, tv, keys) a frame
    add = flat.extend
    for i in range(n):
        k = keys[i]
        t = repr(packed[4 * i + 2])   # a float's shortest text: read back as the same REAL
        add(packed[4 * i:4 * i + 4])
        add(('{"' + k.replace(",", '":' + t + ',"') + '":' + t + '}', k))
    done = yield from sqlite_frames.s_insert(FAST, flat, 6, SIZES)
    if done != n:
        yield from s_merge(rows)
    yield from s_fleet(rows)


def s_rows(rows):
    """The latest values of any stored-form rows, in batch order (a script step)."""
    yield from s_merge(rows)
    yield from s_fleet(rows)


def s_fleet(rows):
    """Schema 2's upsert of the rows' fleet objects into latest_fleet (a script step)."""
    fleet = [r for r in rows if r[2] in FLEET.get(r[1], _NONE)]
    if fleet:
        yield from sqlite_frames.s_insert(UPSERT_FLEET, list(chain.from_iterable(fleet)), 5,
                                          FLEET_SIZES)


def _text(v):
    return v if type(v) is str else str(v)   # a stored text, or an int (_bindable rows)


def s_merge(rows):
    """Merge rows (device, service, object, t, value) into the stored latest values:
    per object the greatest t, the stored value on equal t, the first row on equal t;
    the rows that change written (a script step)."""
    by = {}
    for d, s, o, t, v in rows:
        f = by.get((d, s))
        if f is None:
            f = by[(d, s)] = {}
        t = float(t)
        old = f.get(o)
        if old is None or t > old[0]:
            f[o] = (t, _text(v))
    stored = yield from _s_stored(list(by))
    flat = []
    for k, new in by.items():
        have = stored.get(k)
        if have is None:
            merged, order = new, list(new)
        else:
            merged = dict(have)
            for o, tv in new.items():
                old = merged.get(o)
                if old is None or tv[0] > old[0]:
                    merged[o] = tv
            if merged == have:
                continue
            # the incoming objects' order first: the next such frame replaces the row
            order = list(new) + [o for o in have if o not in new]
        flat.extend(_row(k, order, merged))
    yield from sqlite_frames.s_insert(PUT, flat, 6, SIZES)


def _row(key, order, merged):
    """The parameters of latest_frame's row of `merged` {object: (t, text)}."""
    objects = tuple(order)
    vals = sqlite_frames.vals_text(objects, tuple(merged[o][1] for o in objects))
    tv = _dumps({str(o): merged[o][0] for o in objects})
    return (key[0], key[1], max(x[0] for x in merged.values()), vals, tv,
            sqlite_frames.keys_text(objects))


def _s_stored(keys):
    """{(device, service): {object: (t, text)}} of the stored rows of these keys, each
    in its stored order (a script step)."""
    rows = yield from sqlite_frames.s_keyed("latest_frame", ("device", "service"),
                                            ("vals", "tv"), keys)
    got = {}
    for d, s, vals, tv in rows:
        tv = json.loads(tv)
        got[(d, s)] = {int(o): (float(tv[o]), v) for o, v in json.loads(vals).items()}
    return got


def s_migrate():
    """Schema 2 -> 3 when the database still has the table of one row per value (a
    script step; the caller records the version)."""
    r = yield Q("SELECT type FROM sqlite_master WHERE name = 'latest'", ())
    if r.rows and r.rows[0][0] == "table":
        yield from _s_fill_fleet()   # from the old table: quicker than through the view
        for stmt in MIGRATE:
            yield Q(stmt, ())


def s_rules():
    """latest_fleet filled again from the view when it was kept for other objects than
    this version's FLEET_POINT (or never: a new database); a script step."""
    r = yield Q("SELECT rules FROM latest_fleet_rules", ())
    if [x[0] for x in r.rows] != [FLEET_POINT]:
        yield from _s_fill_fleet()


def _s_fill_fleet():
    """latest_fleet made again from `latest` (schema 2's table, or the view) by this
    version's FLEET_POINT, and the rules recorded (a script step)."""
    yield Q("DELETE FROM latest_fleet", ())
    yield Q("INSERT INTO latest_fleet (device, service, object, t, value) "
            "SELECT l.device, l.service, l.object, l.t, l.value FROM latest l WHERE "
            + FLEET_POINT, ())
    yield Q("DELETE FROM latest_fleet_rules", ())
    yield Q("INSERT INTO latest_fleet_rules (rules) VALUES (?)", (FLEET_POINT,))
