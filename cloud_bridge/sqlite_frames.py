"""SQLite telemetry history one row per frame (schema 2), read as one row per value.

A NOTIFY's values are stored in one row of `telemetry_frame` keyed (device,
service, t): `vals` is a JSON object {"<object id>": "<value text>", ...}, each
value the text the table of one row per value held (store.value_text: an
integer's digits, a float's repr, other values as dump_value writes them),
kept as a JSON string so that it comes back exactly. A batch from N devices
thus writes N rows and N key entries, not one per value.

Readers see the view `telemetry` (device, service, object, t, value), one row
per value as schema 1's table was, expanded by json_each: history() reads a
series by the frame key's (device, service) and its time range and picks the
object; the conflict check of spec 3.1 (store.s_conflicts) looks frames up by
their key. A DELETE on the view deletes the frames of the rows it matches
(INSTEAD OF trigger); the store deletes from the frame table directly
(delete_device, retention).

A frame whose (device, service, t) is stored already (a retransmission, or a
second frame for that time) is merged as the rows were: values of objects the
stored frame lacks are added to it, stored values stay (s_add_values).

A database of schema 1 (one row per value) is migrated when a bridge of schema
2 opens it (s_migrate): in the schema transaction, the rows are grouped into
frames, the old table dropped and the view made; if anything fails nothing
changes. It takes time in proportion to the history stored (docs/benchmarks.md).
"""
import json
import sqlite3
from itertools import chain

from .store import Q

SCHEMA = 2      # 1: telemetry one row per value; 2: one row per frame

FRAME_TABLE = """CREATE TABLE IF NOT EXISTS telemetry_frame (
        device TEXT NOT NULL,
        service INTEGER NOT NULL,
        t REAL NOT NULL,
        vals TEXT NOT NULL,
        PRIMARY KEY (device, service, t)) WITHOUT ROWID"""

# made after the migration (schema 1's table has the view's name)
VIEW = (
    """CREATE VIEW IF NOT EXISTS telemetry (device, service, object, t, value) AS
        SELECT f.device, f.service, CAST(j.key AS INTEGER), f.t, j.value
        FROM telemetry_frame f, json_each(f.vals) j""",
    """CREATE TRIGGER IF NOT EXISTS telemetry_delete INSTEAD OF DELETE ON telemetry BEGIN
        DELETE FROM telemetry_frame WHERE device = old.device AND service = old.service
        AND t = old.t; END""",
)

# schema 1 -> 2: every (device, service, t) of the old table becomes one frame
MIGRATE = (
    "INSERT INTO telemetry_frame (device, service, t, vals) "
    "SELECT device, service, t, json_group_object(CAST(object AS TEXT), CAST(value AS TEXT)) "
    "FROM (SELECT * FROM telemetry ORDER BY device, service, t, object) "
    "GROUP BY device, service, t",
    "DROP TABLE telemetry",
)

# frames in per statement (SQLite before 3.32 takes 999 parameters at most: 4 a frame)
SIZES = (256, 128, 64, 32, 16, 8, 4, 2, 1) if sqlite3.sqlite_version_info >= (3, 32) \
    else (128, 64, 32, 16, 8, 4, 2, 1)
INSERT = {n: "INSERT OR IGNORE INTO telemetry_frame (device, service, t, vals) VALUES "
             + ",".join(("(?,?,?,?)",) * n) for n in SIZES}
# a frame with values added to it (or a new one)
PUT = {n: "INSERT INTO telemetry_frame (device, service, t, vals) VALUES "
          + ",".join(("(?,?,?,?)",) * n) + " ON CONFLICT (device, service, t) "
          "DO UPDATE SET vals = excluded.vals" for n in SIZES}

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_TEMPLATES = {}   # a tuple of object ids -> the vals text with %s for each value


def _template(objects):
    """'{"<id>":"%s",...}' for these object ids (cached), None if one is there twice."""
    if len(set(objects)) != len(objects):
        return None
    t = '{' + ','.join('"%d":"%%s"' % o for o in objects) + '}'
    if len(_TEMPLATES) < 4096:   # a fleet has a few sets (one per profile and firmware)
        _TEMPLATES[objects] = t
    return t


_KEYS = {}        # a tuple of object ids -> their ids comma-separated (sqlite_latest)


def keys_text(objects):
    """'<id>,<id>,...' of these object ids (cached as the templates are)."""
    k = _KEYS.get(objects)
    if k is None:
        k = ",".join(map(str, objects))
        if len(_KEYS) < 4096:
            _KEYS[objects] = k
    return k


def vals_text(objects, values, template=None):
    """A frame's `vals` from its object ids and values (ints, or value texts), both
    tuples: the object's template filled in, or JSON-encoded when a text holds a
    character a JSON string must escape."""
    v = (template or _TEMPLATES.get(objects) or _template(objects)) % values
    if v.count('"') != 4 * len(objects) or "\\" in v:
        v = _dumps(dict(zip(objects, map(str, values))))
    return v


def pack(frames, text=None, keys=None):
    """The parameters (device, service, float t, vals) of each frame's row, flat, when
    every frame's rows have one (device, service, t) and no object twice (the usual
    NOTIFY); else None. text: the function giving a row's value its stored text (None:
    the values are ints, written as their digits). keys: a list getting each frame's
    keys_text."""
    flat = []
    add = flat.extend
    for fr in frames:
        if not fr:
            continue
        d, s, objects, t, values = zip(*fr)   # the frame's columns
        n = len(fr)
        template = _TEMPLATES.get(objects) or _template(objects)
        if template is None or d.count(d[0]) != n or s.count(s[0]) != n or t.count(t[0]) != n:
            return None
        if text is not None:
            values = tuple(map(text, values))
        add((d[0], s[0], float(t[0]), vals_text(objects, values, template)))
        if keys is not None:
            keys.append(_KEYS.get(objects) or keys_text(objects))
    return flat


def s_insert(statements, flat, width=4, sizes=SIZES):
    """Insert rows of `width` parameters each (flat: all of them in one list; frames: 4)
    with the statements of `sizes` rows, largest first; how many were new (a script
    step). store_sqlite inserts its rows of one value each (5) with it too."""
    i, n, new = 0, len(flat) // width, 0
    for size in sizes:
        while n - i >= size:
            r = yield Q(statements[size], flat[width * i:width * (i + size)])
            new += r.count
            i += size
    return new


def s_keyed(table, key_columns, columns, keys):
    """The rows (key_columns then columns) of table whose key is one of keys (tuples in
    key_columns' order), 256 keys a statement (a script step)."""
    names = ", ".join(key_columns)
    marks = "(%s)" % ",".join("?" * len(key_columns))
    rows = []
    for i in range(0, len(keys), 256):
        part = keys[i:i + 256]
        r = yield Q("WITH k (%s) AS (VALUES %s) SELECT %s, %s FROM k JOIN %s USING (%s)"
                    % (names, ",".join((marks,) * len(part)), names, ", ".join(columns),
                       table, names), list(chain.from_iterable(part)))
        rows += r.rows
    return rows


def s_stored(keys):
    """{(device, service, t): {object: value text}} of the stored frames of these keys."""
    rows = yield from s_keyed("telemetry_frame", ("device", "service", "t"), ("vals",), keys)
    return {(d, s, t): {int(o): v for o, v in json.loads(vals).items()}
            for d, s, t, vals in rows}


def grouped(rows):
    """Stored-form rows (device, service, object, float t, value text) as frames:
    ({(device, service, t): {object: value text}} in first-seen order, the first value
    of an object listed twice; whether one was)."""
    by = {}
    for d, s, o, t, v in rows:
        f = by.get((d, s, t))
        if f is None:
            f = by[(d, s, t)] = {}
        f.setdefault(o, v)
    n = sum(map(len, by.values()))
    return by, n != len(rows)


def flat_of(by):
    """The parameters of grouped() frames' rows, flat."""
    flat = []
    for (d, s, t), vals in by.items():
        flat.extend((d, s, t, vals_text(tuple(vals), tuple(vals.values()))))
    return flat


def s_add_values(by):
    """Store grouped() frames' values whose (device, service, object, t) is not stored:
    added to the stored frame (its values stay), or a new frame. How many were added
    (a script step)."""
    stored = yield from s_stored(list(by))
    put, new = {}, 0
    for k, vals in by.items():
        old = stored.get(k)
        if old is not None:
            vals = {o: v for o, v in vals.items() if o not in old}
            if not vals:
                continue
            new += len(vals)
            vals = {**old, **vals}
        else:
            new += len(vals)
        put[k] = vals
    yield from s_insert(PUT, flat_of(put))
    return new


def s_migrate():
    """Schema 1 -> 2 when the database still has the table of one row per value (a
    script step; the caller records the version)."""
    r = yield Q("SELECT type FROM sqlite_master WHERE name = 'telemetry'", ())
    if r.rows and r.rows[0][0] == "table":
        for stmt in MIGRATE:
            yield Q(stmt, ())


def s_prune(before_t):
    """Delete the frames older than before_t; how many values they held (a script step)."""
    r = yield Q("SELECT count(*) FROM telemetry_frame f, json_each(f.vals) WHERE f.t < ?",
                (before_t,))
    yield Q("DELETE FROM telemetry_frame WHERE t < ?", (before_t,))
    return r.rows[0][0]
