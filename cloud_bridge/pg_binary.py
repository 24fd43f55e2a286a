"""PostgreSQL's binary forms, built in Python for the store's bulk telemetry writes.

    copy_payload(rows)   # the whole binary COPY stream of telemetry rows
    frames_of(rows)      # the same rows grouped by frame (device, service, t)
    frame_copy_payload(frames)   # the binary COPY stream of those frames (schema 4)
    frame_records(frames, oid)   # the same frames as one array of telemetry_frame rows
    row_arrays(rows)     # the same rows as five one-dimensional array parameters
    text_array(ids)      # strings as one text[] parameter (device ids)
    column_array(type, values)   # any values as one array parameter, NULLs kept
    column_arrays(types, rows)   # rows as one such array per column
    DUMPERS              # register on a connection: psycopg then sends those arrays as-is

Rows are (device, service, object, float t, JSON text), as store.prepare_telemetry
makes them. psycopg builds both forms too, but value by value (write_row, list
dumpers), about three times slower for a batch of thousands of rows; here each
is one pass with precompiled structs.
"""
import struct
from itertools import repeat

from psycopg.adapt import Dumper
from psycopg.pq import Format

_COPY_HEAD = b"PGCOPY\n\xff\r\n\0" + bytes(8)     # signature, flags, no extension
_COPY_END = b"\xff\xff"
_ROW_HEAD = struct.Struct("!hi").pack          # 5 fields; the device's length
_ROW_REST = struct.Struct("!ihiiidi").pack     # service, object, t; the value's length
_ARRAY_HEAD = struct.Struct("!iiiii").pack   # 1 dimension, no NULLs, element oid, n, from 1
_LENGTH = struct.Struct("!i").pack
# one array element with its length (a map over these beats one struct.pack of all)
_INT2, _INT4, _FLOAT8 = (struct.Struct(f).pack for f in ("!ih", "!ii", "!id"))


def _array_type(name, array_oid):
    """A bytes subclass holding one array parameter in binary form, and its dumper."""
    cls = type(name, (bytes,), {"__slots__": ()})
    dumper = type(name + "Dumper", (Dumper,), {"format": Format.BINARY, "oid": array_oid,
                                               "dump": lambda self, obj: obj})
    return cls, dumper


TextArray, _TextDumper = _array_type("TextArray", 1009)
Int2Array, _Int2Dumper = _array_type("Int2Array", 1005)
Int4Array, _Int4Dumper = _array_type("Int4Array", 1007)
Float8Array, _Float8Dumper = _array_type("Float8Array", 1022)
BoolArray, _BoolDumper = _array_type("BoolArray", 1000)
Int8Array, _Int8Dumper = _array_type("Int8Array", 1016)
# an array of a composite type: sent as of unknown type, the statement's cast names it
RecordArray, _RecordDumper = _array_type("RecordArray", 0)
DUMPERS = {TextArray: _TextDumper, Int2Array: _Int2Dumper, Int4Array: _Int4Dumper,
           Float8Array: _Float8Dumper, BoolArray: _BoolDumper, Int8Array: _Int8Dumper,
           RecordArray: _RecordDumper}
_INT8 = struct.Struct("!iq").pack
_NULL = _LENGTH(-1)
_BOOL = {True: _LENGTH(1) + b"\1", False: _LENGTH(1) + b"\0"}


def _text_element(x):
    if x is None:
        return _NULL
    b = x.encode()
    return _LENGTH(len(b)) + b


# per column type: (array class, element oid, element with its length; None -> NULL)
_COLUMNS = {
    "text": (TextArray, 25, _text_element),
    "json": (TextArray, 25, _text_element),     # the JSON text; the statement casts it
    "int4": (Int4Array, 23, lambda x: _NULL if x is None else _INT4(4, x)),
    "int8": (Int8Array, 20, lambda x: _NULL if x is None else _INT8(8, x)),
    "float8": (Float8Array, 701, lambda x: _NULL if x is None else _FLOAT8(8, x)),
    "bool": (BoolArray, 16, lambda x: _NULL if x is None else _BOOL[bool(x)]),
}


def column_array(pgtype, values):
    """Values as one binary array parameter of PostgreSQL type pgtype[] (text, json as
    its text, int4, int8, float8, bool); None is NULL. The statement casts it
    (`?::json[]`)."""
    cls, oid, element = _COLUMNS[pgtype]
    return cls(_ARRAY_HEAD(1, 1 if None in values else 0, oid, len(values), 1)
               + b"".join(map(element, values)))


def column_arrays(types, rows):
    """Rows (tuples of one length) as one column_array per column of `types`."""
    cols = list(zip(*rows)) if rows else [()] * len(types)
    return tuple(column_array(t, col) for t, col in zip(types, cols))


def text_array(items):
    """Distinct strings (device ids) as one text[] parameter: each element encoded in
    turn (_texts' cache only pays when most of them repeat)."""
    return TextArray(_ARRAY_HEAD(1, 0, 25, len(items), 1)
                     + b"".join([_LENGTH(len(b := x.encode())) + b for x in items]))


def _texts(items):
    parts = [_ARRAY_HEAD(1, 0, 25, len(items), 1)]
    done = {}
    for x in items:
        b = done.get(x)
        if b is None:
            e = x.encode()
            b = done[x] = _LENGTH(len(e)) + e
        parts.append(b)
    return TextArray(b"".join(parts))


def row_arrays(rows):
    """Rows (device, service, object, float t, JSON text) as the five array parameters
    text[], smallint[], integer[], float8[], text[] (the values' JSON text)."""
    n = len(rows)
    devs, sids, oids, ts, vals = zip(*rows)
    return (_texts(devs),
            Int2Array(_ARRAY_HEAD(1, 0, 21, n, 1) + b"".join(map(_INT2, repeat(2, n), sids))),
            Int4Array(_ARRAY_HEAD(1, 0, 23, n, 1) + b"".join(map(_INT4, repeat(4, n), oids))),
            Float8Array(_ARRAY_HEAD(1, 0, 701, n, 1) + b"".join(map(_FLOAT8, repeat(8, n), ts))),
            _texts(vals))


def _row_head(heads, dev):
    """The start of a device's COPY rows (field count, the device's text field), kept in
    heads: built once per device of a stream."""
    b = dev.encode()
    h = heads[dev] = _ROW_HEAD(5, len(b)) + b
    return h


def copy_payload(rows):
    """The whole binary COPY stream of telemetry rows (device, service, object, float
    t, JSON text) as text, int2, int4, float8 and text (json's binary form is its text)."""
    heads = {}
    out = [_COPY_HEAD]
    add = out.append
    for dev, sid, oid, t, v in rows:
        b = v.encode()
        add(heads.get(dev) or _row_head(heads, dev))
        add(_ROW_REST(2, sid, 4, oid, 8, t, len(b)))
        add(b)
    add(_COPY_END)
    return b"".join(out)


_FRAME_REST = struct.Struct("!ihid").pack      # service, t
_ARRAY_FIELD = struct.Struct("!iiiiii").pack   # field length, 1 dimension, no NULLs, oid, n, 1


def frames_of(rows):
    """Rows (device, service, object, float t, JSON text) grouped by frame: ([(device,
    service, t, [object], [JSON text])] in first-seen order, each frame's objects in
    ascending order (the latest values' upsert builds its points in that order),
    whether some (device, service, object, t) is there twice)."""
    by = {}
    ldev = lsid = lt = objs = vals = None
    for dev, sid, oid, t, v in rows:
        # a frame's rows usually come one after the other: no key built for those
        if t == lt and sid == lsid and dev == ldev:
            objs.append(oid)
            vals.append(v)
            continue
        f = by.get((dev, sid, t))
        if f is None:
            f = by[(dev, sid, t)] = ([], [])
        objs, vals = f
        objs.append(oid)
        vals.append(v)
        ldev, lsid, lt = dev, sid, t
    frames = []
    for k, (o, v) in by.items():
        ordered = sorted(o)
        if ordered != o:       # (a stable sort: a repeated object keeps its rows' order)
            v = [v[i] for i in sorted(range(len(o)), key=o.__getitem__)]
            o = ordered
        frames.append((k[0], k[1], k[2], o, v))
    twice = len(by) != len(rows) and any(len(set(f[3])) != len(f[3]) for f in frames)
    return frames, twice


def frame_copy_payload(frames):
    """The whole binary COPY stream of history frames (device, service, float t,
    [object], [JSON text]) as text, int2, float8, int4[] and json[]."""
    heads, objects = {}, {}     # a device's field, a frame's object ids (the same
    out = [_COPY_HEAD]          # few sets across a fleet of one profile)
    add = out.append
    for dev, sid, t, oids, vals in frames:
        h = heads.get(dev) or _row_head(heads, dev)
        n = len(oids)
        key = tuple(oids)
        o = objects.get(key)
        if o is None:
            o = objects[key] = _ARRAY_FIELD(20 + 8 * n, 1, 0, 23, n, 1) + struct.pack(
                "!" + "ii" * n, *[x for o in oids for x in (4, o)])
        # the values' elements, each its length and its text
        body = b"".join([_LENGTH(len(b := v.encode())) + b for v in vals])
        add(h)
        add(_FRAME_REST(2, sid, 8, t))
        add(o)
        add(_ARRAY_FIELD(20 + len(body), 1, 0, 114, n, 1))
        add(body)
    add(_COPY_END)
    return b"".join(out)


def frame_keys(frames):
    """The frames' keys (device, service, t) as three array parameters text[],
    smallint[], float8[]."""
    n = len(frames)
    devs, sids, ts = zip(*[f[:3] for f in frames])
    return (text_array(devs),
            Int2Array(_ARRAY_HEAD(1, 0, 21, n, 1) + b"".join(map(_INT2, repeat(2, n), sids))),
            Float8Array(_ARRAY_HEAD(1, 0, 701, n, 1) + b"".join(map(_FLOAT8, repeat(8, n), ts))))


_RECORD_HEAD = struct.Struct("!iiii").pack     # element length, 5 fields, text oid, length
_RECORD_REST = struct.Struct("!iihiid").pack   # int2 oid, 2, service; float8 oid, 8, t
_OBJECTS_FIELD = struct.Struct("!iiiiiii").pack   # int4[] oid, length, array head
_VALS_FIELD = struct.Struct("!iiiiiii").pack      # json[] oid, length, array head


def frame_records(frames, rowtype):
    """History frames (device, service, float t, [object], [JSON text]) as one array
    parameter of the composite `rowtype` (telemetry_frame's row type: its oid), each
    element a record (text, smallint, float8, integer[], json[]): the frames of a
    statement that INSERTs them (pg_ingest), as frame_copy_payload is for COPY."""
    heads, objects = {}, {}
    out = [_ARRAY_HEAD(1, 0, rowtype, len(frames), 1)]
    add = out.append
    for dev, sid, t, oids, vals in frames:
        d = heads.get(dev)
        if d is None:
            d = heads[dev] = dev.encode()
        n = len(oids)
        key = tuple(oids)
        o = objects.get(key)
        if o is None:
            o = objects[key] = _OBJECTS_FIELD(1007, 20 + 8 * n, 1, 0, 23, n, 1) + struct.pack(
                "!" + "ii" * n, *[x for o in oids for x in (4, o)])
        body = b"".join([_LENGTH(len(b := v.encode())) + b for v in vals])
        # the element's length: the field count (4), each field's oid and length (5 x 8,
        # o holding its own), the fields (the device, 2, 8, o's array, 20 + the body)
        add(_RECORD_HEAD(4 + 32 + len(d) + 2 + 8 + len(o) + 20 + len(body), 5, 25, len(d)))
        add(d)
        add(_RECORD_REST(21, 2, sid, 701, 8, t))
        add(o)
        add(_VALS_FIELD(199, 20 + len(body), 1, 0, 114, n, 1))
        add(body)
    return RecordArray(b"".join(out))
