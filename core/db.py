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


def database_names(db: DbAccess) -> set[str]:
    with db.connect(MAINTENANCE_DB) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def database_exists(db: DbAccess, dbname: str) -> bool:
    return dbname in database_names(db)


def execute_maintenance(db: DbAccess, statements: list[str]) -> None:
    """Runs statements (built as text by the steps, so the plan shows exactly them) on the maintenance database, one
    by one, outside a transaction (CREATE/DROP/ALTER DATABASE need that)."""
    with db.connect(MAINTENANCE_DB, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def drop_probe_schemas(db: DbAccess, dbname: str) -> list[str]:
    """Drops schemas a killed calibration probe left behind (`stackshift_probe_*`); returns their names."""
    with db.connect(dbname, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'stackshift\\_probe\\_%'")]
        for name in names:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    return names


def role_privileges(db: DbAccess, databases: list[str]) -> dict:
    """What the rollback point needs of the role: CREATEDB (or superuser), and owning each database (to rename it)."""
    with db.connect(MAINTENANCE_DB) as conn:
        createdb, superuser = conn.execute(
            "SELECT rolcreatedb, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        owners = dict(conn.execute(
            "SELECT d.datname, pg_get_userbyid(d.datdba) FROM pg_database d WHERE d.datname = ANY(%s)",
            (databases,)).fetchall())
        sizes = dict(conn.execute("SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname = ANY(%s)",
                                  (databases,)).fetchall())
        member = {name: conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (owner,)).fetchone()[0]
                  for name, owner in owners.items()}
        signal = conn.execute("SELECT pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')").fetchone()[0]
        others = [r[0] for r in conn.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = ANY(%s) AND usename <> current_user",
            (databases,))]
        version = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0]
    return {"createdb": createdb, "superuser": superuser, "owners": owners, "member_of_owner": member, "sizes": sizes,
            "signal_backend": signal, "other_roles": others, "server_version_num": version}
