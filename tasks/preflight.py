"""Pre-flight and env-sync tasks: gather facts, compute the plan, publish it and the env diff."""
from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from core import report

from core.settings import Settings
from core.env import envsync
from core.cutover import preflight as pf
from core.cutover import steps as st
from core.cutover.plan import Facts, Plan, build_plan
from tasks._common import TASK_DEFAULTS, artifact_key


@task(name="plan", task_run_name="plan", **TASK_DEFAULTS)
def plan_upgrade(cfg: Settings, environment: str, target: str, run_id: str, accept_env_conflicts: bool = False,
                 pins: dict[str, str] | None = None) -> Plan:
    """Reads the deployment and the target and returns the plan; raises a PreflightError on bad input. `pins`
    (service → repo@sha256:…) pins every target image to a digest (a promotion: what staging verified)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = Path(cfg.backup.dir) / cfg.stack.project_name / f"{stamp}-{run_id}"
    facts = pf.gather(cfg, environment, target, run_dir, run_id=run_id, accept_env_conflicts=accept_env_conflicts,
                      pins=pins)
    plan = build_plan(facts, run_id)
    create_markdown_artifact(key=artifact_key(environment, "plan"), markdown=report.plan_markdown(plan),
                             description=f"Upgrade plan {environment} → {target}")
    return plan


def _publish_env_diff(f: Facts, rows: list[dict], counts: dict[str, int]) -> None:
    create_markdown_artifact(key=artifact_key(f.environment, "env-diff"),
                             markdown=report.env_markdown(f.environment, rows, counts),
                             description=f"Env diff {f.environment} → {f.target_ref} (secrets masked)")
    if rows:
        create_table_artifact(key=artifact_key(f.environment, "env-diff-table"), table=rows,
                              description="Env diff rows (secrets masked)")


@task(name="env-sync", task_run_name="env-sync", **TASK_DEFAULTS)
def review_env(plan: Plan) -> dict[str, int]:
    """Dry run: publishes the masked env diff pre-flight computed, for review; writes nothing."""
    f = plan.facts
    _publish_env_diff(f, f.env_report, f.env_counts)
    return f.env_counts


@task(name="env-sync", task_run_name="env-sync", **TASK_DEFAULTS)
def env_sync(ctx: st.StepContext, after: st.Outcome | None = None) -> st.Outcome:
    """Merges the backed-up `.env` onto the target's template (three-way, with the deployed template as the base),
    stages the result in the run folder (0600) and publishes the masked diff. The stack is not touched: the
    cutover's `install-env` step installs the staged file."""
    f = ctx.facts
    t0 = time.monotonic()
    saved = f.run_dir / "compose"
    old_template = (saved / f.env_template).read_text() if (saved / f.env_template).exists() else \
        envsync.template_at(f.compose_dir, f.current_commit, f.env_template)
    new_template = envsync.template_at(f.compose_dir, f.target_commit, f.env_template)
    required = envsync.required_at(f.compose_dir, f.target_commit, f.compose_files)
    merged = envsync.merge_for(saved / f.env_file, old_template, new_template, required)
    staged = f.run_dir / st.MERGED_ENV
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        out.write(merged.text)
    _publish_env_diff(f, f.env_report, merged.counts())
    counts = ", ".join(f"{k} {v}" for k, v in merged.counts().items() if v) or "no change"
    return st.Outcome("env-sync", "backup", "Merge .env onto the target's template (staged)",
                      time.monotonic() - t0, counts)
