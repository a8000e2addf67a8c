"""The upgrade flow: lock → recover an interrupted run → plan → migration pre-flight → backup → env-sync → pull →
cutover (stop, rollback point, checkout, install env, compose-up db, migrate, compose-up) → verify-health → finish,
rolling back on any failure once the writers stop."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from prefect import flow
from prefect.runtime import flow_run
from pydantic import ValidationError

from blocks.stack_environment import StackEnvironment
from core import hosts, promotion
from core.errors import EnvironmentBlockUnreadable, NotADeployedEnvironment, NotARelease, UnknownEnvironment
from core.io import commands as c
from core.io.executor import run
from core.cutover import faults, inputs
from core.cutover.facts import Facts
from core.settings import Settings
from core.cutover.journal import downtime
from core.cutover.plan import Plan
from flows import naming, runbook
from tasks.backup import backup
from tasks.dashboard import after_run, record_version
from tasks.images import pull
from tasks.locking import environment_lock
from tasks.migrations import analyze_migrations
from tasks.preflight import env_sync, plan_upgrade, review_env, with_online_preparation
from tasks.promotion import publish_approval_facts, publish_digests


DEPLOYMENT_PREFIX = "upgrade-"  # a person's deployment of an environment: `upgrade-<environment>`


def load_environment(name: str) -> Settings:
    """The environment's settings, read from its block once (a run passes them down; nothing reads the block again)."""
    from prefect.exceptions import ObjectNotFound

    try:
        # Prefect's sync-compatible `load` is typed "block or coroutine"; called from sync code, the block.
        return cast(StackEnvironment, StackEnvironment.load(name)).settings()
    except ValueError as exc:  # Prefect's "not found" (an ObjectNotFound underneath) and pydantic's invalid data
        if isinstance(exc.__cause__, ObjectNotFound):
            raise UnknownEnvironment(name) from None
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]) \
            if isinstance(exc, ValidationError) else str(exc)
        raise EnvironmentBlockUnreadable(name, detail) from None


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


def deployed_environment() -> str:
    """The environment of the deployment this run belongs to: `upgrade-<environment>` names it (the form does not
    ask for it, so a person cannot point prod's form at another stack)."""
    from prefect.runtime import deployment

    name = deployment.name or ""
    if not name.startswith(DEPLOYMENT_PREFIX):
        raise NotADeployedEnvironment(name or "(none)")
    return name.removeprefix(DEPLOYMENT_PREFIX)


def _run_name() -> str:
    """The run's name in the UI, from its parameters (`flow_run_name`): `prod → v2.0.0`, `prod → v2.0.0 (plan)`."""
    p = flow_run.parameters
    try:
        environment = p.get("environment") or deployed_environment()
    except NotADeployedEnvironment:
        environment = "?"  # the run itself refuses, saying why
    return naming.upgrade_name(environment, str(p.get("target", "?")), bool(p.get("dry_run")))


@flow(name="upgrade", flow_run_name=_run_name, log_prints=False, on_completion=[after_run], on_failure=[after_run])
def upgrade(environment: str, target: str, dry_run: bool = False, accept_migration_risk: bool = False,
            accept_env_conflicts: bool = False, pinned_images: dict[str, str] | None = None,
            approved_fingerprint: str | None = None, force: bool = False) -> dict:
    """Upgrade one stack environment to a release (git tag, branch or commit of its compose directory). The CLI and
    promotions run this one; people use the `upgrade-<environment>` deployment's form (`upgrade_release`).

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
    return run_upgrade(Request(environment, target, dry_run, accept_migration_risk, accept_env_conflicts,
                               pinned_images, approved_fingerprint, force))


@flow(name="upgrade", flow_run_name=_run_name, log_prints=False, on_completion=[after_run], on_failure=[after_run])
def upgrade_release(target: str, dry_run: bool = False, accept_migration_risk: bool = False,
                    accept_env_conflicts: bool = False, force: bool = False) -> dict:
    """Upgrade this deployment's environment (the one in its name, `upgrade-<environment>`) to a release.

    Args:
        target: The release tag to deploy, e.g. `v2.0.0` (a tag of the stack's compose checkout; a wrong one is
            refused with the list of release tags).
        dry_run: Only compute and publish the plan, the env diff and the migration report; change nothing. On by
            default for prod: untick it to upgrade.
        accept_migration_risk: Go ahead although the migration report found data loss or a lock-hold over the
            environment's max_lock_seconds (set it only after reading that report).
        accept_env_conflicts: Go ahead although the merged .env leaves a service the target needs outside the
            active compose profiles (set it only after reading the env diff).
        force: Redeploy although the target's commit, images and head revision run now (else: "already at").
    """
    environment = deployed_environment()
    naming.label_run(environment, dry_run=dry_run)
    cfg = load_environment(environment)
    check_release_tag(cfg, target)
    return run_upgrade(Request(environment, target, dry_run, accept_migration_risk, accept_env_conflicts,
                               force=force), cfg)


def check_release_tag(cfg: Settings, target: str) -> None:
    """Refuses a target that is no tag of the stack's compose checkout, naming the release tags it has."""
    tags = run(c.git_tags(cfg.stack.compose_dir)).stdout.split()
    if target not in tags:
        raise NotARelease(target, promotion.releases_newest_first(tags), str(cfg.stack.compose_dir))


@dataclass(frozen=True)
class Request:
    """What an upgrade run was asked to do (its parameters)."""

    environment: str
    target: str
    dry_run: bool = False
    accept_migration_risk: bool = False
    accept_env_conflicts: bool = False
    pinned_images: dict[str, str] | None = None
    approved_fingerprint: str | None = None
    force: bool = False


def run_upgrade(r: Request, cfg: Settings | None = None) -> dict:
    """The upgrade both flows run: lock, recover, plan, gate, back up, cut over (rolling back on failure), finish."""
    faults.install_from_env()  # the fault-injection tests only (a served or worker's run is a process of its own)
    if cfg is None:
        naming.label_run(r.environment, dry_run=r.dry_run)
        cfg = load_environment(r.environment)
    hosts.check_host(cfg.stack.host, r.environment)
    inputs.check_backup_dir(Path(cfg.backup.dir))  # the lock and the run's folder go there: checked before either
    with environment_lock(cfg, r.environment, run_id := _run_id(), flow_run.id):
        if r.dry_run:
            runbook.refuse_if_interrupted(cfg)
            recovered = []
        else:
            recovered = runbook.recover_interrupted(cfg, r.environment, by=f"upgrade run {run_id}")
        plan = plan_upgrade(cfg, r.environment, r.target, run_id, r.accept_env_conflicts, pins=r.pinned_images)
        if not (r.dry_run or r.force) and not plan.facts.differences():
            naming.rename_run(naming.upgrade_name(r.environment, r.target, outcome=naming.ALREADY_THERE))
            record_version(cfg, r.environment, plan.facts.target.ref, plan.facts.target.commit,
                           plan.facts.target.heads)
            return already_at(plan.facts, recovered)
        migrations = analyze_migrations(plan, cfg, accept_risk=r.accept_migration_risk, dry_run=r.dry_run)
        plan = with_online_preparation(plan, migrations)
        if r.approved_fingerprint:  # after the online verdicts, which it covers; still before any change
            promotion.check_approved(r.environment, plan.facts, r.approved_fingerprint)
        if r.dry_run:
            return _plan_only(plan, migrations)
        return _apply(plan, cfg, r, migrations, recovered)


def _apply(plan: Plan, cfg: Settings, r: Request, migrations: dict, recovered: list) -> dict:
    """The changing half: backup, env-sync, pull, cutover, finish; the report and what runs now published."""
    f = plan.facts
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
            announce_rollback(r.environment, ctx.journal.outcome)
            naming.rename_run(naming.upgrade_name(r.environment, r.target, outcome=naming.ROLLED_BACK))
            record_version(cfg, r.environment, None, f.current.commit, f.database.revision)
        raise
    runbook.finish(plan, ctx, cfg.backup.retention)
    runbook.publish_report(ctx, f"upgraded to {r.target}")
    publish_digests(cfg, r.environment, r.target, f.target.commit)
    record_version(cfg, r.environment, f.target.ref, f.target.commit, f.target.heads)
    return {"target": r.target, "backup": str(f.run.dir), "downtime": downtime(ctx.journal),
            "rollback_point": f.rollback.forecast, "migrations": migrations, "recovered": recovered}
