"""A statement's online preparation as data: ordered SQL in phases, which `runner` walks and people read.

Phases, in order:
- `setup`: the shadow column, its sync trigger, a helper CHECK added NOT VALID (short locks, each its own
  transaction);
- `backfill`: keyed batches, each its own short transaction, with a pause between them;
- `build`: indexes built CONCURRENTLY, helper constraints validated (autocommit; DML continues);
- `swap`: one short transaction under `lock_timeout`, retried, that makes the table what the app's statement asks
  for, so that the statement becomes a catalog-only change;
- `after_swap`: foreign keys re-added NOT VALID in the swap, validated; statistics of the new column;
- `after_migration`: once the app's migration has run, its helper objects dropped;
- `undo`: before the swap, every object the preparation made dropped again (each step idempotent).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from psycopg import sql

from .shape import TableShape

Statement = sql.Composed | sql.SQL  # what a connection executes


@dataclass(frozen=True)
class OnlineSettings:
    """How the preparation treats the serving database."""

    batch_rows: int = 10_000          # rows per backfill batch
    pause_seconds: float = 0.05       # between two batches
    lock_timeout_ms: int = 2_000      # every statement that waits for a lock (batches, setup, swap)
    swap_lock_timeout_ms: int = 500   # the swap's: below deadlock_timeout (1 s), so the swap gives way, not the app
    swap_retries: int = 5             # attempts of the swap transaction when its lock_timeout expires


class Status(StrEnum):
    PREPARED = "prepared online"      # a preparation is planned (the live table is known)
    CANDIDATE = "online candidate"    # an online equivalent exists; the live table decides (no catalog yet)
    DOWNTIME = "in the downtime"


@dataclass(frozen=True)
class Step:
    """Statements run together: in one transaction, or (`autocommit`) each on its own, as CONCURRENTLY needs."""

    title: str
    statements: tuple[Statement, ...]
    autocommit: bool = False


@dataclass(frozen=True)
class Backfill:
    """Copies the column into the shadow column in batches in key order, up to `bound`'s key (the greatest key once
    the sync trigger exists: a row inserted later has it set by the trigger, so a backfill never chases the inserts
    of the serving app): `first` (parameters `rows`, `upper`), then `next` (also `after`, the last key done) until
    a batch's last key is NULL. Each returns one row: (the batch's last key, or NULL when there was none; rows
    copied)."""

    table: str
    key: str
    first: Statement
    next: Statement
    rows_estimate: float
    bound: Statement


@dataclass(frozen=True)
class Preparation:
    kind: str                         # widen | not-null
    table: str
    column: str
    summary: str                      # for people: what is prepared, and how
    setup: tuple[Step, ...]
    backfill: Backfill | None
    build: tuple[Step, ...]
    swap: Step | None
    after_swap: tuple[Step, ...]
    after_migration: tuple[Step, ...]
    undo: tuple[Step, ...]
    objects: tuple[str, ...] = ()     # the helper objects it creates, named for people
    shape: TableShape | None = None   # what it was built from (a widening's), so a plan.json rebuilds it the same
    new_type: str = ""

    def steps(self) -> list[Step]:
        """Every step that runs before the writers stop, in order (the backfill apart)."""
        return [*self.setup, *self.build, *([self.swap] if self.swap else []), *self.after_swap]


@dataclass(frozen=True)
class Verdict:
    """What becomes of one pending statement (one subcommand of it) in the upgrade."""

    finding: int                      # the pre-flight finding's index
    line: int
    table: str | None
    column: str | None
    status: Status
    reason: str
    preparation: Preparation | None = None

    def to_dict(self) -> dict:
        return {"finding": self.finding, "line": self.line, "table": self.table, "column": self.column,
                "status": str(self.status), "reason": self.reason,
                "summary": self.preparation.summary if self.preparation else None}


@dataclass(frozen=True)
class OnlinePlan:
    verdicts: tuple[Verdict, ...] = field(default_factory=tuple)

    @property
    def preparations(self) -> list[Preparation]:
        return [v.preparation for v in self.verdicts if v.preparation is not None]

    def lines(self) -> list[str]:
        """One line per verdict, for people."""
        return [f"line {v.line}: {v.table}{'.' + v.column if v.column else ''}: {v.status} ({v.reason})"
                for v in self.verdicts]
