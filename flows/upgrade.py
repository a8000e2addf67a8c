"""The upgrade flow: plan → env diff → migration pre-flight → backup → pull → cutover → verify, rolling back on
failure."""
from __future__ import annotations

import uuid

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from blocks.stack_environment import StackEnvironment
from core.apply import Runner
from core.errors import UnknownEnvironment, UpgradeError
from tasks.backup import run_backup
from tasks.cutover import cutover, finish, publish_report, rollback, verify_health
from tasks.images import pull_images
from tasks.migrations import analyze_migrations
from tasks.preflight import plan_upgrade, publish_env_diff


def load_environment(name: str) -> StackEnvironment:
    try:
        return StackEnvironment.load(name)
    except ValueError:
        raise UnknownEnvironment(name) from None


@flow(name="upgrade", log_prints=False)
def upgrade(environment: str, target: str, dry_run: bool = False, accept_migration_risk: bool = False) -> dict:
    """Upgrade one stack environment to a release (git tag, branch or commit of its compose directory).

    Args:
        environment: Name of the `stack-environment` block, e.g. `staging`.
        target: The release to deploy, e.g. `v2.0.0`.
        dry_run: Only compute and publish the plan, the env diff and the migration report; change nothing.
        accept_migration_risk: Go ahead although the migration report found data loss or a lock-hold over the
            environment's max_lock_seconds (set it only after reading that report).
    """
    logger = get_run_logger()
    cfg = load_environment(environment)
    run_id = (flow_run.id or uuid.uuid4().hex)[:8]
    plan = plan_upgrade(cfg, environment, target, run_id)
    publish_env_diff(plan)
    migrations = analyze_migrations(plan, cfg, accept_risk=accept_migration_risk, dry_run=dry_run)
    if dry_run:
        return {"dry_run": True, "steps": [s.id for s in plan.backup + plan.cutover], "migrations": migrations}

    runner = Runner(plan, cfg)
    run_backup(runner)
    pull_images(runner)
    try:
        cutover(runner)
        verify_health(runner)
    except UpgradeError as exc:
        reason = str(exc)
        logger.error("Upgrade failed: %s. Rolling back to %s.", reason, plan.facts.current_commit[:12])
        try:
            rollback(runner, reason)
        finally:
            publish_report(runner, f"FAILED and rolled back: {reason}")
        raise
    publish_report(runner, f"upgraded to {target}")
    finish(runner)
    return {"target": target, "backup": str(plan.facts.run_dir), "downtime": runner.downtime(),
            "migrations": migrations}
