"""PostgreSQL operations: connections, revision reads, the rollback point, its restore. The password is
unwrapped only where a connection is made, and no message carries it."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql
from pydantic import SecretStr

from core.errors import DatabaseUnreachable, InvalidDsn
from core.executor import scrub

MAINTENANCE_DB = "postgres"


@dataclass(frozen=True)
class DbAccess:
    host: str
    port: int
    user: str
    password: SecretStr

    @classmethod
    def of(cls, cfg) -> "DbAccess":
        return cls(cfg.db_host, cfg.db_port, cfg.db_user, cfg.db_password)

    def where(self, dbname: str) -> str:
        return f"{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str, *, autocommit: bool = False, timeout: int = 5) -> psycopg.Connection:
        try:
            return psycopg.connect(
                host=self.host, port=self.port, user=self.user, dbname=dbname,
                password=self.password.get_secret_value(), connect_timeout=timeout, autocommit=autocommit,
            )
        except psycopg.OperationalError as exc:
            raise DatabaseUnreachable(self.where(dbname), clean_error(str(exc), self.password.get_secret_value())) from None

    def wait_until_reachable(self, dbname: str, deadline_seconds: float = 60) -> None:
        end = time.monotonic() + deadline_seconds
        while True:
            try:
                self.connect(dbname, timeout=2).close()
                return
            except DatabaseUnreachable:
                if time.monotonic() > end:
                    raise
                time.sleep(0.3)


def clean_error(message: str, password: str | None) -> str:
    """The first line of a libpq message with no password in it: the known one, and whatever a conninfo string or a
    URL in the message carries."""
    first = message.strip().splitlines()[0] if message.strip() else "connection failed"
    first = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", first)
    first = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", first, flags=re.I)
    return scrub(first, [password] if password else [])


def _dsn_password(dsn: str) -> str | None:
    try:
        return psycopg.conninfo.conninfo_to_dict(dsn).get("password")
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
        exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()[0]
        if not exists:
            return []
        return sorted(r[0] for r in conn.execute("SELECT version_num FROM alembic_version"))


def database_exists(db: DbAccess, dbname: str) -> bool:
    with db.connect(MAINTENANCE_DB) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None


def _terminate(conn: psycopg.Connection, dbname: str) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    )


def create_rollback_point(db: DbAccess, source: str, point: str) -> None:
    """A file-level copy of `source` inside the same server (`CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY`).

    Consistent because the writers are stopped; any straggling session on `source` is terminated first.
    """
    with db.connect(MAINTENANCE_DB, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(point)))
        _terminate(conn, source)
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(point), sql.Identifier(source))
        )


def restore_rollback_point(db: DbAccess, target: str, point: str, failed_name: str) -> None:
    """Puts `target` back to the rollback point; the failed state is kept as `failed_name` for inspection."""
    with db.connect(MAINTENANCE_DB, autocommit=True) as conn:
        _terminate(conn, target)
        if database_exists(db, target):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(failed_name)))
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(target), sql.Identifier(failed_name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(target), sql.Identifier(point))
        )


def drop_database(db: DbAccess, name: str) -> None:
    with db.connect(MAINTENANCE_DB, autocommit=True) as conn:
        _terminate(conn, name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
