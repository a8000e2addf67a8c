"""The analysis' output: one `Finding` per statement, and which existing tables each one blocks writes to."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import locks
from .registry import remedy

EFFECTS = ("none", "scan", "rewrite", "unknown", "data-loss")  # in order of severity
# Rules about where a statement runs rather than what it does: their remedy comes after the others'.
_CONTEXT_RULES = ("MS024", "MS025")


@dataclass
class Finding:
    index: int
    line: int
    sql: str
    statement: str                # parse-node name, or "unparsable"
    table: str | None = None
    lock: str | None = None
    effect: str = "none"
    rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    revision: str | None = None
    transaction: int | None = None  # number of the BEGIN…COMMIT block, None in autocommit
    work: list[tuple[str, str]] = field(default_factory=list)  # (kind, table): rewrite | scan | index | dml
    other_locks: dict[str, str] = field(default_factory=dict)  # more tables locked (the referenced side of an FK)
    forecast_seconds: dict | None = None
    # prepared online (`migcheck.analyze`'s `catalog_only`): catalog-only in the downtime; this is the preparation's
    # own forecast while the old version serves ({"forecast_seconds", "batches"})
    prepared_online: dict | None = None

    @property
    def safe_alternative(self) -> str | None:
        alts = [remedy(r) for r in self.rules if r not in _CONTEXT_RULES]
        alts += [remedy(r) for r in self.rules if r in _CONTEXT_RULES]
        return "; ".join(dict.fromkeys(alts)) or None

    def add(self, rule: str | None = None, lock: str | None = None, effect: str | None = None,
            note: str | None = None, work: str | None = None) -> None:
        if rule and rule not in self.rules:
            self.rules.append(rule)
        if lock and locks.strength(lock) > locks.strength(self.lock):
            self.lock = lock
        if effect and EFFECTS.index(effect) > EFFECTS.index(self.effect):
            self.effect = effect
        if note:
            self.notes.append(note)
        if work and self.table and (work, self.table) not in self.work:
            self.work.append((work, self.table))

    def to_dict(self) -> dict:
        return {"index": self.index, "line": self.line, "sql": self.sql, "statement": self.statement,
                "table": self.table, "lock": self.lock, "effect": self.effect, "rules": self.rules,
                "forecast_seconds": self.forecast_seconds, "safe_alternative": self.safe_alternative,
                "revision": self.revision, "notes": self.notes,
                **({"prepared_online": self.prepared_online} if self.prepared_online is not None else {})}


@dataclass
class Analysis:
    findings: list[Finding]
    warnings: list[str]
    created_tables: set[str]
    set_aside: list[tuple[int, str]] = field(default_factory=list)  # (line, text) of what is not SQL
    incomplete: dict[str, str] = field(default_factory=dict)  # revision → why its SQL is not all that runs


def blocks_writes(f: Finding, created: set[str]) -> bool:
    """The statement takes a lock that blocks writes (SHARE or stronger) on its own table, which existed before
    this SQL (nobody else uses a table created in the same run) and is not Alembic's bookkeeping."""
    return (f.table is not None and f.table != "alembic_version" and f.table not in created
            and locks.blocks_writes(f.lock))


def locked_tables(f: Finding, created: set[str]) -> list[str]:
    """Every existing table whose writes the statement blocks until its transaction ends: its own table (also
    through the row locks of an unbatched backfill, MS023) and the other side of a foreign key or partition."""
    out: list[str] = []
    if f.table is not None and (blocks_writes(f, created) or ("MS023" in f.rules and f.table not in created)):
        out.append(f.table)
    return out + [t for t, lock in f.other_locks.items() if locks.blocks_writes(lock) and t not in created]
