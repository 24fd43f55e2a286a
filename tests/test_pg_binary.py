"""The store's own PostgreSQL binary forms read back by psycopg's parsers: the COPY
stream is byte for byte what psycopg's row-by-row writer makes, each array
parameter loads as the list it was built from (and, through a real PostgreSQL
server, tests/postgres.py, as the values it was built from)."""
import asyncio

import psycopg
from psycopg.adapt import Transformer
from psycopg.pq import Format

from spot.cloud_bridge.pg_binary import (DUMPERS, column_arrays, copy_payload, frames_of,
                                         row_arrays)

from test_store import pg_server  # noqa: F401  (a fixture)

ROWS = [("hp-1", 16, 1, 1700000000.0, "1234"), ("hp-1", 16, 0x7FFFFFFF, 1700000000.5, "-8.25"),
        ("wärme-2", 255, 0, 0.0, '[1, true, "é"]'), ("pv-3", 0, 2, -1.0, "1e+20")]


def psycopg_copy_stream(rows):
    """What psycopg's binary COPY writer sends for rows (its formatter, no server)."""
    from psycopg._copy_base import BinaryFormatter
    tx = Transformer()
    tx.set_dumper_types([psycopg.adapters.types[n].oid for n in
                         ("text", "int2", "int4", "float8", "text")], Format.BINARY)
    f = BinaryFormatter(tx)
    out = b"".join(bytes(f.write_row(r)) for r in rows)
    return out + bytes(f.end())


def test_the_copy_stream_is_what_psycopgs_row_writer_makes():
    assert copy_payload(ROWS) == psycopg_copy_stream(ROWS)


def test_the_array_parameters_load_as_the_columns_they_came_from():
    tx = Transformer()
    arrays = row_arrays(ROWS)
    oids = [psycopg.adapters.types[n].array_oid for n in
            ("text", "int2", "int4", "float8", "text")]
    got = [tx.get_loader(oid, Format.BINARY).load(a) for oid, a in zip(oids, arrays)]
    assert got == [list(c) for c in zip(*ROWS)]


def test_column_arrays_load_as_their_columns_nulls_included():
    rows = [("hp-1", '{"1": 2}', 7, 2**40, 1.5, True), (None, None, None, None, None, None),
            ("wärme-2", "[]", -1, -(2**63), -0.0, False)]
    types = ("text", "json", "int4", "int8", "float8", "bool")
    tx = Transformer()
    oids = [psycopg.adapters.types[n].array_oid for n in
            ("text", "text", "int4", "int8", "float8", "bool")]   # json goes as its text
    got = [tx.get_loader(oid, Format.BINARY).load(a)
           for oid, a in zip(oids, column_arrays(types, rows))]
    assert got == [list(c) for c in zip(*rows)]
    assert [tx.get_loader(oid, Format.BINARY).load(a)
            for oid, a in zip(oids, column_arrays(types, []))] == [[]] * len(types)


def test_rows_of_one_frame_apart_in_the_batch_go_into_that_frame():
    rows = [("hp-1", 16, 1, 5.0, "1"), ("hp-2", 16, 1, 5.0, "2"), ("hp-1", 16, 2, 5.0, "3"),
            ("hp-1", 16, 3, 6.0, "4"), ("hp-1", 16, 4, 5.0, "5")]
    frames, twice = frames_of(rows)
    assert frames == [("hp-1", 16, 5.0, [1, 2, 4], ["1", "3", "5"]),
                      ("hp-2", 16, 5.0, [1], ["2"]), ("hp-1", 16, 6.0, [3], ["4"])]
    assert not twice


def test_a_frames_objects_come_out_ascending_with_their_values():
    rows = [("hp-1", 16, 8, 5.0, "80"), ("hp-1", 16, 2, 5.0, "20"), ("hp-1", 16, 5, 5.0, "50")]
    assert frames_of(rows)[0] == [("hp-1", 16, 5.0, [2, 5, 8], ["20", "50", "80"])]


def test_column_arrays_reach_the_server_as_the_values_they_came_from(pg_server):  # noqa: F811
    """pg_binary.column_arrays' edge cases through a real server: NULLs, empty arrays,
    text beyond ASCII and long, each integer type's ends, float specials, JSON text."""
    types = ("text", "json", "int4", "int8", "float8", "bool")
    rows = [("wärme-2 ☃ 🔥", '{"é": "🔥"}', 2**31 - 1, 2**63 - 1, float("inf"), True),
            (None, None, None, None, None, None),
            ("x" * 100_000, '"%s"' % ("y" * 100_000), -(2**31), -(2**63), -0.0, False),
            ("", "null", 0, 0, 1e-300, None)]

    pg_url = pg_server.create_database("pgbinary")

    async def main():
        conn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:
            for cls, dumper in DUMPERS.items():
                conn.adapters.register_dumper(cls, dumper)
            for batch in (rows, []):
                cur = await conn.execute(
                    "SELECT " + ", ".join("%%s::%s[]::text[]" % t if t == "json"
                                          else "%%s::%s[]" % t for t in types),
                    column_arrays(types, batch))
                got = list(await cur.fetchone())
                want = [list(c) for c in zip(*batch)] if batch else [[]] * len(types)
                assert got == want
        finally:
            await conn.close()
    try:
        asyncio.run(main())
    finally:
        pg_server.drop_database("pgbinary")
