"""ADD COLUMN: rewrites for serial, volatile defaults, identity and stored generated columns (MS003, MS004); a
constant default stored once (MS005); NOT NULL with no default, which fails on a table with rows (MS006)."""
from __future__ import annotations

from ..actions import Action
from ..context import Context
from ..expressions import functions_called, is_volatile
from ..locks import Kind
from ..registry import Hit, action_rule
from .common import LOCK_TIMEOUT_RETRY

PG_11 = 110000  # server_version_num of PostgreSQL 11.0: a constant default no longer rewrites the table


@action_rule(
    "MS003", "add-column-volatile-default", {Kind.ADD_COLUMN_SERIAL, Kind.ADD_COLUMN_DEFAULT},
    remedy="add the column with no default, SET DEFAULT, then backfill in batches",
    triggers=["ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()",
              "ALTER TABLE t ADD COLUMN c bigserial", "ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()"],
    passes=["ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()",
            "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN c bigserial"])
def add_column_volatile_default(a: Action, ctx: Context) -> Hit | None:
    if not a.existing:
        return None
    if a.kind is Kind.ADD_COLUMN_SERIAL:
        return Hit("rewrite", "rewrite", f"{a.column} is {a.node.typeName.names[-1].sval.lower()}: nextval per row")
    if is_volatile(a.expr, ctx.catalog):
        fns = ", ".join(functions_called(a.expr))
        return Hit("rewrite", "rewrite", f"{a.column} DEFAULT calls a volatile function ({fns}): every row is "
                                         f"rewritten")
    return None


@action_rule(
    "MS004", "add-column-stored-generated/identity/domain", {Kind.ADD_COLUMN_IDENTITY, Kind.ADD_COLUMN_GENERATED},
    remedy="add a nullable column, fill it by trigger and batched backfill",
    triggers=["ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a + 1) STORED",
              "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS IDENTITY"],
    passes=["ALTER TABLE t ADD COLUMN c int",
            "CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS IDENTITY"])
def add_column_generated(a: Action, ctx: Context) -> Hit | None:
    if not a.existing:
        return None
    what = "an identity column" if a.kind is Kind.ADD_COLUMN_IDENTITY else "a stored generated column"
    return Hit("rewrite", "rewrite", f"{a.column} is {what}")


@action_rule(
    "MS005", "add-column-constant-default", {Kind.ADD_COLUMN_DEFAULT},
    remedy=LOCK_TIMEOUT_RETRY,
    triggers=["ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()", "ALTER TABLE t ADD COLUMN c int DEFAULT 0"],
    passes=["ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()", "ALTER TABLE t ADD COLUMN c int"])
def add_column_constant_default(a: Action, ctx: Context) -> Hit | None:
    if not a.existing or is_volatile(a.expr, ctx.catalog):
        return None
    if ctx.catalog is not None and ctx.catalog.server_version_num < PG_11:
        return Hit("rewrite", "rewrite", "before PostgreSQL 11 any default rewrites")
    return Hit(note=f"{a.column}: constant default, stored once (no rewrite)")


@action_rule(
    "MS006", "add-column-not-null-no-default", {Kind.ADD_COLUMN_NOT_NULL},
    remedy="give it a constant default, or add it nullable and backfill",
    triggers=["ALTER TABLE t ADD COLUMN c int NOT NULL"],
    passes=["ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0", "ALTER TABLE t ADD COLUMN c int",
            "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN c int NOT NULL"])
def add_column_not_null(a: Action, ctx: Context) -> Hit | None:
    if not a.existing:
        return None
    info = ctx.info(a.table)
    rows = f" ({info.rows:,.0f} rows now)" if info else ""
    warning = (f"statement {ctx.index}: ADD COLUMN {a.column} NOT NULL without a default will fail: {a.table} has "
               f"rows") if info and info.rows > 0 else None
    return Hit(note=f"{a.column} NOT NULL with no default fails on a table with rows{rows}", warning=warning)
