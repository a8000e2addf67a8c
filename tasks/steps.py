"""Each step of the plan as its own task run, named for what it does (`compose-up`, `migrate`, `verify-health`,
`rollback-restore-db`, …), so the Prefect UI shows the cutover and any rollback step by step."""
from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from typing import cast
from uuid import UUID

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from core.cutover import steps as st
from tasks._common import TASK_DEFAULTS, api_reachable, artifact_key


@task(name="step", task_run_name="step", **TASK_DEFAULTS)
def _apply(ctx: st.StepContext, step: st.Step, after: st.Outcome | None = None) -> st.Outcome:
    """Applies one step of the plan (journalled before and after); raises the step's own error on failure."""
    return st.execute(step, ctx)


def step_task(step: st.Step):
    """The task that applies `step`, named after it. No retries: each step is applied once; recovery re-runs
    steps only through the journal."""
    return _apply.with_options(name=step.task_name, task_run_name=step.task_name)


class _Artifact:
    """A progress artifact (0–100 %, with a description) updated from a background thread. Best effort: never fails
    a step, and never delays one: the updates go to the server outside the step's critical path, the newest only."""

    def __init__(self, key: str, description: str):
        self.id: UUID | None = None
        self.updates: queue.SimpleQueue = queue.SimpleQueue()
        run_context = contextvars.copy_context()  # the artifact belongs to this run
        threading.Thread(target=run_context.run, args=(self._send, key, description), name="progress",
                         daemon=True).start()

    def _send(self, key: str, description: str) -> None:
        try:
            # Prefect's sync-compatible functions are typed "result or coroutine"; called from sync code, a result.
            self.id = cast(UUID, create_progress_artifact(progress=0.0, key=key, description=description))
        except Exception:
            return
        while True:
            value = self.updates.get()
            while not self.updates.empty():  # only the newest value matters
                value = self.updates.get()
            if value is None:
                return
            if self.id is not None and api_reachable():
                with contextlib.suppress(Exception):
                    update_progress_artifact(self.id, progress=value[0], description=value[1])


class Progress(_Artifact):
    """The cutover's progress artifact (`<env>-progress`): which step runs and whether the service is down."""

    def __init__(self, environment: str, total: int):
        self.environment, self.total, self.done = environment, max(total, 1), 0
        super().__init__(artifact_key(environment, "progress"), progress_text(environment, 0, self.total, None))

    def at(self, step: st.Step) -> None:
        """`step` starts now."""
        self.updates.put((round(100.0 * self.done / self.total, 1),
                          progress_text(self.environment, self.done, self.total, step)))

    def advance(self) -> None:
        self.done += 1
        if self.done >= self.total:
            self.updates.put((100.0, progress_text(self.environment, self.done, self.total, None)))

    def failed(self, step: st.Step | None) -> None:
        what = f"failed at “{step.title}”" if step else "failed"
        self.updates.put((round(100.0 * self.done / self.total, 1),
                          f"{self.environment}: the upgrade {what}; rolling back, the service is down until the "
                          f"previous version is back (see the timeline)."))


class BackfillProgress:
    """The online preparation's backfill as a progress artifact (`<env>-backfill`: rows backfilled of the estimate),
    made at its first batch (a preparation without a backfill makes none); the steps' `on_backfill`."""

    def __init__(self, environment: str):
        self.environment = environment
        self.artifact: _Artifact | None = None

    def __call__(self, what: str, copied: int, estimate: float) -> None:
        if self.artifact is None:
            self.artifact = _Artifact(artifact_key(self.environment, "backfill"),
                                      backfill_text(self.environment, what, 0, estimate)[1])
        self.artifact.updates.put(backfill_text(self.environment, what, copied, estimate))


def backfill_text(environment: str, what: str, copied: int, estimate: float) -> tuple[float, str]:
    """The backfill's progress (%, of the estimate, which a count past it raises) and what its artifact says."""
    total = max(estimate, copied, 1)
    return (round(100.0 * copied / total, 1), f"{environment}: prepare-online {what}: {copied:,} of about "
            f"{total:,.0f} rows backfilled, while the old version serves (the service is up).")


def progress_text(environment: str, done: int, total: int, step: st.Step | None) -> str:
    """What the progress artifact says: the step running and whether the service is down."""
    if step is None:
        return (f"{environment}: all {total} steps done; the service is up and verified." if done >= total else
                f"{environment}: the cutover starts; the service is still up.")
    down = step.phase == st.Phase.CUTOVER
    state = "the service is DOWN (writers stopped)" if down else "the service is up"
    return f"{environment}: step {done + 1} of {total}, {step.title}; {state}."
