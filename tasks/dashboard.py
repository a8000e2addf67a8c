"""The dashboard artifact (`stackshift-dashboard`): every environment's version, commit, database revision, last
run and its outcome, rebuilt after each upgrade or recover run from what the server holds: the environments are the
saved stack-environment blocks, what each runs is its `<env>-now` artifact (written by the run that changed it),
its last run is the newest upgrade or recover run tagged with its name.

Best effort throughout: the dashboard is a view, never a reason for a run to fail.
"""
from __future__ import annotations

import logging
from typing import Any

from core import promotion, report
from core.io import commands as c
from core.io.executor import run
from core.settings import Settings
from tasks._common import api_reachable, artifact_key

log = logging.getLogger("stackshift")
DASHBOARD = "stackshift-dashboard"
NOW = "now"
RUN_FLOWS = ("upgrade", "recover")


def record_version(cfg: Settings, environment: str, ref: str | None, commit: str, revision: list[str]) -> None:
    """Publishes what the environment runs now (`<env>-now`): the release (None: the newest release tag at
    `commit`, else the short commit), the commit and the database revision."""
    try:
        if ref is None:
            at = run(c.git_tags_at(cfg.stack.compose_dir, commit)).stdout.split()
            ref = next(iter(promotion.releases_newest_first(at)), commit[:12])
        if not api_reachable(timeout=10):
            return
        from prefect.artifacts import create_table_artifact

        create_table_artifact(key=artifact_key(environment, NOW), description=f"What {environment} runs now",
                              table=[{"environment": environment, "version": ref, "commit": commit,
                                      "revision": ", ".join(revision) or "(none)"}])
    except Exception as exc:
        log.warning("Could not record what %s runs now (%s: %s)", environment, type(exc).__name__, exc)


def after_run(flow: Any, flow_run: Any, state: Any) -> None:
    """A flow hook (completion and failure): rebuilds the dashboard."""
    publish_dashboard()


def publish_dashboard() -> None:
    try:
        if not api_reachable(timeout=10):
            return
        from prefect.artifacts import create_markdown_artifact

        rows = dashboard_rows()
        create_markdown_artifact(key=DASHBOARD, markdown=report.dashboard_markdown(rows),
                                 description=f"Every environment: version and last run ({len(rows)})")
    except Exception as exc:
        log.warning("Could not publish the dashboard (%s: %s)", type(exc).__name__, exc)


def environments() -> list[str]:
    """The names of the saved stack-environment blocks."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        docs = client.read_block_documents_by_type("stack-environment", include_secrets=False)
    return sorted(d.name for d in docs if d.name and not d.is_anonymous)


def dashboard_rows() -> list[dict]:
    from tasks.promotion import latest_rows, run_url

    rows = []
    for env in environments():
        now = (latest_rows(artifact_key(env, NOW)) or [{}])[0]
        last = last_run(env)
        rows.append({"environment": env, "version": now.get("version"), "commit": now.get("commit"),
                     "revision": now.get("revision"),
                     "run": last.name if last else None, "url": run_url(last.id) if last else None,
                     "outcome": last.state.name if last and last.state else None,
                     "when": last.start_time.strftime("%Y-%m-%d %H:%M UTC") if last and last.start_time else None})
    return rows


def last_run(environment: str):
    """The newest started upgrade or recover run tagged with the environment's name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStartTime,
                                                FlowRunFilterTags)
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(RUN_FLOWS))),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[environment]),
                                          start_time=FlowRunFilterStartTime(is_null_=False)),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
    return found[0] if found else None
