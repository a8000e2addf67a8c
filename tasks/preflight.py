"""Pre-flight and env-sync tasks: gather facts (the env merge among them, once), compute the plan, publish it and
the env diff."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from core import report
from core.settings import Settings
from core.cutover import preflight as pf
from core.cutover import steps as st
from core.cutover.facts import Facts
from core.cutover.online import OnlineFacts
from core.cutover.plan import Plan, build_plan, with_online
from tasks._common import TASK_DEFAULTS, artifact_key

log = logging.getLogger("stackshift.plan")


@task(name="plan", task_run_name="plan", **TASK_DEFAULTS)
def plan_upgrade(cfg: Settings, environment: str, target: str, run_id: str, accept_env_conflicts: bool = False,
                 pins: dict[str, str] | None = None) -> Plan:
    """Reads the deployment and the target and returns the plan; raises a PreflightError on bad input. `pins`
    (service → repo@sha256:…) pins every target image to a digest (a promotion: what staging verified)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = Path(cfg.backup.dir) / cfg.stack.project_name / f"{stamp}-{run_id}"
    facts = pf.gather(cfg, pf.UpgradeRequest(environment, target, run_dir, run_id, accept_env_conflicts, pins))
    plan = build_plan(facts, run_id)
    _publish_plan(plan)
    return plan


def _publish_plan(plan: Plan) -> None:
    f = plan.facts
    for line in report.plan_commands(plan):  # the exact commands go to the run's logs; the artifact is in words
        log.info(line)
    create_markdown_artifact(key=artifact_key(f.run.environment, "plan"), markdown=report.plan_markdown(plan),
                             description=f"Upgrade plan {f.run.environment} → {f.target.ref}")


def with_online_preparation(plan: Plan, migrations: dict) -> Plan:
    """The plan with the online preparation the migration pre-flight chose (`migrations["online"]`, which becomes
    its lines for people), published again when that changes it; the same plan when there is none."""
    online = OnlineFacts.from_dict(migrations.pop("online", None))
    if online.verdicts:
        migrations["online"] = online.lines()
    new = with_online(plan, online)
    if new is not plan:
        _publish_plan(new)
    return new


def _publish_env_diff(f: Facts) -> None:
    """The env diff artifacts, from pre-flight's result (rows already masked)."""
    result = f.env_sync
    create_markdown_artifact(key=artifact_key(f.run.environment, "env-diff"),
                             markdown=report.env_markdown(f.run.environment, result.rows, result.counts,
                                                          result.effective, result.copies),
                             description=f"Env diff {f.run.environment} → {f.target.ref} (secrets masked)")
    if result.rows:
        create_table_artifact(key=artifact_key(f.run.environment, "env-diff-table"), table=result.rows,
                              description="Env diff rows (secrets masked)")
    copy_rows = [{"env_file": c["path"], **r} for c in result.copies for r in c["rows"]]
    if copy_rows:
        create_table_artifact(key=artifact_key(f.run.environment, "env-copies-table"), table=copy_rows,
                              description="Env diff rows of the envs/ env files (secrets masked)")
    if result.effective:
        create_table_artifact(key=artifact_key(f.run.environment, "env-effective-table"),
                              table=[{"key": key, "service": service, **got} for key, per in result.effective.items()
                                     for service, got in per.items()],
                              description="What each service gets where env files disagree (secrets masked)")


@task(name="env-sync", task_run_name="env-sync", **TASK_DEFAULTS)
def review_env(plan: Plan) -> dict[str, int]:
    """Dry run: publishes the masked env diff pre-flight computed, for review; writes nothing."""
    _publish_env_diff(plan.facts)
    return plan.facts.env_sync.counts


@task(name="env-sync", task_run_name="env-sync", **TASK_DEFAULTS)
def env_sync(ctx: st.StepContext, after: st.Outcome | None = None) -> st.Outcome:
    """Publishes the env merge pre-flight computed and staged in the run folder (0600), once the backup holds the
    `.env`: no second merge. Refuses (EnvChangedSincePlan) if the `.env` was edited since pre-flight read it, or the
    staged file changed. The stack is not touched: the cutover's `install-env` step installs the staged bytes."""
    f = ctx.facts
    t0 = time.monotonic()
    saved = f.run.dir / "compose"
    f.env_sync.check_unchanged(saved / f.settings.stack.env_file, f.settings.stack.compose_dir, saved)
    _publish_env_diff(f)
    counts = ", ".join(f"{k} {v}" for k, v in f.env_sync.counts.items() if v) or "no change"
    return st.Outcome("env-sync", "backup", "Publish the .env merge pre-flight staged (merged onto the target's "
                      "template)", time.monotonic() - t0, counts)
