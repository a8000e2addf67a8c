"""Where statements run: CONCURRENTLY inside a transaction block (MS013), a lock wait with no lock_timeout
(MS024), a write-blocking lock held through later revisions of one transaction (MS025)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..actions import Action
from ..context import Context
from ..findings import Finding, blocks_writes
from ..locks import Kind
from ..registry import Hit, migration_rule, statement_rule

# The kinds PostgreSQL refuses inside a transaction block, and what the finding says about it.
_NO_TRANSACTION = {
    Kind.CREATE_INDEX_CONCURRENTLY: "CONCURRENTLY cannot run inside a transaction block: this statement will fail",
    Kind.DROP_INDEX_CONCURRENTLY: "DROP INDEX CONCURRENTLY cannot run inside a transaction block",
    Kind.REINDEX_CONCURRENTLY: "REINDEX CONCURRENTLY cannot run inside a transaction block",
    Kind.DETACH_PARTITION_CONCURRENTLY: "DETACH PARTITION CONCURRENTLY cannot run inside a transaction block",
}
_MULTI_REVISION_TX = ("BEGIN;\n-- Running upgrade a -> b\nALTER TABLE t RENAME COLUMN x TO y;\n"
                      "-- Running upgrade b -> c\nALTER TABLE u ALTER COLUMN n TYPE bigint;\nCOMMIT;\n")


@statement_rule(
    "MS013", "concurrently-in-transaction",
    remedy="run it inside op.get_context().autocommit_block(): it fails in a transaction",
    triggers=["BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (c);\nCOMMIT", "BEGIN;\nDROP INDEX CONCURRENTLY i;\nCOMMIT",
              "BEGIN;\nREINDEX TABLE CONCURRENTLY t;\nCOMMIT",
              "BEGIN;\nALTER TABLE p DETACH PARTITION c CONCURRENTLY;\nCOMMIT"],
    passes=["CREATE INDEX CONCURRENTLY i ON t (c)", "BEGIN;\nCOMMIT;\nDROP INDEX CONCURRENTLY i",
            "BEGIN;\nCREATE INDEX i ON t (c);\nCOMMIT"])
def concurrently_in_transaction(f: Finding, actions: Sequence[Action], ctx: Context) -> Hit | None:
    if ctx.tx is None:
        return None
    notes = [_NO_TRANSACTION[a.kind] for a in actions if a.kind in _NO_TRANSACTION]
    return Hit(note=notes[0]) if notes else None


@statement_rule(
    "MS024", "missing-lock-timeout",
    remedy="SET lock_timeout = '2s' before the first locking statement, and retry",
    triggers=["ALTER TABLE t RENAME COLUMN a TO b", "SET statement_timeout = '5s';\nCREATE INDEX i ON t (c)"],
    passes=["SET lock_timeout = '2s';\nALTER TABLE t RENAME COLUMN a TO b",
            "CREATE TABLE t (c int);\nALTER TABLE t RENAME COLUMN c TO d", "UPDATE t SET c = 0 WHERE id = 1"])
def missing_lock_timeout(f: Finding, actions: Sequence[Action], ctx: Context) -> Hit | None:
    """On the first statement that waits for a write-blocking lock on an existing table, unless a `SET
    lock_timeout` came before it: while it waits, every query on the table queues behind it."""
    if ctx.writes_blocked_before or ctx.lock_timeout_set or not blocks_writes(f, ctx.created):
        return None
    return Hit(warning=f"no lock_timeout is set before statement {f.index} (line {f.line}, {f.lock} on {f.table}): "
                       f"while it waits for the lock, every query on the table queues behind it")


@migration_rule(
    "MS025", "single-tx-accumulation",
    remedy="transaction_per_migration=True in env.py, or split the upgrade",
    triggers=[_MULTI_REVISION_TX],
    passes=[_MULTI_REVISION_TX.replace("\n-- Running upgrade b", "\nCOMMIT;\nBEGIN;\n-- Running upgrade b"),
            "BEGIN;\nALTER TABLE t RENAME COLUMN x TO y;\nALTER TABLE u ALTER COLUMN n TYPE bigint;\nCOMMIT;\n"])
def single_transaction_accumulation(findings: list[Finding], created: set[str]) -> Iterator[tuple[Finding, Hit]]:
    """In one transaction spanning several revisions, a write-blocking lock on an existing table is held while
    later revisions do real work (a rewrite, scan, index build or backfill); reported where it is first taken."""
    by_tx: dict[int, list[Finding]] = {}
    for f in findings:
        if f.transaction is not None:
            by_tx.setdefault(f.transaction, []).append(f)
    for tx in by_tx.values():
        for i, f in enumerate(tx):
            if not blocks_writes(f, created) or any(g.table == f.table and blocks_writes(g, created) for g in tx[:i]):
                continue  # no such lock, or it was already held: reported on the earlier statement
            later = [g for g in tx[i + 1:] if g.revision != f.revision and g.work]
            if later:
                yield f, Hit(note=f"{f.lock} on {f.table} is held until COMMIT, through "
                                  f"{len({g.revision for g in later})} later revision(s) doing "
                                  f"{len(later)} rewrite/scan/index statement(s)")
