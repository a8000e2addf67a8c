"""The base of every step: `Step` and `CommandStep`, the context steps act on, `Together`, and `execute`, the one
walker: it journals a step before and after, times it, and turns any failure into the step's own error class
(`StepFailed` subclasses, each saying what to do next).

A step is frozen data (built by `core.cutover.plan.build_plan`, pure); `apply(ctx)` is its only side effect and goes
through the context's executor, database and HTTP probe, which tests replace.
"""
from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from core import files
from core.errors import (CleanupFailed, CommandFailed, CommandTimedOut, RestoreFailed, StepFailed, UpgradeError,
                         error_line)
from core.io import commands as c
from core.io.http import Verification
from core.parallel import all_at_once, first_failure

if TYPE_CHECKING:
    from core.cutover.journal import Journal
    from core.cutover.facts import Facts
    from core.stackio import StackIO

log = logging.getLogger("stackshift")


class Phase(StrEnum):
    """The lists of a plan, in the order an upgrade walks them. A step's `phase` is where it runs (the `prepare`
    list's checkpoint runs in `backup`). The values are what journals and plan.json store."""

    BACKUP = "backup"
    PREPARE = "prepare"
    CUTOVER = "cutover"
    VERIFY = "verify"
    FINISH = "finish"
    ROLLBACK = "rollback"


StepHook = Callable[["Step", str], None]
HOOKS: list[StepHook] = []
"""Called with (step, "before") right before a step's change and (step, "after") right after it, inside its journal
record: a hook that raises fails the step. Empty in production; the fault-injection tests install one
(`core.cutover.faults`)."""


def add_hook(hook: StepHook) -> None:
    """Installs `hook` around every step of this process (once)."""
    if hook not in HOOKS:
        HOOKS.append(hook)


def remove_hook(hook: StepHook) -> None:
    if hook in HOOKS:
        HOOKS.remove(hook)


@dataclass
class StepContext:
    """What a step acts on: the facts of the run, the environment's settings, the journal and the I/O."""

    facts: Facts
    io: StackIO
    journal: Journal
    verifications: dict[str, Verification] = field(default_factory=dict)
    # where a backfill reports each batch (what is filled, rows copied, rows estimated): the flow's progress
    # artifact; None: the log only
    on_backfill: Callable[[str, int, float], None] | None = None

    @property
    def keep_failed_database(self) -> bool:
        """The run's setting (one source: the facts' settings, which are what the run used)."""
        return self.facts.settings.rollback_point.keep_failed_database


@dataclass(frozen=True)
class Outcome:
    step: str
    phase: str
    title: str
    seconds: float
    detail: str



@dataclass(frozen=True)
class Step:
    """One step of a plan. Subclasses set `error` (raised on failure) and `task` (its task run's name)."""

    id: str
    phase: Phase  # backup | cutover | verify | rollback | finish (a plain string is taken as its Phase)
    title: str

    error: ClassVar[type[StepFailed]] = StepFailed
    task: ClassVar[str] = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "phase", Phase(self.phase))

    @property
    def task_name(self) -> str:
        name = self.task or self.id
        return f"rollback-{self.id}" if self.phase == Phase.ROLLBACK else name

    def apply(self, ctx: StepContext) -> str:
        raise NotImplementedError

    def render(self) -> str:
        """How the step reads in the plan artifact (markdown)."""
        return f"_{type(self).__name__}_"

    @property
    def error_class(self) -> type[StepFailed]:
        """A step's own error, except while putting things back (any rollback step's failure means the rollback
        failed) and in the clean-up after success."""
        return {Phase.ROLLBACK: RestoreFailed, Phase.FINISH: CleanupFailed}.get(self.phase, self.error)

    def failure(self, exc: BaseException) -> StepFailed:
        """The error this step raises for `exc`: its own class, with the detail a person needs."""
        if isinstance(exc, StepFailed) and isinstance(exc, self.error_class):
            return exc
        if isinstance(exc, StepFailed):
            return self.error_class(self.id, exc.detail)
        if isinstance(exc, CommandTimedOut):
            detail = str(exc)
        elif isinstance(exc, CommandFailed):
            detail = error_line(exc.stderr) if exc.stderr.strip() else str(exc)
        elif isinstance(exc, UpgradeError):
            detail = str(exc)
        else:
            detail = f"unexpected {type(exc).__name__}: {exc}"
        return self.error_class(self.id, detail)


@dataclass(frozen=True)
class CommandStep(Step):
    """A step that is one command (argv as data); `env` holds no secret (the password is added at the last call)."""

    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    needs_db_password: bool = False
    stdout_file: str | None = None
    ok_codes: tuple[int, ...] = (0,)
    timeout: float | None = None

    def apply(self, ctx: StepContext) -> str:
        out = ctx.facts.run.dir / self.stdout_file if self.stdout_file else None
        done = ctx.io.run(c.Command(list(self.argv), env=dict(self.env), stdout_path=out, ok_codes=self.ok_codes,
                                    timeout=self.timeout), db_password=self.needs_db_password)
        return f"exit {done.returncode}"

    def render(self) -> str:
        keys = sorted(k for k, _ in self.env) + (["PGPASSWORD"] if self.needs_db_password else [])
        env = f" (env: {', '.join(keys)})" if keys else ""
        return f"`{' '.join(self.argv)}`{env}"


@dataclass(frozen=True)
class CreateAhead:
    """`compose create` of services the next start step needs, run alongside a step that mostly waits (a stop, the
    migration): creating a container starts nothing, and takes that work out of the start. It records the
    containers it made (service → id) in the run folder; the start step starts exactly those through the engine
    API. If it fails, nothing is recorded, and the start runs `compose up` as usual."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    project_name: str
    services: tuple[str, ...]
    record: str  # file name in the run folder

    def alongside(self, ctx: StepContext, main: Callable[[], str]) -> str:
        path = ctx.facts.run.dir / self.record
        path.unlink(missing_ok=True)  # only this attempt's containers may be started as created

        def create() -> None:
            ctx.io.run(c.Command(list(self.argv), env=dict(self.env)))
            ids = ctx.io.service_containers(self.project_name, list(self.services))
            missing = sorted(set(self.services) - set(ids))
            if missing:
                raise RuntimeError(f"no container for {', '.join(missing)}")
            files.write_atomic(path, json.dumps(ids), keep_mode=True)

        (out, failed), (_, not_created) = all_at_once([main, create], ["main", "compose-create"])
        if failed is not None:
            raise failed
        if not_created is not None:
            log.warning("Creating the containers of %s ahead failed (%s); their start runs compose up.",
                        ", ".join(self.services), not_created)
            return f"{out}; {', '.join(self.services)} not created ahead"
        return f"{out}; {', '.join(self.services)} created meanwhile"

    def render(self) -> str:
        return f"; meanwhile `{' '.join(self.argv)}`"


def start_created_ahead(ctx: StepContext, project: str, record: str, meanwhile: Callable[[], str] | None,
                        serving_first: bool = False) -> str | None:
    """Starts the containers a `CreateAhead` recorded, running `meanwhile` (the wait) once the serving ones are
    started; None (nothing started) when there is no record or they are not startable as created."""
    path = ctx.facts.run.dir / record
    if not record or not path.exists():
        return None
    return ctx.io.start_created(project, json.loads(path.read_text()), meanwhile, serving_first)



@dataclass(frozen=True)
class Together(Step):
    """Steps with no order between them, applied at the same time (one thread each), each journalled, timed and
    failing as itself (`execute`): the check-out beside the writers' stop, the backup's light records beside the
    dump, the dump's check beside the volume archive. Once all have ended, the failure of the first failing step in
    the plan's order is raised."""

    steps: tuple[Step, ...] = ()

    def apply(self, ctx: StepContext) -> str:
        outcomes = all_at_once([functools.partial(execute, step, ctx) for step in self.steps],
                               [step.id for step in self.steps])
        first_failure(outcomes)  # the first in the plan's order, whichever thread ended first
        timed = zip(self.steps, outcomes, strict=True)
        return "; ".join(f"{step.id} {done.seconds:.2f} s" for step, (done, _) in timed)

    @property
    def error_class(self) -> type[StepFailed]:
        return StepFailed  # each part fails with its own class

    def render(self) -> str:
        return "at the same time:<br>" + "<br>".join(f"- {step.id}: {step.render()}" for step in self.steps)


def flat(steps: list[Step]) -> list[Step]:
    """The steps with those of every `Together` in their place."""
    return [sub for step in steps for sub in (flat(list(step.steps)) if isinstance(step, Together) else [step])]


def execute(step: Step, ctx: StepContext, on_done: Callable[[Outcome], None] | None = None) -> Outcome:
    """Applies one step: journal first, then the change, then the journal again. A failure of any kind becomes the
    step's own error; an interruption (SIGTERM, cancellation) is journalled and passes through unchanged."""
    ctx.journal.begin(step.id, step.phase, type(step).__name__)
    t0 = time.monotonic()
    try:
        for hook in HOOKS:
            hook(step, "before")
        detail = step.apply(ctx) or ""
        for hook in HOOKS:
            hook(step, "after")
    except Exception as exc:
        err = step.failure(exc)
        ctx.journal.end(step.id, False, str(err))
        log.error("%s failed after %.2f s: %s", step.id, time.monotonic() - t0, err)
        raise err from (None if err is exc else exc)
    except BaseException as exc:
        ctx.journal.end(step.id, False, f"interrupted ({type(exc).__name__})")
        raise
    ctx.journal.end(step.id, True, detail)
    outcome = Outcome(step.id, step.phase, step.title, time.monotonic() - t0, detail)
    log.info("%s: %s (%.2f s) %s", step.id, step.title, outcome.seconds, detail)
    if on_done:
        on_done(outcome)
    return outcome
