"""ALTER COLUMN … TYPE: a rewrite of the table and its indexes (MS001), or a brief lock only (MS002)."""
from __future__ import annotations

from typing import cast

from ..actions import Action
from ..catalog import ColumnType
from ..coltypes import rewrite_needed
from ..context import Context
from ..locks import Kind
from ..registry import Hit, action_rule
from .common import LOCK_TIMEOUT_RETRY


def _rewrite(a: Action, ctx: Context) -> bool | None:
    new = cast(ColumnType, a.new)  # an ALTER COLUMN TYPE action always carries its new type
    return rewrite_needed(a.old, new, a.node.def_.raw_default is not None, ctx.catalog)


@action_rule(
    "MS001", "alter-type-rewrite", {Kind.ALTER_COLUMN_TYPE},
    remedy="add a new column, sync it with a trigger, backfill in batches, build its indexes CONCURRENTLY, then "
           "swap in a short transaction",
    triggers=["ALTER TABLE t ALTER COLUMN c TYPE bigint",
              "ALTER TABLE t ALTER COLUMN c TYPE varchar(255)",  # current type unknown offline: maybe a rewrite
              "ALTER TABLE t ALTER COLUMN c TYPE text USING c::text"],
    passes=["ALTER TABLE t ADD COLUMN c varchar(40);\nALTER TABLE t ALTER COLUMN c TYPE varchar(255)",
            "CREATE TABLE t (c int);\nALTER TABLE t ALTER COLUMN c TYPE bigint"])
def alter_type_rewrite(a: Action, ctx: Context) -> Hit | None:
    if not a.existing:
        return None
    needed = _rewrite(a, ctx)
    if needed:
        return Hit("rewrite", "rewrite", f"{a.column}: {a.old or 'current type'} → {a.new} rewrites the table and "
                                         f"its indexes")
    if needed is None:
        return Hit("unknown", "rewrite", f"{a.column}: → {a.new} rewrites the table unless the current type is "
                                         f"binary-coercible to it; give a DSN to decide")
    return None


@action_rule(
    "MS002", "alter-type-no-rewrite", {Kind.ALTER_COLUMN_TYPE},
    remedy=LOCK_TIMEOUT_RETRY,
    triggers=["ALTER TABLE t ADD COLUMN c varchar(40);\nALTER TABLE t ALTER COLUMN c TYPE varchar(255)",
              "ALTER TABLE t ADD COLUMN c varchar(40);\nALTER TABLE t ALTER COLUMN c TYPE text"],
    passes=["ALTER TABLE t ALTER COLUMN c TYPE bigint",
            "ALTER TABLE t ADD COLUMN c varchar(40);\nALTER TABLE t ALTER COLUMN c TYPE varchar(20)"])
def alter_type_no_rewrite(a: Action, ctx: Context) -> Hit | None:
    if a.existing and _rewrite(a, ctx) is False:
        return Hit(note=f"{a.column}: {a.old} → {a.new} is binary-coercible (no rewrite)")
    return None
