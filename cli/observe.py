"""Where the command line learns a run's phases from.

- An upgrade run in this process: the step hooks (`core.cutover.steps.add_hook`, called around every step) and the
  tasks' own state hooks (Prefect's `Task.on_running` / `on_completion`), which also hand over the plan and the
  migration report the summary is made of. Nothing is read from log text.
- A run on a worker (`--via-deployment --watch`): its task runs, read from the Prefect API every `poll` seconds.

The console: Prefect's timestamped log lines and the commands stackshift logs go to the run's logs in the UI; on
the terminal they show only with `-v` (`console`). Warnings stackshift logs are printed, one line each.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager, suppress
from typing import Any

from cli.live import Phases

# A task that starts a phase of its own (every other task belongs to the phase under way).
TASK_PHASES = {"plan": "pre-flight", "analyze-migrations": "migration check", "backup": "backup",
               "pull": "pull images", "checkpoint": "before the downtime"}
# A step's phase (`core.cutover.steps.Phase`) → the phase printed.
STEP_PHASES = {"backup": "backup", "prepare": "before the downtime", "cutover": "cutover (downtime)",
               "verify": "verify", "finish": "finish", "rollback": "rollback"}
QUIET_TASKS = ("publish-", "record-", "env-sync", "step")  # reports, not phases: they stay in the phase under way


class InProcess:
    """Feeds `phases` from the hooks of a run in this process and keeps what the summary needs: the plan (the
    `plan` task's result) and the migration report (the `analyze-migrations` task's)."""

    def __init__(self, phases: Phases):
        self.phases = phases
        self.plan: Any = None
        self.migrations: dict | None = None

    def on_step(self, step, when: str) -> None:
        if when != "before":
            return
        phase = STEP_PHASES.get(str(getattr(step.phase, "value", step.phase)), str(step.phase))
        if phase == "backup" and self.phases.current == "pull images":  # the prepare list runs as backup steps
            phase = STEP_PHASES["prepare"]
        if phase == "rollback" and self.phases.current not in (None, "rollback"):
            self.phases.end("failed")
        self.phases.begin(phase)
        self.phases.step(step.id)

    def on_task_running(self, name: str) -> None:
        if name in TASK_PHASES and name != "plan":
            self.phases.begin(TASK_PHASES[name])

    def on_task_completed(self, name: str, value: Any) -> None:
        if name == "plan":
            self.plan = value
        elif name == "analyze-migrations" and isinstance(value, dict):
            self.migrations = value


_ACTIVE: list[InProcess] = []
_INSTALLED: list[bool] = []


def _each(fn_name: str, *args: Any) -> None:
    for observer in list(_ACTIVE):
        with suppress(Exception):  # what the terminal shows must never fail a step
            getattr(observer, fn_name)(*args)


def _step_hook(step, when: str) -> None:
    _each("on_step", step, when)


def _running_hook(task, task_run, state) -> None:
    _each("on_task_running", task.name)


def _completed_hook(task, task_run, state) -> None:
    try:
        value = state.result(raise_on_failure=False)
    except Exception:
        value = None
    _each("on_task_completed", task.name, value)


def _install() -> None:
    """The hooks, once per process: they call whichever observer is active (none: they do nothing)."""
    if _INSTALLED:
        return
    from core.cutover.steps import add_hook
    from tasks.backup import backup
    from tasks.images import pull
    from tasks.migrations import analyze_migrations
    from tasks.preflight import plan_upgrade

    add_hook(_step_hook)
    for task in (plan_upgrade, analyze_migrations, backup, pull):
        task.on_running(_running_hook)
        task.on_completion(_completed_hook)
    _INSTALLED.append(True)


@contextmanager
def in_process(phases: Phases):
    """`with in_process(phases) as seen:` while the block runs an upgrade in this process."""
    _install()
    observer = InProcess(phases)
    _ACTIVE.append(observer)
    try:
        yield observer
    finally:
        _ACTIVE.remove(observer)


# --- a run on a worker ------------------------------------------------------------------------------------------
def phase_of_task(name: str, current: str | None) -> str | None:
    """The phase a task run of a watched run starts (None: it stays in the phase under way). Without the plan at
    hand, step tasks are told apart by name: `rollback-*` roll back, `verify*` and `remove-retired` verify, what
    follows the verification finishes, any other step after the pull is the cutover."""
    if name in TASK_PHASES:
        return TASK_PHASES[name]
    if name.startswith(QUIET_TASKS):
        return None
    if name.startswith("rollback-"):
        return "rollback"
    if name.startswith("verify") or name == "remove-retired":
        return "verify"
    if current in ("verify", "finish"):
        return "finish"
    return "cutover (downtime)"


def follow(flow_run_id, phases: Phases, poll: float = 2.0, stop_when_paused: bool = False):
    """Follows a flow run on the Prefect server until it ends (or pauses), feeding `phases` from its task runs in
    the order they started. Returns the run's final (or paused) state."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    seen: set = set()
    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(flow_run_id))]))
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(UUID(str(flow_run_id)))
            if run.state is not None and (run.state.is_scheduled() or run.state.is_pending()):
                phases.begin("waiting for a worker")
            elif run.state is not None and run.state.is_running() and phases.current in (None, "waiting for a worker"):
                phases.begin("pre-flight")
            started = [t for t in client.read_task_runs(flow_run_filter=run_filter, limit=200) if t.start_time]
            for t in sorted(started, key=lambda t: str(t.start_time)):
                if t.id in seen:
                    continue
                seen.add(t.id)
                name = phase_of_task(t.name, phases.current)
                if name == "rollback" and phases.current not in (None, "rollback"):
                    phases.end("failed")
                if name:
                    phases.begin(name)
                phases.step(t.name)
            state = run.state
            if state is not None and (state.is_final() or (stop_when_paused and state.is_paused())):
                return state
            time.sleep(poll)


# --- the console ------------------------------------------------------------------------------------------------
class _Quiet(logging.Filter):
    """Drops Prefect's and stackshift's records from the console (the run's logs keep them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(("prefect", "stackshift"))


class _Warnings(logging.Handler):
    """stackshift's warnings and errors, one plain line each, through the phase printer."""

    def __init__(self, phases: Phases):
        super().__init__(logging.WARNING)
        self.phases = phases

    def emit(self, record: logging.LogRecord) -> None:
        with suppress(Exception):
            self.phases.note(f"  ! {record.getMessage()}")


@contextmanager
def console(phases: Phases, verbose: bool):
    """At default verbosity, the console shows the phases and stackshift's warnings only; with `-v`, everything
    Prefect and stackshift log too (the commands run, with their timestamps)."""
    if verbose:
        yield
        return
    quiet = _Quiet()
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    warnings = _Warnings(phases)
    log = logging.getLogger("stackshift")
    for h in handlers:
        h.addFilter(quiet)
    log.addHandler(warnings)
    try:
        yield
    finally:
        log.removeHandler(warnings)
        for h in handlers:
            h.removeFilter(quiet)
