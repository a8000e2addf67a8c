"""Backup task: while the old version still serves."""
from __future__ import annotations

import json

from prefect import task
from prefect.artifacts import create_markdown_artifact

from core import report
from core.cutover import steps as st
from tasks._common import TASK_DEFAULTS, artifact_key


@task(name="backup", task_run_name="backup", retries=2, retry_delay_seconds=[3, 10], **TASK_DEFAULTS)
def backup(ctx: st.StepContext, steps: list[st.Step]) -> st.Outcome:
    """Saves config, pg_dump of each database, volumes, digests and revision, with a sha256 manifest.

    A retry is safe: every file is written again from the start, and nothing of the stack is changed.
    """
    seconds = sum(st.execute(step, ctx).seconds for step in steps)
    f = ctx.facts
    manifest = json.loads((f.run.dir / "manifest.json").read_text())
    create_markdown_artifact(key=artifact_key(f.run.environment, "backup"), markdown=report.manifest_markdown(manifest),
                             description="Backup manifest")
    return st.Outcome("backup", "backup", "Backup", seconds, f"{len(manifest['files'])} files in {f.run.dir}")
