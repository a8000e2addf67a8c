"""Partitions: ATTACH scans the partition for its bound (MS021); DETACH without CONCURRENTLY takes ACCESS
EXCLUSIVE on the parent (MS022)."""
from __future__ import annotations

from ..actions import Action
from ..context import Context
from ..locks import Kind
from ..registry import Hit, action_rule


@action_rule(
    "MS021", "attach-partition", {Kind.ATTACH_PARTITION},
    remedy="add a CHECK matching the partition bound first (NOT VALID + VALIDATE)",
    triggers=["ALTER TABLE p ATTACH PARTITION c FOR VALUES IN (1)"],
    passes=["ALTER TABLE p DETACH PARTITION c"])
def attach_partition(a: Action, ctx: Context) -> Hit | None:
    return Hit("scan", "scan", f"attaches {a.others[0]} (ACCESS EXCLUSIVE on it)")


@action_rule(
    "MS022", "detach-partition-blocking", {Kind.DETACH_PARTITION},
    remedy="DETACH PARTITION … CONCURRENTLY (PostgreSQL 14+)",
    triggers=["ALTER TABLE p DETACH PARTITION c"],
    passes=["ALTER TABLE p DETACH PARTITION c CONCURRENTLY"])
def detach_partition_blocking(a: Action, ctx: Context) -> Hit | None:
    return Hit()
