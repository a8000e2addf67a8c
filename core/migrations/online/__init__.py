"""The online preparation: what of a migration's slow work is done while the old version serves, so that the
app's own statement, run unchanged in the cutover, becomes a catalog-only change.

`planner.plan` reads the pre-flight's findings and gives each flagged statement a verdict (`Verdict`): prepared
online (with its `Preparation`: ordered SQL in phases, built with psycopg's `sql`), an online candidate (no live
table known yet), or in the downtime, with the reason. `widen` and `notnull` build the two preparations that exist
(integer widening; SET NOT NULL); `shape` is what they need to know of the live table.
"""
from .planner import plan
from .preparation import Backfill, OnlinePlan, OnlineSettings, Preparation, Status, Step, Verdict
from .shape import Column, ForeignKey, Index, TableShape

__all__ = ["Backfill", "Column", "ForeignKey", "Index", "OnlinePlan", "OnlineSettings", "Preparation", "Status",
           "Step", "TableShape", "Verdict", "plan"]
