"""The runbook the flows follow, in named steps: open the run, cut over (rolling back on any failure), finish,
recover an interrupted run. Each step of the plan runs as its own task (tasks/steps.py); the journal on disk is
what survives the process."""
from __future__ import annotations

import logging
import shutil
import signal
import threading
from asyncio import CancelledError
from contextlib import contextmanager
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from core.settings import Settings
from core.backup import drill
from core.backup import bundle as bk
from core.cutover import recovery
from core import report
from core.cutover import steps as st
from core.errors import (CleanupFailed, InterruptedRunPending, RollbackFailed, StepFailed, UpgradeError,
                         UpgradeInterrupted)
from core.cutover.journal import JOURNAL, PLAN, Journal, partial_files
from core.cutover.facts import Facts
from core.cutover.plan import Plan, build_plan
from core.env import envsync
from core.stackio import StackIO
from tasks._common import TASK_DEFAULTS, api_reachable, artifact_key, set_state_if_open
from tasks.steps import BackfillProgress, Progress, step_task

log = logging.getLogger("stackshift")
JOURNAL_QUIET_SECONDS = 30  # a journal written more recently may still be in the hands of its run (if it lives)


def open_run(plan: Plan, flow_run_id: str | None) -> st.StepContext:
    """Creates the run folder (0700) with the env merge pre-flight staged, the plan's facts and a fresh journal, before
    the first change."""
    f = plan.facts
    envsync.write_staged(f.env_sync)  # first: if it is refused, no run folder is left behind
    f.run.dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    f.save(f.run.dir / PLAN)
    journal = Journal(
        path=f.run.dir / JOURNAL, run=f.run.id, environment=f.run.environment, project=f.settings.stack.project_name,
        target={"ref": f.target.ref, "commit": f.target.commit, "heads": f.target.heads, "images": f.target.images},
        previous={"commit": f.current.commit, "images": f.current.images, "revision": f.database.revision},
        rollback_points=plan.rollback_point.names(),
        flow_run_id=flow_run_id,
    )
    journal.save()
    return context_for(f, journal)


def context_for(facts: Facts, journal: Journal) -> st.StepContext:
    """The steps' context: the I/O reads the facts' settings, so a step and the I/O see the same ones; a backfill
    (the online preparation's) reports to its own progress artifact, made at its first batch."""
    return st.StepContext(facts, StackIO(facts.settings, facts.settings.stack.project_name), journal,
                          on_backfill=BackfillProgress(facts.run.environment))


@contextmanager
def signals_deferred():
    """While a rollback runs, SIGTERM and SIGINT are noted, not obeyed: stopping it halfway would leave the stack
    neither old nor new. (A SIGKILL still ends it; the journal then lets `recover` finish the job.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum, frame):
        log.warning("Signal %s received during the rollback: the rollback finishes first.", signum)

    old = {s: signal.signal(s, note) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _reason(exc: BaseException, journal: Journal) -> str:
    if isinstance(exc, UpgradeError):
        return str(exc)
    last = journal.last
    where = f" during {last.id!r}" if last else ""
    if isinstance(exc, Exception) and not isinstance(exc, CancelledError):  # a real failure, not a stop from outside
        return f"failed{where} with {type(exc).__name__}: {exc}"
    return f"interrupted by {type(exc).__name__}{where} (a SIGTERM, a cancel from the UI or Prefect's cancellation)"


def cut_over(plan: Plan, ctx: st.StepContext, after: st.Outcome) -> st.Outcome:
    """Every cutover and verify step, each its own task run. On any failure, of any kind (a step's error, a bug,
    SIGTERM, Prefect's cancellation), the stack is rolled back before the error goes on."""
    progress = Progress(ctx.facts.run.environment, len(plan.cutover) + len(plan.verify))
    step: st.Step | None = None
    try:
        for step in plan.cutover + plan.verify:
            progress.at(step)
            after = step_task(step)(ctx, step, after)
            progress.advance()
        return after
    except BaseException as exc:
        progress.failed(step)
        reason = _reason(exc, ctx.journal)
        log.error("Upgrade failed: %s. Rolling back to %s.", reason, ctx.facts.current.commit[:12])
        with signals_deferred():
            roll_back(plan, ctx, reason)
        if isinstance(exc, UpgradeError):
            raise
        raise UpgradeInterrupted(f"{reason}; rolled back to {ctx.facts.current.commit[:12]}, the previous version "
                                 f"is serving and verified") from exc


def walk(steps: list[st.Step], ctx: st.StepContext) -> None:
    """Runs steps as task runs; if Prefect itself fails (its server stopped, say), the same steps run directly:
    the journal, not Prefect, is what the stack's safety rests on."""
    direct, after = False, None
    for step in steps:
        if not direct:
            try:
                after = step_task(step)(ctx, step, after)
                continue
            except StepFailed:
                raise
            except Exception as exc:
                log.warning("Prefect could not run %s as a task (%s: %s); running the remaining steps directly.",
                            step.id, type(exc).__name__, exc)
                direct = True
        st.execute(step, ctx)


def roll_back(plan: Plan, ctx: st.StepContext, reason: str) -> None:
    """Brings the previous version back: one-off containers gone, compose files, .env, images by digest, database at
    the rollback point, verified, then nothing left behind. Raises RollbackFailed (journal left open for `recover`)
    if it cannot. A resumed rollback whose previous version was already verified only cleans up."""
    ctx.journal.enter("rollback")
    restore = [s for s in plan.rollback if not isinstance(s, st.Cleanup)]
    if ctx.journal.kind_done(st.Verify, "rollback"):
        restore = []
    try:
        walk(restore, ctx)
    except StepFailed as exc:
        ctx.journal.close("rollback-failed", f"{reason}; rollback failed: {exc}")
        raise RollbackFailed(
            f"Rollback failed ({exc}) after the upgrade failed ({reason}). Run `./stackshift recover --environment "
            f"{ctx.facts.run.environment}` to retry it; the backup in {ctx.facts.run.dir} has pg_dump files and the "
            f"previous compose/.env, and the rollback points {', '.join(ctx.journal.rollback_points.values())} are "
            f"kept until a rollback completes.") from None
    left = clean_up([s for s in plan.rollback if isinstance(s, st.Cleanup)], ctx)
    ctx.journal.close("rolled-back", f"{reason}; rolled back to {ctx.facts.current.commit[:12]}{left}")


def clean_up(steps: list[st.Step], ctx: st.StepContext) -> str:
    """Runs clean-up steps; their failure leaves the stack whole, so it is reported, not raised."""
    try:
        walk(steps, ctx)
        return ""
    except CleanupFailed as exc:
        log.warning("Clean-up incomplete: %s", exc)
        return f"; clean-up incomplete: {exc}"


def finish(plan: Plan, ctx: st.StepContext, retention: int) -> None:
    """After a verified upgrade: drop the rollback points (the pg_dump stays), prune old backups."""
    ctx.journal.enter("finish")
    left = clean_up(plan.finish, ctx)
    ctx.journal.close("completed", f"upgraded to {ctx.facts.target.ref}{left}")
    bk.prune(ctx.facts.run.dir.parent, retention)


def abandon(plan: Plan, ctx: st.StepContext, exc: BaseException) -> None:
    """A failure before the cutover: nothing of the stack changed. What the backup made for the rollback point (a
    base backup and its replication slot, which would keep WAL forever) is removed, the journal says so and the run
    is closed. A backup cut short is removed first (on a full disk, that makes the room to write the journal)."""
    journal = ctx.journal
    whole = all(journal.ever_done(s.id, "backup") for s in plan.backup)
    removed = remove_partial(partial_files(journal.path.parent, whole))
    try:
        journal.enter("finish")
        with signals_deferred():
            left = clean_up(plan.finish, ctx)
        journal.close("abandoned", f"stopped before the cutover, nothing changed: {_reason(exc, journal)}{left}"
                                   + (f"; removed the backup cut short ({', '.join(removed)})" if removed else ""))
    except OSError as write_exc:  # the stack is whole; `recover` closes the journal once it can be written
        log.error("Could not close the journal %s (%s); nothing of the stack changed: `./stackshift recover` "
                  "closes it.", journal.path, write_exc)


def remove_partial(paths: list[Path]) -> list[str]:
    """Removes files and folders a run cannot use (never raises: a leftover is reported, not fatal); their names."""
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return [p.name for p in paths if not p.exists()]


def publish_report(ctx: st.StepContext, outcome: str) -> None:
    """Publishes the timeline and verification artifacts when the Prefect server answers; never raises (the journal
    in the run folder holds the same record). The downtime is over: a busy server gets 10 s to answer."""
    if not api_reachable(timeout=10):
        log.warning("The Prefect server does not answer: no report artifacts (the journal %s has the timeline).",
                    ctx.journal.path)
        return
    try:
        _publish_report(ctx, outcome)
    except Exception as exc:
        log.warning("Could not publish the report artifacts (%s: %s)", type(exc).__name__, exc)


@task(name="publish-report", task_run_name="publish-report", **TASK_DEFAULTS)
def _publish_report(ctx: st.StepContext, outcome: str) -> None:
    env = ctx.facts.run.environment
    create_markdown_artifact(key=artifact_key(env, "timeline"), markdown=report.timeline_markdown(ctx.journal, outcome),
                             description=f"Timeline and downtime: {outcome}")
    if ctx.verifications:
        create_markdown_artifact(key=artifact_key(env, "verification"),
                                 markdown=report.verification_markdown(ctx.verifications),
                                 description="Verification results")


# --- recovery -------------------------------------------------------------------------------------------------
def refuse_if_interrupted(cfg: Settings) -> None:
    """For a dry run: an interrupted run is named, not recovered (a dry run changes nothing)."""
    pending = Journal.open_runs(Path(cfg.backup.dir) / cfg.stack.project_name)
    if pending:
        raise InterruptedRunPending([j.summary() for j in pending])


def recover_interrupted(cfg: Settings, environment: str, by: str) -> list[dict]:
    """Finishes or rolls back every run of this stack whose journal is still open (its runner died), whichever is
    safe, and says which; then sweeps what a run killed before its journal existed can leave (one-off containers,
    probe schemas, scratch folders). Called under the environment's lock, by `recover` and before every upgrade."""
    results = []
    project_dir = Path(cfg.backup.dir) / cfg.stack.project_name
    if api_reachable():
        reconcile_run_states(project_dir)
    for journal in Journal.open_runs(project_dir):
        facts = Facts.load(journal.path.parent / PLAN, cfg)  # the settings the run used, the secrets of now
        plan = build_plan(facts, facts.run.id)
        ctx = context_for(facts, journal)
        removed = ctx.io.remove_stack_containers()  # a migration still running must not race the recovery
        try:
            revisions = ctx.io.revisions(facts.settings.database.name)
        except UpgradeError:
            revisions = None
        decision = recovery.decide(journal, revisions, facts.target.heads)
        found = journal.summary()
        stopped = recovery.one_offs_note(removed, revisions, facts.target.heads)
        log.warning("Recovering %s: %s → %s (%s)", found, decision.action, decision.reason,
                    stopped or "no leftover container")
        with signals_deferred():
            outcome = _recover_one(plan, ctx, decision) + (f"; {stopped}" if stopped else "")
        message = f"{found}; recovered by {by}: {outcome}"
        mark_interrupted_run(journal.flow_run_id, message)
        if api_reachable():
            create_markdown_artifact(key=artifact_key(environment, "recovery"),
                                     markdown=f"# Recovery of {environment}\n\n- run: `{journal.run}` "
                                              f"(flow run `{journal.flow_run_id}`)\n- found: {found}\n"
                                              f"- decision: **{decision.action}**: {decision.reason}\n"
                                              f"- outcome: {outcome}\n",
                                     description=f"Recovery: {decision.action}")
        publish_report(ctx, f"recovered ({decision.action}): {outcome}")
        results.append({"run": journal.run, "action": decision.action, "reason": decision.reason, "outcome": outcome})
    sweep_leftovers(cfg)
    return results


def sweep_leftovers(cfg: Settings) -> None:
    """Under the lock nothing else of this stack runs: its labelled containers, probe schemas and scratch folders
    are leftovers of a run killed before (or after) its journal."""
    io_ = StackIO(cfg, cfg.stack.project_name)
    try:
        if n := io_.remove_stack_containers():
            log.warning("Removed %s leftover one-off container(s) of %s", n, cfg.stack.project_name)
        for schema in io_.drop_probe_schemas():
            log.warning("Dropped the leftover probe schema %s", schema)
        for name in drill.drop_leftover_scratch(io_, [cfg.database.name, *cfg.database.extra_databases]):
            log.warning("Dropped the leftover restore-drill database %s", name)
        for name in io_.drop_rehearsal_databases():
            log.warning("Dropped the leftover rehearsal database %s", name)
    except UpgradeError as exc:
        log.warning("Could not sweep leftovers (%s)", exc)
    for folder in (Path(cfg.backup.dir) / cfg.stack.project_name).glob(".scratch-*"):
        shutil.rmtree(folder, ignore_errors=True)


def _recover_one(plan: Plan, ctx: st.StepContext, decision: recovery.Decision) -> str:
    j, f = ctx.journal, ctx.facts
    if decision.action == recovery.NOTHING:
        left = clean_up(plan.finish, ctx)
        j.close("abandoned", decision.reason + left)
        return "nothing had changed; leftovers removed" + left
    if decision.action == recovery.CLEAN_UP:
        left = clean_up(plan.finish, ctx)
        j.close("recovered-forward", f"the upgrade to {f.target.ref} was verified; clean-up finished{left}")
        return f"{f.target.ref} had been verified; its clean-up is done{left}"
    if decision.action == recovery.FINISH:
        try:
            walk(plan.after_migration() + plan.verify, ctx)
        except StepFailed as exc:
            decision = recovery.Decision(recovery.ROLLBACK, f"finishing failed ({exc})")
        else:
            j.enter("finish")
            left = clean_up(plan.finish, ctx)
            j.close("recovered-forward", f"finished the upgrade to {f.target.ref}{left}")
            return f"finished the upgrade: {f.target.ref} is serving and verified{left}"
    roll_back(plan, ctx, f"recovery: {decision.reason}")
    return f"rolled back: {f.current.commit[:12]} (the previous version) is serving and verified"


def reconcile_run_states(project_dir: Path, newest: int = 10) -> None:
    """A run whose journal closed while the Prefect server was down stays Running there; give it the final state
    its journal records (Completed, or Failed with the reason)."""
    import time

    from prefect.states import Completed, Failed

    for path in sorted(project_dir.glob(f"*/{JOURNAL}"))[-newest:]:
        try:
            j = Journal.load(path)
        except (OSError, ValueError, TypeError):
            continue
        if j.status == "running" or not j.flow_run_id or (
                time.time() - path.stat().st_mtime < JOURNAL_QUIET_SECONDS and not j.runner_gone()):
            continue
        ok = j.status in ("completed", "recovered-forward")
        set_state_if_open(j.flow_run_id, (Completed if ok else Failed)(message=j.outcome[:2000]))


def mark_interrupted_run(flow_run_id: str | None, message: str) -> None:
    """Gives the dead run a final state that says what happened (a killed CLI run would stay Running forever)."""
    if flow_run_id and api_reachable():
        from prefect.states import Crashed

        set_state_if_open(flow_run_id, Crashed(message=message[:2000]))
