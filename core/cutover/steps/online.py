"""The online preparation's steps: `PrepareOnline` (after the backup, the old version serving: each preparation's
setup, batched backfill, concurrent builds, swap, each part journalled) and `SettleOnline` (a clean-up: after the
migration, the helper objects the migration no longer needs dropped; after a stop before it, each preparation
undone, or finished once its swap committed, as `core.cutover.online.left_behind` decides)."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from core.cutover.online import FINISH_SWAP, NOTHING, UNDO, left_behind, part_id
from core.cutover.steps.base import Phase, Step, StepContext
from core.cutover.steps.cleanup import Cleanup
from core.cutover.steps.cutover import Migrate
from core.errors import OnlinePreparationFailed
from core.migrations.online import OnlineSettings, Preparation, runner
from core.migrations.online import Step as OnlineStep

log = logging.getLogger("stackshift")
PROGRESS_EVERY = 5.0  # seconds between two progress lines of a backfill


def _part(ctx: StepContext, prep: Preparation, part: str, phase: Phase, work: Callable[[], str]) -> str:
    """One part of a preparation, journalled before and after (what `left_behind` reads)."""
    key = part_id(prep, part)
    ctx.journal.begin(key, phase, "OnlinePart")
    try:
        detail = work()
    except BaseException as exc:
        ctx.journal.end(key, False, f"{type(exc).__name__}: {exc}")
        raise
    ctx.journal.end(key, True, detail)
    return detail


def _steps(conn: Any, steps: tuple[OnlineStep, ...], settings: OnlineSettings) -> str:
    for step in steps:
        runner.run_step(conn, step, settings)
    return "; ".join(step.title for step in steps) or "nothing to do"


def _logger(prep: Preparation, report: Callable[[str, int, float], None] | None) -> Callable[[int, float], None]:
    """Each batch: reported to `report` (the context's `on_backfill`, if any), and logged every `PROGRESS_EVERY` s."""
    last = [time.monotonic()]

    def progress(copied: int, estimate: float) -> None:
        if report is not None:
            report(f"{prep.table}.{prep.column}", copied, estimate)
        if time.monotonic() - last[0] >= PROGRESS_EVERY:
            last[0] = time.monotonic()
            log.info("prepare-online %s.%s: %s of about %s rows backfilled", prep.table, prep.column,
                     f"{copied:,}", f"{estimate:,.0f}")
    return progress


@dataclass(frozen=True)
class PrepareOnline(Step):
    """Every preparation of the plan, one after the other, while the old version serves: what makes the app's own
    statements catalog-only changes in the downtime."""

    preparations: tuple[Preparation, ...] = ()
    settings: OnlineSettings = OnlineSettings()
    error: ClassVar = OnlinePreparationFailed
    task: ClassVar = "prepare-online"

    def apply(self, ctx: StepContext) -> str:
        done = []
        with ctx.io.db.connect(ctx.facts.settings.database.name, autocommit=True) as conn:
            for prep in self.preparations:
                done.append(f"{prep.table}.{prep.column}: {self._prepare(ctx, conn, prep)}")
        return "; ".join(done)

    def _prepare(self, ctx: StepContext, conn: Any, prep: Preparation) -> str:
        s, phase = self.settings, self.phase
        t0 = time.monotonic()
        _part(ctx, prep, "setup", phase, lambda: _steps(conn, prep.setup, s))
        fill = prep.backfill
        if fill is not None:
            _part(ctx, prep, "backfill", phase,
                  lambda: f"{runner.backfill(conn, fill, s, _logger(prep, ctx.on_backfill)):,} rows copied")
        if prep.build:
            _part(ctx, prep, "build", phase, lambda: _steps(conn, prep.build, s))
        swap = prep.swap
        if swap is not None:
            _part(ctx, prep, "swap", phase, lambda: f"swapped (attempt {runner.swap(conn, swap, s)})")
        if prep.after_swap:
            _part(ctx, prep, "after-swap", phase, lambda: _steps(conn, prep.after_swap, s))
        return f"prepared in {time.monotonic() - t0:.1f} s" + (", swapped" if swap is not None else "")

    def render(self) -> str:
        return "while the old version serves:<br>" + "<br>".join(
            f"- {p.table}.{p.column}: {p.summary}" for p in self.preparations)


@dataclass(frozen=True)
class SettleOnline(Cleanup):
    """The online preparation's clean-up. After the migration ran (journalled done, in the finish): each
    preparation's `after_migration` (the NOT NULL helper check dropped). Otherwise (a stop before the cutover, or a
    rollback to the rollback point taken at the stop): each preparation undone, or finished once swapped."""

    preparations: tuple[Preparation, ...] = ()
    settings: OnlineSettings = OnlineSettings()

    def apply(self, ctx: StepContext) -> str:
        migrated = self.phase == Phase.FINISH and ctx.journal.kind_done(Migrate, "cutover")
        states = {r.id: r.state for r in ctx.journal.steps}
        todo = [(p, "after-migration" if migrated else left_behind(p, states)) for p in self.preparations]
        todo = [(p, what) for p, what in todo if what != NOTHING and self._steps(p, what)]
        if not todo:
            return "no online preparation to settle"
        with ctx.io.db.connect(ctx.facts.settings.database.name, autocommit=True) as conn:
            for prep, what in todo:
                for step in self._steps(prep, what):
                    # the swap's short lock_timeout, retried: the serving version's queries never queue long
                    # behind a drop
                    runner.swap(conn, step, self.settings)
        return "; ".join(f"{p.table}.{p.column}: {_DONE[what]}" for p, what in todo)

    @staticmethod
    def _steps(prep: Preparation, what: str) -> tuple[OnlineStep, ...]:
        return {UNDO: prep.undo, FINISH_SWAP: prep.after_swap, "after-migration": prep.after_migration}[what]

    def render(self) -> str:
        return ("after the migration, drop the helper objects it no longer needs; if the upgrade stops before it, "
                "undo each preparation not yet swapped (" + ", ".join(o for p in self.preparations
                                                                     for o in p.objects)
                + "), and keep a swapped column widened")


_DONE = {UNDO: "undone (helper objects dropped)",
         FINISH_SWAP: "swapped before the stop: the column stays widened (the old version reads and writes it as "
                      "before); foreign keys validated",
         "after-migration": "helper objects dropped after the migration"}
