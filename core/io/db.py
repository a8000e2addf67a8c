"""PostgreSQL operations: connections, revision reads, the rollback point, its restore. The password is
unwrapped only where a connection is made, and no message carries it."""
from __future__ import annotations

import re
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from pydantic import SecretStr

from core.settings import Settings
from core.errors import DatabaseMissing, DatabaseUnreachable, InvalidDsn
from core.io import pgsql
from core.io.executor import scrub
from core.io.pgsql import Statement
from core.polling import poll

MAINTENANCE_DB = "postgres"


def one_row(cur: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate, a setting, a function of constants)."""
    row = cur.fetchone()
    if row is None:  # such a query always answers a row; this says so to the reader and to mypy
        raise psycopg.InterfaceError("the query returned no row")
    return row


@dataclass(frozen=True)
class DbAccess:
    host: str
    port: int
    user: str
    password: SecretStr

    @classmethod
    def of(cls, cfg: Settings) -> DbAccess:
        return cls(cfg.database.host, cfg.database.port, cfg.database.user, cfg.database.password)

    def where(self, dbname: str) -> str:
        return f"{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str, *, autocommit: bool = False, timeout: int = 5) -> psycopg.Connection:
        try:
            return psycopg.connect(
                host=self.host, port=self.port, user=self.user, dbname=dbname,
                password=self.password.get_secret_value(), connect_timeout=timeout, autocommit=autocommit,
            )
        except psycopg.OperationalError as exc:
            if database_missing(exc):
                raise DatabaseMissing(f"{self.user}@{self.host}:{self.port}", dbname) from None
            raise DatabaseUnreachable(self.where(dbname),
                                      clean_error(str(exc), self.password.get_secret_value())) from None

    def wait_until_reachable(self, dbname: str, deadline_seconds: float = 60, every: float = 0.3) -> None:
        """Tries to connect every `every` seconds; raises the last DatabaseUnreachable at the deadline."""
        def attempt() -> _Attempt:
            try:
                self.connect(dbname, timeout=2).close()
                return _Attempt()
            except DatabaseUnreachable as exc:
                return _Attempt(exc)

        last = poll(attempt, deadline_seconds, every)
        if last.error is not None:
            raise last.error


@dataclass(frozen=True)
class _Attempt:
    """One connection attempt, as `core.polling.poll` reads it."""

    error: DatabaseUnreachable | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


INVALID_CATALOG_NAME = "3D000"  # SQLSTATE of "database … does not exist"


def database_missing(exc: psycopg.OperationalError) -> bool:
    """The server answered that the database does not exist (SQLSTATE 3D000). A connection attempt carries no
    SQLSTATE in psycopg, so the server's FATAL line is read then (PostgreSQL words it the same since 7.x)."""
    if getattr(exc, "sqlstate", None) == INVALID_CATALOG_NAME:
        return True
    return re.search(r'FATAL:\s+database "[^"]*" does not exist', str(exc)) is not None


def clean_error(message: str, password: str | None) -> str:
    """The first line of a libpq message with no password in it: the known one, and whatever a conninfo string or a
    URL in the message carries."""
    first = message.strip().splitlines()[0] if message.strip() else "connection failed"
    first = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", first)
    first = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", first, flags=re.I)
    return scrub(first, [password] if password else [])


def _dsn_password(dsn: str) -> str | None:
    try:
        password = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
        return None if password is None else str(password)
    except psycopg.ProgrammingError:
        m = re.search(r"://[^:/@\s]*:([^@\s]*)@", dsn) or re.search(r"password\s*=\s*(\S+)", dsn, re.I)
        return m.group(1) if m else None


def dsn_has_password(dsn: str) -> bool:
    return bool(_dsn_password(dsn))


def connect_dsn(dsn: str, timeout: int = 5) -> psycopg.Connection:
    """An autocommit connection from a DSN (the password from PGPASSWORD or ~/.pgpass, or, discouraged, the DSN);
    errors name the server, never the password."""
    password = _dsn_password(dsn)
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise InvalidDsn(clean_error(str(exc), password)) from None
    where = f"{params.get('user', '(default user)')}@{params.get('host', '(local socket)')}:" \
            f"{params.get('port', 5432)}/{params.get('dbname', '(default db)')}"
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=timeout)
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachable(clean_error(where, password), clean_error(str(exc), password)) from None


def alembic_revisions(db: DbAccess, dbname: str) -> list[str]:
    """The database's `alembic_version` rows, sorted; [] when the table does not exist."""
    with db.connect(dbname) as conn:
        exists = one_row(conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL"))[0]
        if not exists:
            return []
        return sorted(r[0] for r in conn.execute("SELECT version_num FROM alembic_version"))


def database_names(db: DbAccess) -> set[str]:
    with db.connect(MAINTENANCE_DB) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def execute_maintenance(db: DbAccess, statements: Sequence[Statement]) -> None:
    """Runs statements (constant strings, or composed by `core.io.pgsql`, which the plan renders with `as_text`) on
    the maintenance database, one by one, outside a transaction (CREATE/DROP/ALTER DATABASE need that)."""
    with db.connect(MAINTENANCE_DB, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def query_maintenance(db: DbAccess, statement: Statement, params: tuple = ()) -> list[tuple]:
    """Rows of one statement (a constant string with `%s` placeholders for `params`, or composed) on the maintenance
    database (autocommit)."""
    with db.connect(MAINTENANCE_DB, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []


COUNTABLE_TABLES = ("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' ORDER BY 1, 2")


def count_rows(conn: psycopg.Connection, *, one_core: bool = False) -> dict[str, int]:
    """Exact row count of every ordinary table (`schema.table` → rows), in the connection's snapshot. `one_core`
    (inside a transaction) keeps the counts off parallel workers: beside a `pg_dump` that needs every core, the
    count should take the least CPU, not the least time (measured: a parallel count of 1 M rows spends twice the
    CPU of a serial one)."""
    if one_core:
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
    tables = conn.execute(COUNTABLE_TABLES).fetchall()
    return {f"{schema}.{name}": one_row(conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(name))))[0] for schema, name in tables}


@contextmanager
def exported_snapshot(db: DbAccess, dbname: str):
    """A repeatable-read, read-only transaction that exports its snapshot; yields (snapshot id, the connection).
    The snapshot stays importable (`pg_dump --snapshot`) until the block ends."""
    with db.connect(dbname) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = one_row(conn.execute("SELECT pg_export_snapshot()"))[0]
        try:
            yield snapshot, conn
        finally:
            conn.rollback()


def pitr_facts(db: DbAccess) -> dict:
    """What a PITR rollback point needs of the server and the role, and the whole cluster's size (what a base
    backup copies)."""
    with db.connect(MAINTENANCE_DB) as conn:
        row = one_row(conn.execute(
            "SELECT current_setting('wal_level'), current_setting('max_wal_senders')::int, "
            "current_setting('max_replication_slots')::int, "
            "(SELECT count(*) FROM pg_replication_slots)::int, (SELECT count(*) FROM pg_stat_replication)::int, "
            "r.rolreplication, r.rolsuper, "
            "has_function_privilege('pg_create_restore_point(text)', 'EXECUTE'), "
            "(SELECT sum(pg_database_size(oid)) FROM pg_database)::bigint "
            "FROM pg_roles r WHERE r.rolname = current_user"))
    keys = ("wal_level", "max_wal_senders", "max_replication_slots", "slots_used", "senders_used", "replication",
            "superuser", "restore_point", "cluster_bytes")
    return dict(zip(keys, row, strict=True))


PROBE_DB_PREFIX = "stackshift_probe_copy_"


def measure_copy_rate(db: DbAccess, tag: str) -> tuple[float, float]:
    """Times FILE_COPY on this server: a copy of template0 (the fixed cost: checkpoints, catalog) and a copy of a
    probe database holding about 60 MB more. Returns (MB/s, fixed seconds). Both probe databases are dropped."""
    small, big = f"{PROBE_DB_PREFIX}{tag}_a", f"{PROBE_DB_PREFIX}{tag}_b"
    try:
        with db.connect(MAINTENANCE_DB, autocommit=True) as conn:
            t = time.monotonic()
            conn.execute(pgsql.create_database(small, "template0", file_copy=True))
            fixed = time.monotonic() - t
            with db.connect(small, autocommit=True) as probe:
                probe.execute("CREATE TABLE filler AS SELECT g, repeat('x', 500) AS pad "
                              "FROM generate_series(1, 100000) g")
            t = time.monotonic()
            conn.execute(pgsql.create_database(big, small, file_copy=True))
            took = time.monotonic() - t
            size, base = one_row(conn.execute("SELECT pg_database_size(%s), pg_database_size('template0')", (big,)))
    finally:
        drop_probe_databases(db)
    return max(size - base, 1) / 1e6 / max(took - fixed, 1e-3), fixed


def drop_probe_databases(db: DbAccess) -> list[str]:
    with db.connect(MAINTENANCE_DB, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                            (PROBE_DB_PREFIX.replace("_", "\\_") + "%",))]
        for name in names:
            conn.execute(pgsql.drop_database(name, force=True))
    return names


def drop_probe_schemas(db: DbAccess, dbname: str) -> list[str]:
    """Drops schemas a killed calibration probe left behind (`stackshift_probe_*`); returns their names."""
    with db.connect(dbname, autocommit=True) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'stackshift\\_probe\\_%'")]
        for name in names:
            conn.execute(pgsql.drop_schema(name))
    return names


def role_privileges(db: DbAccess, databases: list[str]) -> dict:
    """What the rollback point needs of the role: CREATEDB (or superuser), and owning each database (to rename it)."""
    with db.connect(MAINTENANCE_DB) as conn:
        createdb, superuser = one_row(conn.execute(
            "SELECT rolcreatedb, rolsuper FROM pg_roles WHERE rolname = current_user"))
        owners: dict[str, str] = dict(conn.execute(
            "SELECT d.datname, pg_get_userbyid(d.datdba) FROM pg_database d WHERE d.datname = ANY(%s)",
            (databases,)).fetchall())
        sizes: dict[str, int] = dict(conn.execute(
            "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname = ANY(%s)",
            (databases,)).fetchall())
        member = {name: one_row(conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (owner,)))[0]
                  for name, owner in owners.items()}
        signal = one_row(conn.execute("SELECT pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')"))[0]
        others = [r[0] for r in conn.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = ANY(%s) AND usename <> current_user",
            (databases,))]
        version = one_row(conn.execute("SELECT current_setting('server_version_num')::int"))[0]
    return {"createdb": createdb, "superuser": superuser, "owners": owners, "member_of_owner": member, "sizes": sizes,
            "signal_backend": signal, "other_roles": others, "server_version_num": version}
