"""The analysis driver: each statement parsed, classified, locked from the lock table and judged by every
registered rule that applies; then the rules over the whole SQL."""
from __future__ import annotations

from pglast.parser import ParseError

from . import rules  # noqa: F401  (importing it registers every MS rule)
from .actions import Action
from .catalog import Catalog
from .classify import classify
from .context import Context
from .findings import Analysis, Finding, blocks_writes
from .locks import LOCKS, OTHER_SIDE_LOCKS
from .registry import Hit, action_rules, migration_rules, statement_rules
from .revisions import Revisions, incomplete
from .statements import line_of, parse, set_aside, split_statements


def analyse(sql: str, catalog: Catalog | None = None, per_revision: bool = False) -> Analysis:
    """Every statement of `sql`, in order, with its table, lock, effect and rules. Text that is not SQL (the
    tool's log lines, warnings, errors) is set aside and listed; a revision whose rendering is not all that will
    run (`revisions.incomplete`) is named. `per_revision`: the migration commits after each revision (Alembic's
    `transaction_per_migration`), whatever one BEGIN…COMMIT around the rendering says."""
    ctx = Context(sql, catalog)
    revisions = Revisions(sql)
    clean, aside = set_aside(sql)
    findings = [_statement(ctx, revisions, i, offset, text)
                for i, (offset, text) in enumerate(split_statements(clean), start=1)]
    if aside:
        ctx.warnings.append(f"{len(aside)} line(s) of the rendered output are not SQL (the tool's log lines, "
                            f"warnings or errors): set aside, listed in the report, not analysed")
    partial = incomplete(sql)
    if per_revision:
        _one_transaction_per_revision(findings)
    for rule in migration_rules():
        for f, hit in rule.check(findings, ctx.created):
            _record(f, rule.code, hit, ctx)
    for f in findings:
        if f.table in ctx.created and f.effect not in ("data-loss", "unknown"):
            f.work = [w for w in f.work if w[1] not in ctx.created]
    return Analysis(findings, ctx.warnings, ctx.created, set_aside=aside, incomplete=partial)


def _one_transaction_per_revision(findings: list[Finding]) -> None:
    """Each revision's part of a BEGIN…COMMIT block becomes a transaction of its own, as it will run."""
    numbers: dict[tuple[int, str | None], int] = {}
    for f in findings:
        if f.transaction is not None:
            f.transaction = numbers.setdefault((f.transaction, f.revision), len(numbers) + 1)


def _statement(ctx: Context, revisions: Revisions, index: int, offset: int, text: str) -> Finding:
    f = Finding(index, line_of(ctx.sql, offset), text, "unparsable", revision=revisions.at(offset),
                transaction=ctx.tx)
    ctx.index = index
    try:
        stmt = parse(text)
    except ParseError as exc:
        f.effect = "unknown"
        f.notes.append(f"not analysable: {exc}")
        ctx.warnings.append(f"statement {index} (line {f.line}) is not analysable ({exc}); review it by hand")
        return f
    f.statement = type(stmt).__name__
    classified = classify(stmt, ctx)
    if ctx.tx is not None:
        f.transaction = ctx.tx  # a BEGIN belongs to the block it opens (a COMMIT to the one it closes)
    f.table = classified.table
    for action in classified.actions:
        _act(f, action, ctx)
    for rule in statement_rules():
        hit = rule.check(f, classified.actions, ctx)
        if hit is not None:
            _record(f, rule.code, hit, ctx)
    ctx.writes_blocked_before = ctx.writes_blocked_before or blocks_writes(f, ctx.created)
    revisions.data_loss(f, offset, ctx)
    return f


def _act(f: Finding, a: Action, ctx: Context) -> None:
    """The action's lock (from the lock table) and own effect, then what each rule for its kind finds."""
    f.add(lock=LOCKS[a.kind], effect=a.effect, note=a.note, work=a.work)
    for other in a.others:
        f.other_locks[other] = OTHER_SIDE_LOCKS[a.kind]
    for rule in action_rules(a.kind):
        hit = rule.check(a, ctx)
        if hit is not None:
            _record(f, rule.code, hit, ctx)


def _record(f: Finding, code: str, hit: Hit, ctx: Context) -> None:
    f.add(code, effect=hit.effect, note=hit.note, work=hit.work)
    if hit.warning:
        ctx.warnings.append(hit.warning)
