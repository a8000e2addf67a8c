"""The promotion flow: staging → prod, approved by a person.

resolve the release → upgrade staging (staging's pool) → read the digests it verified → plan prod as a dry run
(prod's pool) → publish the summary → pause for the approval form → upgrade prod pinned to those digests, refused
if prod's plan no longer gives the approved fingerprint. Rejection or no answer in time ends it cleanly.

It changes no stack itself: every change is an `upgrade` run on the host that owns the stack. It must not run in a
deployment with a concurrency limit (a pause gives the slot up and the lost lease crashes the run).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.runtime import flow_run
from prefect.states import Completed, State

from core.settings import Settings
from core import hosts, promotion
from core.errors import ApprovalRefused, NoReleaseFound
from flows import naming
from flows.upgrade import load_environment
from tasks import promotion as pt
from tasks._common import artifact_key

SKIPPED, REJECTED, EXPIRED = "skipped, nothing to promote", "rejected", "no decision in time"


def resolve_release(release: str | None, staging: str) -> str:
    """The given release, else the release staging's last verified upgrade recorded (`<staging>-digests`): never
    a tag staging has not run."""
    if release:
        return release
    verified = promotion.verified_release(pt.latest_rows(artifact_key(staging, pt.DIGESTS)))
    if verified is None:
        raise NoReleaseFound(staging)
    return verified


def on_host(kind: str, cfg: Settings, environment: str) -> str:
    """The deployment of `kind` on the pool of the environment's host: `upgrade/promotion-<host>` (the upgrade a
    promotion starts, with the pinned digests and the approved fingerprint) or `status/status-<host>`."""
    host = cfg.stack.host or environment
    return f"upgrade/promotion-{host}" if kind == "upgrade" else f"status/status-{host}"


def _run_name() -> str:
    return naming.promotion_name(flow_run.parameters.get("release"))


@flow(name="promote", flow_run_name=_run_name, log_prints=False)
def promote(release: str | None = None, staging: str = "staging", prod: str = "prod",
            approval_timeout_minutes: float = 240, run_timeout_minutes: float = 60):
    """Promote a release from staging to prod: upgrade staging, plan prod, wait for a person's approval, then
    upgrade prod to exactly the images staging verified.

    Args:
        release: Release tag to promote, e.g. `v2.0.0`. Empty: the release staging's last verified upgrade ran
            (staging is then only checked, not upgraded).
        staging: The staging environment (stack-environment block) upgraded and verified first.
        prod: The prod environment (stack-environment block) upgraded after the approval.
        approval_timeout_minutes: How long to wait for the approval; then the promotion ends, prod untouched.
        run_timeout_minutes: How long each upgrade or plan run on a host's pool may take (a host whose worker is
            down must not hang the promotion).
    """
    naming.label_run(staging, prod, promotion=True)
    log = get_run_logger()
    prod_cfg, staging_cfg = load_environment(prod), load_environment(staging)
    hosts.check_host(prod_cfg.stack.host, prod)  # the promotion runs on prod's host: it reads prod's engine itself
    p = _Promotion(resolve_release(release, staging), staging, prod, flow_run.id, run_timeout_minutes)
    naming.rename_run(naming.promotion_name(p.release))

    t0 = time.monotonic()
    digests = _staging_verified(p, prod_cfg, on_host("status", staging_cfg, staging),
                                on_host("upgrade", staging_cfg, staging))
    p.seconds["staging"] = time.monotonic() - t0
    if isinstance(digests, State):
        return digests
    t0 = time.monotonic()
    prod_deployment = on_host("upgrade", prod_cfg, prod)
    fp, summary = _prod_plan(p, digests, prod_deployment)
    p.seconds["prod plan"] = time.monotonic() - t0
    answer = _approval(p, fp, summary, approval_timeout_minutes)
    if isinstance(answer, State):
        return answer
    who = f"{answer.approver}" + (f" ({answer.comment})" if answer.comment else "")
    log.info("Approved by %s: upgrading %s to %s, pinned to staging's digests", who, prod, p.release)

    # 4. prod, pinned to the digests staging verified, only if its plan is still the approved one
    t0 = time.monotonic()
    try:
        done = pt.run_on_pool(f"the upgrade of {prod} to {p.release}", prod_deployment,
                              {"environment": prod, "target": p.release, "pinned_images": digests,
                               "approved_fingerprint": fp}, run_timeout_minutes, f"{p.me}-prod")
    finally:
        p.seconds["prod"] = time.monotonic() - t0
        pt.publish_timeline(p.release, f"approved by {who}", p.seconds)
    return {"release": p.release, "digests": digests, "fingerprint": fp, "approved_by": answer.approver,
            "prod_run": str(done.id), "seconds": p.seconds}


def ended(p: _Promotion, outcome: str, message: str) -> State:
    """A promotion that ends without upgrading prod: Completed (a custom state name would hide it from the UI's
    default runs list, which filters by state name), its outcome in the run's name and the state's message."""
    naming.rename_run(naming.promotion_name(p.release, outcome))
    return Completed(message=message)


@dataclass
class _Promotion:
    """One promotion's names, and what it measures and notes on the way."""

    release: str
    staging: str
    prod: str
    me: str | None
    run_timeout_minutes: float
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _staging_verified(p: _Promotion, prod_cfg: Settings, status_deployment: str,
                      deployment: str) -> dict[str, str] | State:
    """1. staging: upgraded and verified, unless its last verified upgrade is this release and it still runs it.
    Returns the digests staging verified, or the ending state when prod already runs them too (skipped)."""
    staged = pt.latest_rows(artifact_key(p.staging, pt.DIGESTS))
    if staged and all(r.get("release") == p.release for r in staged):
        look = pt.run_on_pool(f"a look at what {p.staging} runs", status_deployment, {"environment": p.staging},
                              p.run_timeout_minutes, f"{p.me}-staging-status")
        running = pt.rows_of(pt.run_artifacts(look.id)[artifact_key(p.staging, pt.RUNNING)])
        if promotion.still_runs(staged, running):
            digests = {r["service"]: r["digest"] for r in staged}
            here = pt.running_now(prod_cfg)
            if here["digests"] == digests and here["commit"] == staged[0].get("commit"):
                note = f"Nothing to promote: {p.staging} and {p.prod} both run {p.release} with the same digests."
                get_run_logger().info(note)
                return ended(p, SKIPPED, note)
            p.notes.append(f"{p.staging} already runs {p.release}, verified earlier and checked now "
                           f"([status run]({pt.run_url(look.id)})): not upgraded again")
            return digests
        p.notes.append(f"{p.staging} no longer runs the {p.release} it verified earlier "
                       f"([status run]({pt.run_url(look.id)})): upgraded again")
    child = pt.run_on_pool(f"the upgrade of {p.staging} to {p.release}", deployment,
                           {"environment": p.staging, "target": p.release}, p.run_timeout_minutes, f"{p.me}-staging")
    rows = pt.rows_of(pt.run_artifacts(child.id)[artifact_key(p.staging, pt.DIGESTS)])
    p.notes.append(f"{p.staging} upgraded to {p.release} and verified: [run]({pt.run_url(child.id)})")
    return {r["service"]: r["digest"] for r in rows}


def _prod_plan(p: _Promotion, digests: dict[str, str], deployment: str) -> tuple[str, str]:
    """2. prod: the plan, the env diff and the migration report, as a dry run on prod's host. Returns the plan's
    fingerprint and the summary the approver reads (published)."""
    planned = pt.run_on_pool(f"the plan of {p.prod} for {p.release}", deployment,
                             {"environment": p.prod, "target": p.release, "dry_run": True, "pinned_images": digests},
                             p.run_timeout_minutes, f"{p.me}-prod-plan")
    made = pt.run_artifacts(planned.id)
    facts = pt.rows_of(made[artifact_key(p.prod, pt.APPROVAL_FACTS)])[0]
    fp, verdict = facts["fingerprint"], facts["verdict"]
    links = {f"{title} ({key})": pt.artifact_url(made[key].id)
             for title, key in (("Prod plan", artifact_key(p.prod, "plan")),
                                ("Prod env diff, secrets masked", artifact_key(p.prod, "env-diff")),
                                ("Prod migration report", artifact_key(p.prod, "migrations"))) if key in made}
    links["Prod plan run"] = pt.run_url(planned.id)
    if verdict.startswith("BLOCKED"):
        p.notes.append("the migration gate blocks prod: its upgrade would stop before any change")
    summary = promotion.summary_markdown(p.release, p.staging, p.prod, digests=digests, verdict=verdict, fp=fp,
                                         links=links, notes=p.notes, env=facts.get("env") or [],
                                         online=tuple(filter(None, str(facts.get("online") or "").split("\n"))))
    pt.publish_summary(summary, p.release)
    return fp, summary


def _approval(p: _Promotion, fp: str, summary: str, timeout_minutes: float) -> pt.Approval | State:
    """3. a person's approval (the pause's form), or the state that ends the promotion (rejected, or no decision
    in time)."""
    t0 = time.monotonic()
    # no default for the fingerprint: the UI sends only what was typed (a pre-filled value is not sent), and a
    # required field makes the approver confirm the plan they read
    form = pt.Approval.with_initial_data(description=summary)
    pt.announce_approval_needed(p.release, p.prod, fp)
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=int(timeout_minutes * 60),
                                poll_interval=pt.POLL_SECONDS, key="approval")
    except FlowPauseTimeout:
        pt.end_expired_pause()
        p.seconds["waiting"] = time.monotonic() - t0
        pt.publish_timeline(p.release, "no decision in time", p.seconds)
        return ended(p, EXPIRED, f"No decision within {timeout_minutes:g} min: prod was not touched; {p.staging} "
                                 f"stays on {p.release}.")
    p.seconds["waiting"] = time.monotonic() - t0
    who = f"{answer.approver}" + (f" ({answer.comment})" if answer.comment else "")
    if answer.decision == "reject":
        pt.publish_timeline(p.release, f"rejected by {who}", p.seconds)
        return ended(p, f"{REJECTED} by {answer.approver}", f"Rejected by {who}: prod was not touched; "
                                                               f"{p.staging} stays on {p.release}.")
    if answer.fingerprint != fp:
        raise ApprovalRefused(answer.fingerprint, fp)
    return answer
