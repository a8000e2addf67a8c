"""Names of the helper objects a preparation creates: recognisable (`_ss` and a hash of table and column), within
PostgreSQL's 63 bytes, the same on every run (so a resumed or undone preparation finds them)."""
from __future__ import annotations

import hashlib

from psycopg import sql

MAX_IDENTIFIER = 63
_ROOM = 40  # bytes kept of the original name


def _short(name: str) -> str:
    raw = name.encode("utf-8")[:_ROOM]
    return raw.decode("utf-8", errors="ignore")


def tag(table: str, column: str) -> str:
    return hashlib.sha1(f"{table}\0{column}".encode()).hexdigest()[:8]


def helper(base: str, table: str, column: str) -> str:
    """`<base>_ss<hash>`: the shadow of `base` (a column or an index) for this table's column."""
    return f"{_short(base)}_ss{tag(table, column)}"


def schema_of(table: str) -> str | None:
    return table.split(".", 1)[0] if "." in table else None


def relation(table: str) -> sql.Identifier:
    """A table as the pre-flight names it (`t` or `schema.t`)."""
    return sql.Identifier(*table.split(".", 1))


def sibling(table: str, name: str) -> sql.Identifier:
    """An object in the table's schema (its index, the sync function)."""
    schema = schema_of(table)
    return sql.Identifier(schema, name) if schema else sql.Identifier(name)
