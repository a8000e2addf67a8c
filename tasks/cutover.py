"""Cutover, verification and rollback tasks. None retries: each step is applied exactly once."""
from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from core import report
from core.apply import Runner
from core.errors import RollbackFailed, UpgradeError
from tasks._common import TASK_DEFAULTS
from tasks.preflight import artifact_key


@task(name="cutover", **TASK_DEFAULTS)
def cutover(runner: Runner) -> dict[str, float]:
    """Stops the writers, takes the rollback point, writes env, migrates once, starts the target."""
    runner.walk([s for s in runner.plan.cutover if s.kind != "verify"])
    return runner.downtime()


@task(name="verify-health", **TASK_DEFAULTS)
def verify_health(runner: Runner) -> None:
    """Compose health states, the environment's HTTP checks, and the database at the target's head."""
    runner.walk([s for s in runner.plan.cutover if s.kind == "verify"])


@task(name="rollback", **TASK_DEFAULTS)
def rollback(runner: Runner, reason: str) -> None:
    """Brings the previous version back: compose files, .env, images by digest, database at the rollback point."""
    try:
        runner.walk(runner.plan.rollback)
        runner.drop_rollback_points()
    except UpgradeError as exc:
        raise RollbackFailed(
            f"Rollback failed ({exc}) after the upgrade failed ({reason}). The backup in "
            f"{runner.plan.facts.run_dir} has pg_dump files and the previous compose/.env; rollback points: "
            f"{runner.rollback_points or 'none'}."
        ) from None


@task(name="publish-report", **TASK_DEFAULTS)
def publish_report(runner: Runner, outcome: str) -> None:
    env = runner.plan.facts.environment
    create_markdown_artifact(key=artifact_key(env, "timeline"),
                             markdown=report.timeline_markdown(runner.timeline, runner.downtime(), outcome),
                             description=f"Timeline and downtime: {outcome}")
    if runner.verifications:
        create_markdown_artifact(key=artifact_key(env, "verification"),
                                 markdown=report.verification_markdown(runner.verifications),
                                 description="Verification results")


@task(name="finish", **TASK_DEFAULTS)
def finish(runner: Runner) -> None:
    """After success: drop the rollback points (the pg_dump stays) and prune old backups."""
    from core import backup as bk

    runner.drop_rollback_points()
    bk.prune(runner.plan.facts.run_dir.parent, runner.cfg.backup_retention)
