"""Many rows through one SQLite statement, in and out, as one JSON text each way.

The SQLite store runs its statements on a worker thread, and Python's sqlite3
lets the GIL go around every step of a statement: each parameter row of an
executemany and each result row fetched is one step. While the event loop is
busy (a fleet registering, a fan-out's answers arriving) every step waits for
the loop to give the GIL back, up to the interpreter's switch interval (5 ms),
so a batch written row by row takes milliseconds per row. Here a batch is
one statement of few steps whatever its size:

    rows_in(3)              -> "json_extract(value, '$[0]'), ..." to SELECT FROM
                               json_each(?) with the rows as one JSON array
    rows_out("id, t", ("t",)) -> "json_group_array(json_array(id, <t exactly>))":
                               every row of the result in ONE row
    unpack(text, reals)     -> the rows back as lists, REAL columns as floats

REAL columns go out as their shortest round-trip text (printf %!.17g; SQLite's
own JSON keeps 15 digits, which would move a timestamp by microseconds) and
come back as the same float. Rows go in as Python's JSON, whose floats SQLite
reads back exactly.
"""
import json

dumps = json.dumps


def rows_in(n):
    """The n columns of each row of a JSON array of rows read with json_each(?)."""
    return ", ".join("json_extract(value, '$[%d]')" % i for i in range(n))


def rows_out(columns, reals=()):
    """An aggregate giving every row of `columns` (comma-separated names) as one JSON
    array of arrays; the columns named in `reals` exactly (see unpack)."""
    out = []
    for col in columns.split(","):
        col = col.strip()
        out.append("CASE WHEN %s IS NULL THEN NULL ELSE printf('%%!.17g', %s) END" % (col, col)
                   if col in reals else col)
    return "json_group_array(json_array(%s))" % ", ".join(out)


def unpack(text, reals_at=()):
    """The rows of a rows_out() value (None: no rows), with the columns at the indexes
    `reals_at` turned back into floats."""
    rows = json.loads(text) if text else []
    for row in rows:
        for i in reals_at:
            if row[i] is not None:
                row[i] = float(row[i])
    return rows
