"""PostgreSQL statements stackshift builds itself, composed with psycopg's `sql` (identifiers and literals are
quoted by psycopg, here, nowhere else).

Every builder returns `sql.Composed` (`drop_slot` a list of them): the executing side (`core.io.db`,
`StackIO.sql`/`query`) runs it as is, and `as_text` renders it for a plan, a log or a test without a connection
(psycopg 3.2 quotes an identifier the way the server does and a literal in a form correct whatever
`standard_conforming_strings` says: a literal holding a backslash is written ` E'…'`, with a leading space).

    >>> as_text(drop_database('a"b', force=True))
    'DROP DATABASE IF EXISTS "a""b" WITH (FORCE)'
"""
from __future__ import annotations

from psycopg import sql

Statement = str | sql.SQL | sql.Composed
"""What the executing side runs: a constant string, or a statement composed here."""


def as_text(statement: str | sql.Composable) -> str:
    """The statement's SQL text, rendered without a connection (for plans, logs and tests)."""
    return statement if isinstance(statement, str) else statement.as_string(None)


def create_database(name: str, template: str | None = None, *, file_copy: bool = False) -> sql.Composed:
    """`CREATE DATABASE name [TEMPLATE template] [STRATEGY FILE_COPY]` (FILE_COPY: a file-level copy of the template,
    PostgreSQL 15 or later)."""
    parts: list[sql.Composable] = [sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))]
    if template is not None:
        parts.append(sql.SQL("TEMPLATE {}").format(sql.Identifier(template)))
    if file_copy:
        parts.append(sql.SQL("STRATEGY FILE_COPY"))
    return sql.SQL(" ").join(parts)


def drop_database(name: str, *, force: bool = False) -> sql.Composed:
    """`DROP DATABASE IF EXISTS name`; `force` ends the sessions still on it (`WITH (FORCE)`)."""
    return sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name),
                                                         sql.SQL(" WITH (FORCE)" if force else ""))


def rename_database(name: str, new_name: str) -> sql.Composed:
    return sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(name), sql.Identifier(new_name))


def log_every_statement(name: str) -> sql.Composed:
    """Every statement of every new session of the database goes to the server log (a superuser setting)."""
    return sql.SQL("ALTER DATABASE {} SET log_statement = 'all'").format(sql.Identifier(name))


def drop_schema(name: str) -> sql.Composed:
    """`DROP SCHEMA IF EXISTS name CASCADE`, with everything in it."""
    return sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))


def restore_point(name: str) -> sql.Composed:
    """A named restore point in the WAL; its LSN as text."""
    return sql.SQL("SELECT pg_create_restore_point({})::text").format(sql.Literal(name))


def terminate(dbname: str) -> sql.Composed:
    """Ends every session on `dbname`, and any statement still creating or renaming it (a runner killed halfway
    leaves one running on the server: its text holds the name as quoted here), waiting up to 5 s for each to end.
    Only sessions the role may end are asked (a refusal would abort the statement); pre-flight refuses a role that
    could not end the ones that are there."""
    return sql.SQL(
        "SELECT pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND "
        "(a.datname = {} OR position({} in a.query) > 0) "
        "AND (a.usename = current_user OR pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') "
        "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))"
    ).format(sql.Literal(dbname), sql.Literal(as_text(sql.Identifier(dbname))))


def drop_slot(slot: str) -> list[sql.Composed]:
    """Ends the slot's WAL sender if one still streams (a killed pg_basebackup), then drops it; no-op when absent."""
    name = sql.Literal(slot)
    return [sql.SQL("SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE slot_name = {} "
                    "AND active_pid IS NOT NULL").format(name),
            sql.SQL("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {}")
            .format(name)]
