"""UPDATE or DELETE of most of an existing table in one statement: its row locks last until COMMIT (MS023)."""
from __future__ import annotations

from ..actions import Action
from ..context import Context
from ..expressions import selective
from ..locks import Kind
from ..registry import Hit, action_rule


@action_rule(
    "MS023", "unbatched-dml-backfill", {Kind.UPDATE, Kind.DELETE},
    remedy="backfill in batches, throttled, outside the DDL transaction",
    triggers=["UPDATE t SET c = 0 WHERE c IS NULL", "UPDATE t SET c = 0", "DELETE FROM t WHERE c < 10"],
    passes=["UPDATE t SET c = 0 WHERE id = 42", "DELETE FROM t WHERE id IN (1, 2)",
            "UPDATE alembic_version SET version_num = 'b' WHERE version_num = 'a'",
            "CREATE TABLE t (c int);\nUPDATE t SET c = 0"])
def unbatched_dml(a: Action, ctx: Context) -> Hit | None:
    if not a.existing or selective(a.node.whereClause):
        return None
    verb = "UPDATE" if a.kind is Kind.UPDATE else "DELETE"
    return Hit("rewrite", "dml", f"{verb} of every matching row in one statement: row locks are held until COMMIT")
