"""`SET NOT NULL` online: a `CHECK (col IS NOT NULL)` added NOT VALID and validated while the old version serves
(SHARE UPDATE EXCLUSIVE: DML continues), so that the app's `SET NOT NULL` finds it and skips its full scan under
ACCESS EXCLUSIVE (PostgreSQL 12 and later). The helper constraint is dropped once the migration has run."""
from __future__ import annotations

from psycopg import sql

from . import names
from .preparation import Preparation, Step

PG_12 = 120000


def blockers(server_version_num: int | None) -> list[str]:
    if server_version_num is not None and server_version_num < PG_12:
        return ["PostgreSQL before 12 does not use a validated CHECK to skip SET NOT NULL's scan"]
    return []


def prepare(table: str, column: str) -> Preparation:
    rel, c = names.relation(table), sql.Identifier(column)
    name = f"ss_nn_{names.tag(table, column)}"
    check = sql.Identifier(name)
    drop = Step("drop the helper check", (sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(rel, check),))
    return Preparation(
        "not-null", table, column,
        "CHECK (… IS NOT NULL) added NOT VALID, then validated online (one scan, writes continue); the app's "
        "SET NOT NULL then skips its scan",
        (Step("add the helper check NOT VALID", (sql.SQL(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}, ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID").format(
            rel, check, check, c),)),),
        None,
        (Step("validate the helper check", (sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(rel, check),),
              autocommit=True),),
        None, (), (drop,), (drop,), (f"constraint {name}",))
