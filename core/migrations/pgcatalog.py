"""The live server's side of the migration analysis: catalog sizes and types, and a calibration probe.

Everything here reads, except `probe`, which writes a scratch table in a throw-away schema of its own and drops
the schema afterwards (also when it fails).
"""
from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from core.errors import ProbeFailed
from core.io import pgsql
from core.io.db import one_row
from core.migrations import calibration
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
    sort work (n·log2 n) per second of an index build; each as (fast, slow) over the probe's rounds, calibrated
    (the time the probe's backend waited for a CPU taken out: `core.migrations.calibration`), so that the same
    server gives the same rates idle or busy. `load_factor` is how much slower the probe really ran (wall /
    calibrated): durations at the load of the moment are the forecast times it."""

    rewrite_bps: tuple[float, float]
    scan_bps: tuple[float, float]
    sort_nlogn_ps: tuple[float, float]
    probe_rows: int            # rows of the scratch table, each round
    probe_heap_bytes: int      # its heap, each round
    probe_seconds: float       # the whole probe, wall time
    rounds: int = 1
    budget_seconds: float | None = None
    load_factor: float = 1.0
    cpu_wait_measured: bool = False  # False: the server would not tell its CPU wait; the rates are as measured now

    def to_dict(self) -> dict:
        return asdict(self)


PROBE_ROWS = 100_000  # about 11 MB of heap: every round the same table, so that a busy host measures the same work
MAX_ROUNDS = 12


def probe(conn: psycopg.Connection, budget_seconds: float = 3.0, rows: int = PROBE_ROWS,
          max_rounds: int = MAX_ROUNDS) -> Rates:
    """Times, on this server, a sequential scan, a rewrite (int↔bigint) and an index build of a scratch table of
    `rows` rows, in rounds while they fit in `budget_seconds` (the first always runs), in a throw-away schema that
    is always dropped. One backend, no parallel workers: the work measured is one process's, and its CPU wait is
    read around each statement (`/proc/self/schedstat` through `pg_read_file`, superuser) to calibrate it."""
    schema = "stackshift_probe_" + secrets.token_hex(4)
    started = time.monotonic()
    try:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    except psycopg.Error as exc:
        raise ProbeFailed(f"CREATE SCHEMA: {str(exc).strip().splitlines()[0]}") from None
    timer = _Timer(sql.Identifier(schema, "timed"), _cpu_wait(conn) is not None)
    rounds: list[calibration.Round] = []
    try:
        conn.execute(sql.SQL(_TIMER).format(timer.function))
        for setting in _SERIAL:
            conn.execute(sql.SQL("SET {} = 0").format(sql.Identifier(setting)))
        _fill(conn, sql.Identifier(schema, "t"), rows)
        last = 0.0
        while calibration.another_round(time.monotonic() - started, last, budget_seconds, len(rounds), max_rounds):
            t0 = time.monotonic()
            rounds.append(_round(conn, schema, rows, timer, "bigint" if len(rounds) % 2 == 0 else "int"))
            last = time.monotonic() - t0
    except psycopg.Error as exc:
        raise ProbeFailed(str(exc).strip().splitlines()[0]) from None
    finally:
        conn.execute(pgsql.drop_schema(schema))
        for setting in _SERIAL:
            conn.execute(sql.SQL("RESET {}").format(sql.Identifier(setting)))
    rewrite, scan, sort = calibration.rates(rounds)
    return Rates(rewrite, scan, sort, rows, rounds[0].heap_bytes, round(time.monotonic() - started, 2), len(rounds),
                 budget_seconds, calibration.load_factor([t for r in rounds for t in r.timings]), timer.measured)


_SERIAL = ("max_parallel_workers_per_gather", "max_parallel_maintenance_workers")


@dataclass(frozen=True)
class _Timer:
    function: sql.Identifier
    measured: bool  # the backend's CPU wait is readable


def _fill(conn: psycopg.Connection, t: sql.Identifier, rows: int) -> None:
    """The scratch table, filled once and settled (hint bits set), as a table that has been there a while."""
    conn.execute(sql.SQL("CREATE TABLE {} (id int, k int, pad text) WITH (autovacuum_enabled = off)").format(t))
    conn.execute(sql.SQL("INSERT INTO {} SELECT g, (g::bigint * 7919) %% %s, md5(g::text) || md5((g * 31)::text) "
                         "FROM generate_series(1, %s) g").format(t), (rows, rows))
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(t))


def _round(conn: psycopg.Connection, schema: str, rows: int, timer: _Timer, to_type: str) -> calibration.Round:
    """One round: scan, rewrite (to `to_type`, the other way each round), index build; each timed in the backend."""
    t = sql.Identifier(schema, "t")
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, "t_k")))
    heap = one_row(conn.execute("SELECT pg_relation_size(%s::regclass)", (pgsql.as_text(t),)))[0]
    scan = _timed(conn, timer, sql.SQL("SELECT count(pad) FROM {}").format(t))
    rewrite = _timed(conn, timer, sql.SQL("ALTER TABLE {} ALTER COLUMN k TYPE {}").format(t, sql.SQL(to_type)))
    heap_after = one_row(conn.execute("SELECT pg_relation_size(%s::regclass)", (pgsql.as_text(t),)))[0]
    build = _timed(conn, timer, sql.SQL("CREATE INDEX {} ON {} (k)").format(sql.Identifier("t_k"), t))
    return calibration.Round(rows, heap, heap_after, scan, rewrite, build)


_TIMER = """CREATE FUNCTION {}(statement text, measure boolean, OUT wall float8, OUT before text, OUT after text)
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    IF measure THEN before := pg_read_file('/proc/self/schedstat'); END IF;
    t0 := clock_timestamp();
    EXECUTE statement;
    wall := extract(epoch FROM clock_timestamp() - t0);
    IF measure THEN after := pg_read_file('/proc/self/schedstat'); END IF;
END $$"""
"""Times a statement inside the backend: no client round trip in the wall time, and the run-queue counter read
right around it (read from the client, each read would add the wait of its own wake-up)."""


def _cpu_wait(conn: psycopg.Connection) -> float | None:
    """Seconds this backend has waited for a CPU so far; None when the server will not say (not Linux, not
    superuser)."""
    try:
        return calibration.schedstat(one_row(conn.execute("SELECT pg_read_file('/proc/self/schedstat')"))[0])[1]
    except (psycopg.Error, ValueError):
        return None


def _timed(conn: psycopg.Connection, timer: _Timer, statement: sql.Composable) -> calibration.Timing:
    wall, before, after = one_row(conn.execute(sql.SQL("SELECT * FROM {}(%s, %s)").format(timer.function),
                                               (statement.as_string(conn), timer.measured)))
    if before is None or after is None:
        return calibration.Timing(wall, None)
    (cpu0, wait0), (cpu1, wait1) = calibration.schedstat(before), calibration.schedstat(after)
    return calibration.Timing(wall, wait1 - wait0, cpu1 - cpu0)
