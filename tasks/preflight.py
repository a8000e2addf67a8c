"""Pre-flight task: gather facts, compute the plan, publish it. Changes nothing."""
from __future__ import annotations

import time
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from core import preflight as pf
from core import report
from core.plan import Plan, build_plan
from tasks._common import TASK_DEFAULTS


def artifact_key(environment: str, what: str) -> str:
    return f"{environment}-{what}".lower().replace("_", "-")


@task(name="plan-upgrade", **TASK_DEFAULTS)
def plan_upgrade(cfg, environment: str, target: str, run_id: str) -> Plan:
    """Reads the deployment and the target and returns the plan; raises a PreflightError on bad input."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = Path(cfg.backup_dir) / cfg.project_name / f"{stamp}-{run_id}"
    facts = pf.gather(cfg, environment, target, run_dir)
    plan = build_plan(facts, run_id)
    create_markdown_artifact(key=artifact_key(environment, "plan"), markdown=report.plan_markdown(plan),
                             description=f"Upgrade plan {environment} → {target}")
    return plan


@task(name="env-sync-report", **TASK_DEFAULTS)
def publish_env_diff(plan: Plan) -> dict[str, int]:
    """Publishes the masked env diff (markdown and table) for review; the merged file is written at cutover."""
    f = plan.facts
    create_markdown_artifact(key=artifact_key(f.environment, "env-diff"),
                             markdown=report.env_markdown(f.environment, f.env_report, f.env_counts),
                             description=f"Env diff {f.environment} → {f.target_ref} (secrets masked)")
    if f.env_report:
        create_table_artifact(key=artifact_key(f.environment, "env-diff-table"), table=f.env_report,
                              description="Env diff rows (secrets masked)")
    return f.env_counts
