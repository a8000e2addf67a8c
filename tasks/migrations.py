"""Migration pre-flight task: render the pending SQL offline in the target image, analyse it against the live
database, publish the report, and stop the upgrade before any change when it is too risky."""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from core import commands as c
from core import db as dbops
from core import migcheck, pgcatalog, report
from core.errors import MigrationRiskTooHigh
from core.stackio import StackIO
from core.plan import Plan
from core.revgraph import RevisionState
from tasks._common import TASK_DEFAULTS, artifact_key


def render_pending_sql(plan: Plan, cfg) -> str:
    """The pending migrations' SQL, printed by the target image's own migration tool with no network, on the
    environment's engine."""
    f = plan.facts
    argv = c.docker_run_offline(f.target_images[f.migrate_service], f.render_sql_command, f.project)
    return StackIO(cfg, f.project).run(c.Command(argv)).stdout


def migration_report(plan: Plan, cfg) -> migcheck.MigrationReport:
    f = plan.facts
    revisions = RevisionState(f.db_revision, f.target_heads[0], f.pending_revisions, f.noop_downgrades)
    with dbops.DbAccess.of(cfg).connect(f.db_name, autocommit=True) as conn:
        catalog = pgcatalog.LiveCatalog(conn)
        rates = pgcatalog.probe(conn) if cfg.migration_probe else None
        return migcheck.analyze(render_pending_sql(plan, cfg), catalog, rates, revisions)


@task(name="analyze-migrations", task_run_name="analyze-migrations", **TASK_DEFAULTS)
def analyze_migrations(plan: Plan, cfg, accept_risk: bool = False, dry_run: bool = False) -> dict:
    """Publishes what the pending migrations will lock, rewrite and cost; raises MigrationRiskTooHigh (nothing has
    changed yet) on data loss or a forecast lock-hold over the environment's `max_lock_seconds`, unless the
    operator accepted the risk. A dry run reports the verdict without raising."""
    f = plan.facts
    if not f.pending_revisions:
        create_markdown_artifact(key=artifact_key(f.environment, "migrations"),
                                 markdown=f"# Migrations: {f.environment} → {f.target_ref}\n\nNothing pending: the "
                                          f"database is at the target head `{f.target_heads[0]}`.\n")
        return {"pending": 0, "gate": []}
    result = migration_report(plan, cfg)
    reasons = migcheck.gate(result, cfg.max_lock_seconds)
    title = f"Migrations: {f.environment} → {f.target_ref}"
    if reasons and accept_risk:
        title += " (risk accepted by the operator)"
    create_markdown_artifact(key=artifact_key(f.environment, "migrations"),
                             markdown=report.migration_markdown(result, title, reasons),
                             description=f"Migration pre-flight {f.environment} → {f.target_ref}")
    if reasons and accept_risk:
        get_run_logger().warning("Migration risk accepted by the operator: %s", "; ".join(reasons))
    elif reasons and not dry_run:
        raise MigrationRiskTooHigh(reasons)
    return {"pending": len(f.pending_revisions), "gate": reasons, "lock_hold": result.lock_hold,
            "warnings": len(result.warnings)}
