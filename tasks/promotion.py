"""Promotion tasks: what crosses hosts goes through the Prefect server as artifacts (a run's result stays on its
host): the digests an upgrade verified, the fingerprint of a dry run's plan, the summary an approver reads."""
from __future__ import annotations

from uuid import UUID

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.input import RunInput
from pydantic import Field
from typing import TYPE_CHECKING, Any, Literal, cast

from core import promotion, report
from core.settings import Settings
from core.cutover.plan import Plan
from core.io.engine import current_images
from core.stackio import StackIO
from tasks._common import TASK_DEFAULTS, artifact_key

if TYPE_CHECKING:
    from datetime import datetime

    from prefect.client.schemas.objects import Artifact, FlowRun

DIGESTS = "digests"
APPROVAL_FACTS = "approval-facts"
RUNNING = "running"
# How often a promotion reads the state of a run it waits for (a child run, its own pause): one cheap read; at 3 s
# every wait ended up to 3 s after its run did.
POLL_SECONDS = 1


FINGERPRINT_HELP = ("Paste the fingerprint the promotion summary above shows (its last section): the plan you "
                    "reviewed. Prod is upgraded only if its plan still gives this one.")


class Approval(RunInput):
    """The approval of a prod upgrade. Read the promotion summary, prod's plan and env diff first."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: upgrade prod now, with exactly the images staging verified. reject: end the promotion; "
                    "prod and staging stay as they are.")
    approver: str = Field(min_length=1, description="Who decides (your name or e-mail); recorded with the decision.")
    comment: str = Field(default="", description="Why (optional); recorded with the decision.")
    fingerprint: str = Field(description=FINGERPRINT_HELP)


@task(name="publish-digests", task_run_name="publish-digests", **TASK_DEFAULTS)
def publish_digests(cfg: Settings, environment: str, ref: str, commit: str) -> dict[str, str]:
    """Reads the running containers' image digests on the environment's engine and publishes them (`<env>-digests`),
    for a promotion to pin prod to."""
    digests = _running_digests(cfg)
    create_table_artifact(key=artifact_key(environment, DIGESTS),
                          table=[{"service": s, "digest": d, "release": ref, "commit": commit}
                                 for s, d in digests.items()],
                          description=f"Image digests verified on {environment} running {ref}")
    return digests


def running_now(cfg: Settings) -> dict[str, Any]:
    """What the environment runs now, read on this host: `{service: repo@sha256:…}` of its running containers
    (through the block's engine) and `commit`: its compose checkout's HEAD."""
    from core.io import commands as c
    from core.io.executor import run

    return {"digests": _running_digests(cfg),
            "commit": run(c.git_rev_parse(cfg.stack.compose_dir, "HEAD")).stdout.strip()}


def _running_digests(cfg: Settings) -> dict[str, str]:
    """`{service: repo@sha256:…}` of the environment's containers (one-shot jobs' exited ones too), through the
    block's engine."""
    return promotion.verified_digests(current_images(StackIO(cfg, cfg.stack.project_name).endpoint.client(),
                                                     cfg.stack.project_name))


@task(name="publish-running", task_run_name="publish-running", **TASK_DEFAULTS)
def publish_running(cfg: Settings, environment: str) -> dict:
    """Publishes `running_now` as `<env>-running` (one row per service, each with the commit)."""
    now = running_now(cfg)
    create_table_artifact(key=artifact_key(environment, RUNNING),
                          table=[{"service": s, "digest": d, "commit": now["commit"]}
                                 for s, d in now["digests"].items()],
                          description=f"What {environment} runs now")
    return now


@task(name="publish-approval-facts", task_run_name="publish-approval-facts", **TASK_DEFAULTS)
def publish_approval_facts(plan: Plan, migrations: dict) -> str:
    """A dry run's fingerprint, migration verdict and env changes in a few lines (`<env>-approval-facts`), for the
    promotion's summary, with each flagged statement's online verdict (`online`: one line each, prepared online or in
    the downtime and why)."""
    fp = promotion.fingerprint(plan.facts)
    env = report.env_summary(plan.facts.env_sync.rows, plan.facts.env_sync.copies)
    create_table_artifact(key=artifact_key(plan.facts.run.environment, APPROVAL_FACTS),
                          table=[{"fingerprint": fp, "verdict": promotion.migration_verdict(migrations),
                                  "online": "\n".join(migrations.get("online") or ()),
                                  "release": plan.facts.target.ref, "commit": plan.facts.target.commit, "env": env}],
                          description=f"Fingerprint of the plan {plan.facts.run.environment} → {plan.facts.target.ref}")
    return fp


def run_artifacts(flow_run_id: UUID | str) -> dict[str, Artifact]:
    """Key → the artifact (latest) that one flow run published."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(flow_run_id))])))
    out = {}
    for a in sorted(found, key=lambda a: cast("datetime", a.created)):  # the server stamps every artifact it stores
        if a.key:
            out[a.key] = a
    return out


def latest_rows(key: str) -> list[dict]:
    """The rows of the latest version of a table artifact ([] if there is none)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                      sort=ArtifactSort.CREATED_DESC, limit=1)
    return rows_of(found[0]) if found else []


def rows_of(artifact) -> list[dict]:
    """The rows of a table artifact (stored as JSON text or as a list)."""
    import json

    return json.loads(artifact.data) if isinstance(artifact.data, str) else list(artifact.data or [])


@task(name="publish-summary", task_run_name="publish-summary", **TASK_DEFAULTS)
def publish_summary(markdown: str, release: str) -> UUID:
    # Prefect's sync-compatible functions are typed "result or coroutine"; called from sync code, a result.
    return cast(UUID, create_markdown_artifact(key="promotion-summary", markdown=markdown,
                                               description=f"Promotion of {release}: what to review and approve"))


# --- runs on other hosts' pools ---------------------------------------------------------------------------------
def ui_url() -> str:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    return (PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")).rstrip("/")


def run_url(flow_run_id) -> str:
    return f"{ui_url()}/runs/flow-run/{flow_run_id}"


def artifact_url(artifact_id) -> str:
    return f"{ui_url()}/artifacts/artifact/{artifact_id}"


def run_on_pool(what: str, deployment: str, parameters: dict, timeout_minutes: float, key: str):
    """Runs `deployment` (on its host's pool) as a subflow and waits at most `timeout_minutes` (never forever: a
    host whose worker is down would hang the promotion). Returns the finished run if it Completed; raises
    PromotionStopped if it ended otherwise, ChildRunTimedOut if it is still not finished (a run that has not
    started yet is cancelled, so that it never changes a stack later, unseen)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled

    from core.errors import ChildRunTimedOut, PromotionStopped

    # Prefect's sync-compatible functions are typed "result or coroutine"; called from sync code, a result.
    child = cast("FlowRun", run_deployment(deployment, parameters=parameters,
                                           timeout=max(1, int(timeout_minutes * 60)),
                                           poll_interval=POLL_SECONDS, idempotency_key=key, as_subflow=True))
    state = child.state
    if state is None or not state.is_final():
        if state is None or state.is_scheduled() or state.is_pending():
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(child.id, Cancelled(message=f"{what} timed out before it started"),
                                          force=True)
        with get_client(sync_client=True) as client:
            pool = client.read_deployment_by_name(deployment).work_pool_name or "?"
        raise ChildRunTimedOut(what, timeout_minutes, pool, run_url(child.id))
    if not state.is_completed():
        raise PromotionStopped(what, state.name, state.message or "", run_url(child.id))
    return child


def announce_approval_needed(release: str, prod: str, fingerprint: str) -> None:
    """Emits `stackshift.promotion.approval-needed` with the run's URL (the "approval needed" notification's
    trigger). A custom event, not the run's Paused state event: the server holds a state event back until the one
    it follows has arrived (up to about 15 minutes when that one was lost), and an approver must hear at once."""
    from prefect.events import emit_event
    from prefect.runtime import flow_run

    emit_event("stackshift.promotion.approval-needed",
               resource={"prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                         "prefect.resource.name": flow_run.name or ""},
               payload={"url": run_url(flow_run.id), "release": release, "prod": prod, "fingerprint": fingerprint})


def end_expired_pause() -> None:
    """After the approval's timeout the server still has the run Paused (expired), and turns any end state it is
    then asked for into Failed ("never resumed"). No decision is not a failure: set it Running again (forced: the
    rule that refuses an expired pause is the one meant to stop a late approval), so that it can end Completed."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Running(message="no decision in time"), force=True)


@task(name="record-timings", task_run_name="record-timings", **TASK_DEFAULTS)
def publish_timeline(release: str, outcome: str, seconds: dict[str, float]) -> None:
    rows = [{"phase": k, "seconds": round(v, 1)} for k, v in seconds.items()]
    create_table_artifact(key="promotion-timeline", table=rows,
                          description=f"Promotion of {release}: {outcome}; wall time by phase")
