"""The live server's side of the migration analysis: catalog sizes and types, and a calibration probe.

Everything here reads, except `probe`, which writes a scratch table in a throw-away schema of its own and drops
the schema afterwards (also when it fails).
"""
from __future__ import annotations

import math
import secrets
import time
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from core.errors import ProbeFailed
from core.io import pgsql
from core.io.db import one_row
from core.migrations.sqlrules import ColumnType, TableInfo

_TYPMOD_LENGTH = {"varchar": 4, "bpchar": 4}  # typmod = length + VARHDRSZ


def _mods(typname: str, typmod: int) -> tuple[int, ...]:
    if typmod < 0:
        return ()
    if typname in _TYPMOD_LENGTH:
        return (typmod - _TYPMOD_LENGTH[typname],)
    if typname == "numeric":
        v = typmod - 4
        return (v >> 16, v & 0xFFFF)
    return (typmod,)


class LiveCatalog:
    """`core.migrations.sqlrules.Catalog` read from a live server (pg_class, pg_attribute, pg_proc, pg_cast)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.server_version_num = int(one_row(conn.execute("SHOW server_version_num"))[0])
        self.server_version = one_row(conn.execute("SHOW server_version"))[0]
        # The migration's session gets the server's default time zone unless the app sets another.
        self.utc_session = one_row(conn.execute("SELECT now() AT TIME ZONE 'UTC' = now()::timestamp"))[0]
        self._tables: dict[str, TableInfo | None] = {}

    def table(self, name: str) -> TableInfo | None:
        if name not in self._tables:
            self._tables[name] = self._read_table(name)
        return self._tables[name]

    def _read_table(self, name: str) -> TableInfo | None:
        row = self.conn.execute(
            """SELECT c.oid, pg_relation_size(c.oid),
                      COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0),
                      pg_indexes_size(c.oid), (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid),
                      c.reltuples
               FROM pg_class c WHERE c.oid = to_regclass(%s)""", (name,)).fetchone()
        if row is None:
            return None
        oid, heap, toast, idx, nidx, reltuples = row
        cols = {}
        for attname, typname, elem, typmod in self.conn.execute(
                """SELECT a.attname, t.typname, e.typname, a.atttypmod
                   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                   LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
                   WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped""", (oid,)):
            base = elem or typname
            cols[attname] = ColumnType(base, _mods(base, typmod), elem is not None)
        rows = float(reltuples) if reltuples >= 0 else self._count_estimate(heap)
        return TableInfo(heap, toast, idx, nidx, rows, cols)

    @staticmethod
    def _count_estimate(heap_bytes: int) -> float:
        """Never analysed (reltuples = -1): assume 100-byte rows rather than count a possibly huge table."""
        return heap_bytes / 100.0

    def volatile(self, function: str) -> bool | None:
        kinds = [r[0] for r in self.conn.execute("SELECT provolatile FROM pg_proc WHERE proname = %s", (function,))]
        if not kinds:
            return None
        return "v" in kinds

    def binary_coercible(self, source: ColumnType, target: ColumnType) -> bool | None:
        row = self.conn.execute(
            "SELECT castmethod FROM pg_cast WHERE castsource = to_regtype(%s) AND casttarget = to_regtype(%s)",
            (source.name, target.name)).fetchone()
        return None if row is None else row[0] == "b"


@dataclass(frozen=True)
class Rates:
    """Throughput measured on the server: heap bytes rewritten per second, heap bytes scanned per second, and
    sort work (n·log2 n) per second of an index build; each as (fast, slow) over the probe's rounds."""

    rewrite_bps: tuple[float, float]
    scan_bps: tuple[float, float]
    sort_nlogn_ps: tuple[float, float]
    probe_rows: int
    probe_heap_bytes: int
    probe_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def probe(conn: psycopg.Connection, rows: int = 300_000, rounds: int = 2) -> Rates:
    """Times, on this server, a rewrite (int→bigint), a sequential scan and an index build of a scratch table of
    `rows` rows (about 40 MB for 300 000), `rounds` times, in a throw-away schema that is always dropped."""
    schema = "stackshift_probe_" + secrets.token_hex(4)
    t = sql.Identifier(schema, "t")
    rw, sc, so = [], [], []
    started = time.monotonic()
    try:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    except psycopg.Error as exc:
        raise ProbeFailed(f"CREATE SCHEMA: {str(exc).strip().splitlines()[0]}") from None
    try:
        for _ in range(rounds):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(t))
            conn.execute(sql.SQL("CREATE TABLE {} (id int, k int, pad text) WITH (autovacuum_enabled = off)")
                         .format(t))
            conn.execute(sql.SQL("INSERT INTO {} SELECT g, (g::bigint * 7919) %% %s, "
                                 "md5(g::text) || md5((g * 31)::text) "
                                 "FROM generate_series(1, %s) g").format(t), (rows, rows))
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(t))  # hint bits set, as on a settled table
            heap = one_row(conn.execute("SELECT pg_relation_size(%s::regclass)", (pgsql.as_text(t),)))[0]
            t_scan = _timed(conn, sql.SQL("SELECT count(pad) FROM {}").format(t))
            t_rw = _timed(conn, sql.SQL("ALTER TABLE {} ALTER COLUMN k TYPE bigint").format(t))
            heap_after = one_row(conn.execute("SELECT pg_relation_size(%s::regclass)", (pgsql.as_text(t),)))[0]
            t_idx = _timed(conn, sql.SQL("CREATE INDEX ON {} (k)").format(t))
            rw.append(heap / t_rw)
            sc.append(heap / t_scan)
            sort_seconds = max(t_idx - heap_after / (heap / t_scan), t_idx * 0.2)
            so.append(rows * math.log2(rows) / sort_seconds)
    except psycopg.Error as exc:
        raise ProbeFailed(str(exc).strip().splitlines()[0]) from None
    finally:
        conn.execute(pgsql.drop_schema(schema))
    return Rates((max(rw), min(rw)), (max(sc), min(sc)), (max(so), min(so)), rows, heap,
                 round(time.monotonic() - started, 2))


def _timed(conn: psycopg.Connection, statement) -> float:
    t0 = time.perf_counter()
    conn.execute(statement)
    return time.perf_counter() - t0
