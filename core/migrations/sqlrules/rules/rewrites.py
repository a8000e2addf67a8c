"""Commands that rewrite the whole table under ACCESS EXCLUSIVE: VACUUM FULL, CLUSTER, SET TABLESPACE, SET
LOGGED/UNLOGGED, SET ACCESS METHOD (MS017)."""
from __future__ import annotations

from ..actions import Action
from ..context import Context
from ..locks import Kind
from ..registry import Hit, action_rule


@action_rule(
    "MS017", "table-rewrite-commands", {Kind.VACUUM_FULL, Kind.CLUSTER, Kind.REWRITE_TABLE},
    remedy="pg_repack, or REPACK CONCURRENTLY where available",
    triggers=["VACUUM FULL t", "CLUSTER t USING i", "ALTER TABLE t SET TABLESPACE other",
              "ALTER TABLE t SET LOGGED"],
    passes=["VACUUM t", "ALTER TABLE t SET (fillfactor = 70)"])
def table_rewrite(a: Action, ctx: Context) -> Hit | None:
    return Hit("rewrite", "rewrite")
