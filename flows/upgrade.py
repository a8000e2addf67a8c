"""The upgrade flow: lock → recover an interrupted run → plan → migration pre-flight → backup → env-sync → pull →
cutover (stop, rollback point, checkout, install env, compose-up db, migrate, compose-up) → verify-health → finish,
rolling back on any failure once the writers stop."""
from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import cast

from prefect import flow
from prefect.runtime import flow_run

from blocks.stack_environment import StackEnvironment
from core import hosts, promotion
from core.errors import UnknownEnvironment
from core.cutover import faults, inputs
from core.cutover.facts import Facts
from core.settings import Settings
from core.cutover.journal import downtime
from core.cutover.plan import Plan
from flows import runbook
from tasks.backup import backup
from tasks.images import pull
from tasks.locking import environment_lock
from tasks.migrations import analyze_migrations
from tasks.preflight import env_sync, plan_upgrade, review_env
from tasks.promotion import publish_approval_facts, publish_digests


def load_environment(name: str) -> Settings:
    """The environment's settings, read from its block once (a run passes them down; nothing reads the block again)."""
    try:
        # Prefect's sync-compatible `load` is typed "block or coroutine"; called from sync code, the block.
        return cast(StackEnvironment, StackEnvironment.load(name)).settings()
    except ValueError:
        raise UnknownEnvironment(name) from None


def announce_rollback(environment: str, outcome: str) -> None:
    """Emits `stackshift.upgrade.rolled-back` (the "rolled back" notification's trigger). Best effort: events are not
    durable, and the run's Failed state notifies anyway."""
    try:
        from prefect.events import emit_event

        emit_event("stackshift.upgrade.rolled-back",
                   resource={"prefect.resource.id": f"stackshift.environment.{environment}",
                             "prefect.resource.name": environment},
                   related=[{"prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                             "prefect.resource.role": "flow-run"}] if flow_run.id else [],
                   payload={"outcome": outcome[:2000]})
    except Exception:
        pass


def already_at(facts: Facts, recovered: list) -> dict:
    """The result of a run with nothing to do (`Facts.differences()` is empty): what runs, and that nothing changed."""
    logging.getLogger("stackshift").info("%s is already at %s: nothing to do, nothing stopped, no backup",
                                         facts.run.environment, facts.target.ref)
    return {"already_at": facts.target.ref, "commit": facts.target.commit, "images": facts.target.images,
            "revision": facts.database.revision, "changed": False, "recovered": recovered}


def _plan_only(plan: Plan, migrations: dict) -> dict:
    """A dry run's end: the env diff and the approval facts published, the plan's steps returned."""
    review_env(plan)
    fp = publish_approval_facts(plan, migrations)
    return {"dry_run": True, "steps": [s.id for s in plan.backup + plan.cutover + plan.verify],
            "rollback_point": plan.facts.rollback.forecast, "migrations": migrations, "fingerprint": fp}


def _run_id() -> str:
    return (flow_run.id or uuid.uuid4().hex)[:8]


@flow(name="upgrade", log_prints=False)
def upgrade(environment: str, target: str, dry_run: bool = False, accept_migration_risk: bool = False,
            accept_env_conflicts: bool = False, pinned_images: dict[str, str] | None = None,
            approved_fingerprint: str | None = None, force: bool = False) -> dict:
    """Upgrade one stack environment to a release (git tag, branch or commit of its compose directory).

    Args:
        environment: Name of the `stack-environment` block, e.g. `staging`.
        target: The release to deploy, e.g. `v2.0.0`.
        dry_run: Only compute and publish the plan, the env diff and the migration report; change nothing.
        accept_migration_risk: Go ahead although the migration report found data loss or a lock-hold over the
            environment's max_lock_seconds (set it only after reading that report).
        accept_env_conflicts: Go ahead although the merged .env leaves a service the target needs outside the
            active compose profiles (set it only after reading the env diff).
        pinned_images: Leave empty. A promotion fills it: service → `repo@sha256:…`, the digests staging verified;
            every image is pulled by that digest and checked on the running containers.
        approved_fingerprint: Leave empty. A promotion fills it with the fingerprint the approver approved; the run
            stops before any change if the plan computed now gives another one.
        force: Redeploy although the target's commit, images and head revision run now (else: "already at").
    """
    faults.install_from_env()  # the fault-injection tests only (a served or worker's run is a process of its own)
    cfg = load_environment(environment)
    hosts.check_host(cfg.stack.host, environment)
    inputs.check_backup_dir(Path(cfg.backup.dir))  # the lock and the run's folder go there: checked before either
    with environment_lock(cfg, environment, run_id := _run_id(), flow_run.id):
        if dry_run:
            runbook.refuse_if_interrupted(cfg)
            recovered = []
        else:
            recovered = runbook.recover_interrupted(cfg, environment, by=f"upgrade run {run_id}")
        plan = plan_upgrade(cfg, environment, target, run_id, accept_env_conflicts, pins=pinned_images)
        if not (dry_run or force) and not plan.facts.differences():
            return already_at(plan.facts, recovered)
        if approved_fingerprint:
            promotion.check_approved(environment, plan.facts, approved_fingerprint)
        migrations = analyze_migrations(plan, cfg, accept_risk=accept_migration_risk, dry_run=dry_run)
        if dry_run:
            return _plan_only(plan, migrations)

        ctx = runbook.open_run(plan, flow_run.id)
        try:
            done = backup(ctx, plan.backup)
            done = env_sync(ctx, done)
            done = pull(ctx, done)
            runbook.walk(plan.prepare, ctx)
        except BaseException as exc:
            runbook.abandon(plan, ctx, exc)
            raise
        try:
            runbook.cut_over(plan, ctx, done)
        except BaseException:
            runbook.publish_report(ctx, f"FAILED and rolled back: {ctx.journal.outcome}")
            if ctx.journal.status == "rolled-back":
                announce_rollback(environment, ctx.journal.outcome)
            raise
        runbook.finish(plan, ctx, cfg.backup.retention)
        runbook.publish_report(ctx, f"upgraded to {target}")
        publish_digests(cfg, environment, target, plan.facts.target.commit)
        return {"target": target, "backup": str(plan.facts.run.dir), "downtime": downtime(ctx.journal),
                "rollback_point": plan.facts.rollback.forecast,
                "migrations": migrations, "recovered": recovered}
