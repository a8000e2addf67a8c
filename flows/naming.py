"""What a run is called and tagged in the Prefect UI, so that the runs list reads on its own: `prod → v2.0.0`,
`prod → v2.0.0 (plan)`, `promote v2.0.0`, and tags for the environment, a dry run, a promotion and where the run
was started (cli, ui, schedule, automation).

The names and tags are plain functions (tested without a server); `label_run` and `rename_run` apply them to the
current run, best effort: a name is never worth failing an upgrade for.
"""
from __future__ import annotations

import logging
from typing import Any

from tasks._common import api_reachable

log = logging.getLogger("stackshift")

PLAN, ROLLED_BACK, ALREADY_THERE = "plan", "rolled back", "already there"
DRY_RUN_TAG, PROMOTION_TAG = "dry-run", "promotion"
ORIGINS = ("cli", "ui", "schedule", "automation", "promotion")


def upgrade_name(environment: str, target: str, dry_run: bool = False, outcome: str = "") -> str:
    """`prod → v2.0.0`; a dry run `prod → v2.0.0 (plan)`; an outcome worth seeing in the list in brackets, e.g.
    `prod → v2.0.0 (rolled back)`."""
    note = outcome or (PLAN if dry_run else "")
    return f"{environment} → {target}" + (f" ({note})" if note else "")


def promotion_name(release: str | None, outcome: str = "") -> str:
    """`promote v2.0.0`; before the release is resolved `promote (release staging verified)`; an outcome such as
    `rejected by alice` or `skipped: nothing to promote` after a colon."""
    name = f"promote {release or '(release staging verified)'}"
    return f"{name}: {outcome}" if outcome else name


def run_tags(*environments: str | None, dry_run: bool = False, promotion: bool = False,
             origin: str | None = None) -> list[str]:
    """The tags a run carries besides its deployment's: its environments (a promotion's two), `dry-run`,
    `promotion`, the origin. Filtering the runs list by an environment's tag finds every run that touched it."""
    tags = [e for e in environments if e]
    tags += [DRY_RUN_TAG] if dry_run else []
    tags += [PROMOTION_TAG] if promotion else []
    return tags + ([origin] if origin else [])


def origin_of(run: Any) -> str:
    """Where a flow run was started, from what the server knows of it: no deployment (the CLI calls the flow
    itself), a schedule, an automation, a parent run (a promotion's child), a `cli` tag (the CLI started the
    deployment), else a person in the UI (or the API)."""
    tags = set(run.tags or [])
    if run.deployment_id is None:
        return "cli"
    if run.auto_scheduled:
        return "schedule"
    created_by = getattr(run, "created_by", None)
    if created_by is not None and str(getattr(created_by, "type", "")).upper() == "AUTOMATION":
        return "automation"
    if run.parent_task_run_id is not None:  # not the `promotion` tag: the promote deployment's runs carry it too
        return "promotion"
    return "cli" if "cli" in tags else "ui"


def label_run(*environments: str | None, dry_run: bool = False, promotion: bool = False) -> None:
    """Adds the environments, dry-run, promotion and origin tags to the current flow run (kept: its own tags)."""
    from prefect.runtime import flow_run

    if not flow_run.id or not api_reachable():
        return
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run.id)
            origin = origin_of(run)
            promotion = promotion or origin == "promotion"
            new = run_tags(*environments, dry_run=dry_run, promotion=promotion,
                           origin=None if origin == "promotion" else origin)
            tags = list(dict.fromkeys([*(run.tags or []), *new]))
            if tags != list(run.tags or []):
                client.update_flow_run(run.id, tags=tags)
    except Exception as exc:
        log.warning("Could not tag the run (%s: %s)", type(exc).__name__, exc)


def rename_run(name: str) -> None:
    """Renames the current flow run (e.g. once the outcome is known); best effort, and at once when the server does
    not answer (a rollback must not wait for it)."""
    from prefect.runtime import flow_run

    if not flow_run.id or not api_reachable():
        return
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.set_flow_run_name(flow_run.id, name)
    except Exception as exc:
        log.warning("Could not rename the run (%s: %s)", type(exc).__name__, exc)
