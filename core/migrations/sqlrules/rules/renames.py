"""RENAME of a table, column, index or constraint: the application still uses the old name (MS019)."""
from __future__ import annotations

from ..actions import Action
from ..context import Context
from ..locks import Kind
from ..registry import Hit, action_rule


@action_rule(
    "MS019", "rename", {Kind.RENAME},
    remedy="expand/contract over two releases, or a view under the old name",
    triggers=["ALTER TABLE t RENAME COLUMN a TO b", "ALTER TABLE t RENAME TO u"],
    passes=["ALTER TABLE t ADD COLUMN c text"])
def rename(a: Action, ctx: Context) -> Hit | None:
    return Hit()
