"""What classification makes of a statement: its table and the actions it performs, each of a `Kind`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .catalog import ColumnType
from .locks import Kind


@dataclass(frozen=True)
class Action:
    """One thing a statement does: the statement itself, or one subcommand of an ALTER TABLE (or one constraint of
    an added column). Its kind gives its lock (`locks.LOCKS`); the rules registered for the kind judge it."""

    kind: Kind
    table: str | None = None
    existing: bool = False          # the table existed before this SQL (only then do size rules apply)
    node: Any = None                # the parse node rules read: statement, subcommand, ColumnDef or Constraint
    column: str | None = None       # the column an ALTER TABLE subcommand is about
    old: ColumnType | None = None   # ALTER COLUMN TYPE: the type before (None: unknown) …
    new: ColumnType | None = None   # … and after
    expr: Any = None                # ADD COLUMN … DEFAULT: the default expression
    others: tuple[str, ...] = ()    # other tables it locks (`locks.OTHER_SIDE_LOCKS`)
    effect: str | None = None       # what it does whatever the rules say (REINDEX CONCURRENTLY scans)
    work: str | None = None
    note: str | None = None


@dataclass
class Classified:
    table: str | None               # the statement's own table, the finding's `table`
    actions: list[Action] = field(default_factory=list)
