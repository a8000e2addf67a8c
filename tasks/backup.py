"""Backup task: while the old version still serves."""
from __future__ import annotations

import json

from prefect import task
from prefect.artifacts import create_markdown_artifact

from core import report
from core.apply import Runner
from tasks._common import TASK_DEFAULTS
from tasks.preflight import artifact_key


@task(name="backup", retries=2, retry_delay_seconds=[3, 10], **TASK_DEFAULTS)
def run_backup(runner: Runner) -> str:
    """Saves config, pg_dump of each database, volumes, digests and revision, with a sha256 manifest.

    A retry is safe: every file is written again from the start.
    """
    runner.walk(runner.plan.backup)
    manifest = json.loads((runner.plan.facts.run_dir / "manifest.json").read_text())
    create_markdown_artifact(key=artifact_key(runner.plan.facts.environment, "backup"),
                             markdown=report.manifest_markdown(manifest), description="Backup manifest")
    return str(runner.plan.facts.run_dir)
