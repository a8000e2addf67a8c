"""PostgreSQL statements stackshift builds itself (identifiers and literals quoted here, nowhere else)."""
from __future__ import annotations


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def drop_slot_sql(slot: str) -> list[str]:
    """Ends the slot's WAL sender if one still streams (a killed pg_basebackup), then drops it; no-op when absent."""
    name = quote_literal(slot)
    return [f"SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE slot_name = {name} "
            f"AND active_pid IS NOT NULL",
            f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {name}"]


def terminate_sql(dbname: str) -> str:
    """Ends every session on `dbname`, and any statement still creating or renaming it (a runner killed halfway
    leaves one running on the server), waiting up to 5 s for each to end. Only sessions the role may end are asked
    (a refusal would abort the statement); pre-flight refuses a role that could not end the ones that are there."""
    return ("SELECT pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND "
            f"(a.datname = {quote_literal(dbname)} OR position({quote_literal(quote_ident(dbname))} in a.query) > 0) "
            "AND (a.usename = current_user OR pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') "
            "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))")
