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
PAGE = 200  # the server's largest page


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
    """One row per environment, in a few round trips to the server whatever their number (the dashboard is rebuilt
    after every run, refused ones included): the blocks, the latest `<env>-now` artifacts, the newest runs."""
    from tasks.promotion import run_url

    envs = environments()
    now, runs = versions_now(envs), last_runs(envs)
    rows = []
    for env in envs:
        row, last = now.get(env, {}), runs.get(env)
        rows.append({"environment": env, "version": row.get("version"), "commit": row.get("commit"),
                     "revision": row.get("revision"),
                     "run": last.name if last else None, "url": run_url(last.id) if last else None,
                     "outcome": last.state.name if last and last.state else None,
                     "when": last.start_time.strftime("%Y-%m-%d %H:%M UTC") if last and last.start_time else None})
    return rows


def versions_now(envs: list[str]) -> dict[str, dict]:
    """environment → the first row of its latest `<env>-now` artifact (those that have one), a page at a time."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    from tasks.promotion import rows_of

    keys: dict[str, list[str]] = {}
    for env in envs:
        keys.setdefault(artifact_key(env, NOW), []).append(env)
    found: dict[str, dict] = {}
    with get_client(sync_client=True) as client:
        for i in range(0, len(keys), PAGE):
            page = list(keys)[i:i + PAGE]
            for a in client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(
                    key=ArtifactCollectionFilterKey(any_=page)), limit=PAGE):
                found |= {env: (rows_of(a) or [{}])[0] for env in keys.get(a.key, [])}
    return found


def last_runs(envs: list[str]) -> dict:
    """environment → its newest started upgrade or recover run (those that have one): the newest runs of them all in
    one page; an environment none of that page names is asked alone, only when the page was full."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilterTags

    if not envs:
        return {}
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(**_runs_query(FlowRunFilterTags(any_=envs)), limit=PAGE)
    last: dict = {}
    for r in found:
        for env in envs:
            if env in (r.tags or []):
                last.setdefault(env, r)
    if len(found) == PAGE:
        last |= {env: run for env in envs if env not in last and (run := last_run(env))}
    return last


def last_run(environment: str):
    """The newest started upgrade or recover run tagged with the environment's name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilterTags

    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(**_runs_query(FlowRunFilterTags(all_=[environment])), limit=1)
    return found[0] if found else None


def _runs_query(tags) -> dict:
    """The started upgrade and recover runs with these tags, newest first."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStartTime
    from prefect.client.schemas.sorting import FlowRunSort

    return {"flow_filter": FlowFilter(name=FlowFilterName(any_=list(RUN_FLOWS))),
            "flow_run_filter": FlowRunFilter(tags=tags, start_time=FlowRunFilterStartTime(is_null_=False)),
            "sort": FlowRunSort.START_TIME_DESC}
