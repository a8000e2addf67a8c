"""Migration pre-flight task: render the pending SQL offline in the target image, analyse it against the live
database, publish the report, and stop the upgrade before any change when it is too risky."""
from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from core.settings import Settings
from core.io import commands as c
from core.io import db as dbops
from core import report
from core.migrations import migcheck
from core.migrations import pgcatalog
from core.migrations import rehearsal
from core.migrations import sqlrules
from core.errors import MigrationRiskTooHigh, error_line
from core.stackio import StackIO
from core.cutover.online import OnlineFacts, check_room, choose, online_settings
from core.cutover.plan import Plan
from core.migrations.revgraph import RevisionState
from tasks._common import TASK_DEFAULTS, artifact_key


def render_pending_sql(plan: Plan, cfg: Settings) -> tuple[str, bool, str | None]:
    """The pending migrations' SQL, printed by the target image's own migration tool with no network, on the
    environment's engine: (text, whether the tool finished, its error line if not). What it printed before an error
    still counts, revision by revision."""
    f = plan.facts
    project = f.settings.stack.project_name
    argv = c.docker_run_offline(f.target.images[f.settings.migration.service], f.target.render_sql_command, project)
    done = StackIO(cfg, project).run(c.Command(argv, ok_codes=tuple(range(256))))
    if done.returncode == 0:
        return done.stdout, True, None
    return done.stdout, False, f"exit {done.returncode}: " + (error_line(done.stderr) if done.stderr.strip() else "")


def pending_sql(plan: Plan, cfg: Settings) -> tuple[str, dict]:
    """The SQL to analyse and where each pending revision's came from. Offline rendering first; when it fails or
    covers only part of the range and the environment has a rehearsal command, the rehearsal's statements (the whole
    range, as it really runs) are analysed instead."""
    f = plan.facts
    text, complete, error = render_pending_sql(plan, cfg) if f.target.render_sql_command else \
        ("", False, "the environment has no offline rendering (render_sql_command is unset)")
    covered = set(rehearsal.rendered_revisions(text, complete)) if text else set()
    rendered = [r for r in f.target.pending_revisions if r in covered]
    partly = {r: why for r, why in sqlrules.incomplete(text).items() if r in covered} if text else {}
    sources: dict[str, Any] = {"rendered": rendered, "rehearsed": [], "incomplete": partly,
               "not_analysed": [r for r in f.target.pending_revisions if r not in covered],
               "analysed_from": "rendering", "render_error": error, "rehearsal": None}
    if not (sources["not_analysed"] or partly) or not f.settings.migration.rehearsal.command:
        return text, sources
    scratch = f.run.dir.parent / f".scratch-{f.run.id or 'x'}-rehearsal"  # swept by the recovery if we are killed
    done = rehearsal.rehearse(StackIO(cfg, f.settings.stack.project_name), f, scratch, cfg.migration.rehearsal.env)
    get_run_logger().info("Rehearsed the migration on %s in %.1f s: %d statements, %d revisions", done.database,
                          done.seconds, done.statements, len(done.revisions))
    sources.update(rehearsed=[r for r in f.target.pending_revisions if r in done.revisions], analysed_from="rehearsal",
                   incomplete={r: why for r, why in partly.items() if r not in done.revisions},
                   not_analysed=[r for r in f.target.pending_revisions if r not in done.revisions],
                   rehearsal={"database": done.database, "seconds": done.seconds, "statements": done.statements,
                              "dropped": done.dropped, "notes": done.notes})
    return done.sql, sources


def migration_report(plan: Plan, cfg: Settings) -> tuple[migcheck.MigrationReport, OnlineFacts]:
    """The migration pre-flight's report, and the online preparation it allows (`migration.online_preparation`)."""
    f = plan.facts
    revisions = RevisionState(f.database.revision, f.target.heads[0], f.target.pending_revisions,
                              f.target.noop_downgrades)
    sql, sources = pending_sql(plan, cfg)
    with dbops.DbAccess.of(cfg).connect(f.settings.database.name, autocommit=True) as conn:
        catalog = pgcatalog.LiveCatalog(conn)
        rates = pgcatalog.probe(conn, cfg.migration.probe_seconds) if cfg.migration.probe else None
        online = choose(sql, conn, catalog, cfg, f.target.transaction_per_migration)
        result = migcheck.analyze(sql, catalog, rates, revisions, per_revision=f.target.transaction_per_migration,
                                  catalog_only=online.catalog_only(online_settings(cfg)))
        check_room(conn, online, f.database.room_bytes)
    result.incomplete = sources["incomplete"]  # the rendering's, less what the rehearsal ran
    result.warnings.append(("one transaction per revision" if f.target.transaction_per_migration else
                            "one transaction for the whole upgrade") + f", as {f.target.transaction_shape_from} "
                           f"says: lock holds and MS025 follow it")
    result.sources = sources
    if sources["not_analysed"]:
        result.warnings.append(f"{len(sources['not_analysed'])} pending revision(s) could not be analysed "
                               f"({', '.join(sources['not_analysed'])}): offline rendering failed or stopped short "
                               f"({sources['render_error'] or 'no SQL for them'}) and "
                               + ("the rehearsal did not apply them" if sources["rehearsal"] else
                                  "the environment has no rehearsal_command") + "; review them by hand")
    return result, online


@task(name="analyze-migrations", task_run_name="analyze-migrations", **TASK_DEFAULTS)
def analyze_migrations(plan: Plan, cfg: Settings, accept_risk: bool = False, dry_run: bool = False) -> dict:
    """Publishes what the pending migrations will lock, rewrite and cost; raises MigrationRiskTooHigh (nothing has
    changed yet) on data loss or a forecast lock-hold over the environment's `max_lock_seconds`, unless the
    operator accepted the risk. A dry run reports the verdict without raising."""
    f = plan.facts
    if not f.target.pending_revisions:
        create_markdown_artifact(key=artifact_key(f.run.environment, "migrations"),
                                 markdown=f"# Migrations: {f.run.environment} → {f.target.ref}\n\nNothing pending: the "
                                          f"database is at the target head `{f.target.heads[0]}`.\n")
        return {"pending": 0, "gate": []}
    result, online = migration_report(plan, cfg)
    reasons = migcheck.gate(result, cfg.migration.max_lock_seconds)
    note = migcheck.at_load_note(result, cfg.migration.max_lock_seconds)
    title = f"Migrations: {f.run.environment} → {f.target.ref}"
    if reasons and accept_risk:
        title += " (risk accepted by the operator)"
    create_markdown_artifact(key=artifact_key(f.run.environment, "migrations"),
                             markdown=report.migration_markdown(result, title, reasons, note)
                             + report.online_markdown(online.lines(), cfg.migration.online_preparation),
                             description=f"Migration pre-flight {f.run.environment} → {f.target.ref}")
    if reasons and accept_risk:
        get_run_logger().warning("Migration risk accepted by the operator: %s", "; ".join(reasons))
    elif reasons and not dry_run:
        raise MigrationRiskTooHigh(reasons)
    return {"pending": len(f.target.pending_revisions), "gate": reasons, "lock_hold": result.lock_hold,
            "lock_hold_at_current_load": result.lock_hold_now, "uncertainty": note,
            "probe": (result.server or {}).get("probe"), "warnings": len(result.warnings), "sources": result.sources,
            **({"online": online.to_dict()} if online.verdicts else {})}
