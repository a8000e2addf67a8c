"""Which pending statements are prepared online and which stay in the downtime, and why: the pre-flight's findings
(`sqlrules.analyse`) read statement by statement, each ALTER TABLE subcommand that has an online equivalent given
its preparation (`widen`, `notnull`) when the live table is known.

Pure: the live table comes in as a `TableShape` from `shapes(table, column)` (None offline: then a statement that
has an online equivalent is an "online candidate", decided when the upgrade plans against the live server)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from pglast import ast, enums
from pglast.parser import ParseError

from core.migrations.sqlrules import Analysis, Finding, locked_tables
from core.migrations.sqlrules.coltypes import column_type
from core.migrations.sqlrules.registry import REGISTRY
from core.migrations.sqlrules.statements import parse

from . import notnull, widen
from .preparation import OnlinePlan, OnlineSettings, Preparation, Status, Verdict
from .shape import TableShape

_NO_TABLE_CHANGE = ("TransactionStmt", "VariableSetStmt", "SelectStmt")
Shapes = Callable[[str, str], TableShape | None]
T = enums.AlterTableType
# Why a flagged statement has no online equivalent that leaves the app's own statement unchanged.
_WHY_NOT: dict[str, str] = {
    "MS001": "a type change other than an integer widening",
    "MS003": "the app's ADD COLUMN itself fills every row",
    "MS004": "the app's ADD COLUMN itself fills every row",
    "MS008": "the app's CHECK is validated by its own statement",
    "MS009": "the app's foreign key is validated by its own statement",
    "MS011": "the app's statement builds the index itself",
    "MS012": "CREATE INDEX without CONCURRENTLY: the app's statement builds the index itself",
    "MS016": "the app's statement builds the exclusion index itself",
    "MS017": "the app's statement rewrites the table itself",
    "MS018": "the app's REINDEX rebuilds the index itself",
    "MS023": "the app's own UPDATE or DELETE touches every row",
}


def plan(analysis: Analysis, shapes: Shapes | None = None, settings: OnlineSettings | None = None,
         server_version_num: int | None = None) -> OnlinePlan:
    """A verdict for every statement that blocks writes to an existing table with a rewrite or a scan, in order."""
    return _Planner(analysis, shapes, settings or OnlineSettings(), server_version_num).run()


@dataclass
class _Planner:
    analysis: Analysis
    shapes: Shapes | None
    settings: OnlineSettings
    version: int | None
    touched: set[str] = field(default_factory=set)   # tables an earlier statement changes in the cutover …
    prepared: set[str] = field(default_factory=set)  # … and columns an earlier statement's preparation changes

    def run(self) -> OnlinePlan:
        verdicts: list[Verdict] = []
        for f in self.analysis.findings:
            mine = self._verdicts(f)
            verdicts += mine
            if mine and all(v.status is not Status.DOWNTIME for v in mine):
                self.prepared.update(f"{v.table}\0{v.column}" for v in mine)
            elif f.table is not None and f.table != "alembic_version" and f.statement not in _NO_TABLE_CHANGE:
                self.touched.add(f.table)
        return OnlinePlan(tuple(verdicts))

    def _verdicts(self, f: Finding) -> list[Verdict]:
        if not locked_tables(f, self.analysis.created_tables) or f.effect == "none":
            return []
        if "MS001" not in f.rules and "MS007" not in f.rules:
            return [_downtime(f, None, _why_not(f))]
        cmds = _subcommands(f)
        others = [cmd for cmd in cmds if cmd.subtype not in (T.AT_AlterColumnType, T.AT_SetNotNull)]
        if not cmds or others:
            what = ", ".join(cast(enums.AlterTableType, c.subtype).name for c in others) or "unreadable"
            return [_downtime(f, None, f"the statement also does {what}")]
        return [self._subcommand(f, cmd) for cmd in cmds]

    def _subcommand(self, f: Finding, cmd: ast.AlterTableCmd) -> Verdict:
        table, column = cast(str, f.table), cast(str, cmd.name)
        if table in self.touched:
            return _downtime(f, column, "an earlier statement of the migration changes this table first")
        if f"{table}\0{column}" in self.prepared:
            return _downtime(f, column, "an earlier statement of the migration changes this column first")
        if cmd.subtype == T.AT_SetNotNull:
            why = notnull.blockers(self.version)
            if why:
                return _downtime(f, column, "; ".join(why))
            if self.shapes is None:
                return Verdict(f.index, f.line, table, column, Status.CANDIDATE,
                               "CHECK … NOT VALID, validated online, if the live table allows it")
            return _prepared(f, column, notnull.prepare(table, column))
        return self._widening(f, cmd, table, column)

    def _widening(self, f: Finding, cmd: ast.AlterTableCmd, table: str, column: str) -> Verdict:
        definition = cast(ast.ColumnDef, cmd.def_)
        new = column_type(cast(ast.TypeName, definition.typeName))
        if definition.raw_default is not None:
            return _downtime(f, column, "a USING expression computes new values")
        if new.name not in ("int4", "int8") or new.array:
            return _downtime(f, column, _WHY_NOT["MS001"])
        shape = self.shapes(table, column) if self.shapes is not None else None
        if shape is None:
            return Verdict(f.index, f.line, table, column, Status.CANDIDATE,
                           f"→ {new.name}: shadow column, trigger, batched backfill and swap, if the live column "
                           f"is a narrower integer and the table allows it")
        why = widen.blockers(shape, new.name)
        if why:
            return _downtime(f, column, "; ".join(why))
        return _prepared(f, column, widen.prepare(shape, new.name, self.settings))


def _prepared(f: Finding, column: str, prep: Preparation) -> Verdict:
    return Verdict(f.index, f.line, f.table, column, Status.PREPARED, prep.summary, prep)


def _downtime(f: Finding, column: str | None, why: str) -> Verdict:
    return Verdict(f.index, f.line, f.table, column, Status.DOWNTIME, why)


def _why_not(f: Finding) -> str:
    for code in f.rules:
        if code in _WHY_NOT:
            return f"{REGISTRY[code].name} ({code}): {_WHY_NOT[code]}"
    named = [f"{REGISTRY[c].name} ({c})" for c in f.rules if c in REGISTRY]
    return ", ".join(named) + ": no online equivalent that leaves the app's statement unchanged" if named else \
        "no online equivalent that leaves the app's statement unchanged"


def _subcommands(f: Finding) -> list[ast.AlterTableCmd]:
    try:
        stmt = parse(f.sql)
    except ParseError:
        return []
    if not isinstance(stmt, ast.AlterTableStmt):
        return []
    return list(cast("tuple[ast.AlterTableCmd, ...]", stmt.cmds))
