"""DROP COLUMN and DROP TABLE: the running release may still read what is dropped (MS020)."""
from __future__ import annotations

from ..actions import Action
from ..context import Context
from ..locks import Kind
from ..registry import Hit, action_rule


@action_rule(
    "MS020", "drop-column/table", {Kind.DROP_COLUMN, Kind.DROP_TABLE},
    remedy="stop the app reading it first (previous release); drop dependent FKs and indexes first",
    triggers=["ALTER TABLE t DROP COLUMN c", "DROP TABLE t"],
    passes=["DROP SEQUENCE s", "ALTER TABLE t ALTER COLUMN c DROP DEFAULT"])
def drop_column_or_table(a: Action, ctx: Context) -> Hit | None:
    return Hit(note=f"drops column {a.column}") if a.kind is Kind.DROP_COLUMN else Hit()
