"""The promotion flow: staging → prod, approved by a person.

resolve the release → upgrade staging (staging's pool) → read the digests it verified → plan prod as a dry run
(prod's pool) → publish the summary → pause for the approval form → upgrade prod pinned to those digests, refused
if prod's plan no longer gives the approved fingerprint. Rejection or no answer in time ends it cleanly.

It changes no stack itself: every change is an `upgrade` run on the host that owns the stack. It must not run in a
deployment with a concurrency limit (a pause gives the slot up and the lost lease crashes the run).
"""
from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.runtime import flow_run
from prefect.states import Completed

from core.settings import Settings
from core.io import commands as c
from core import hosts, promotion
from core.errors import ApprovalRefused, NoReleaseFound
from core.io.executor import run
from flows.upgrade import load_environment
from tasks import promotion as pt
from tasks._common import artifact_key


def resolve_release(release: str | None, prod_cfg: Settings) -> str:
    """The given release, else the newest `vX.Y.Z` tag of prod's compose checkout (on this host: prod's pool)."""
    if release:
        return release
    cfg = prod_cfg
    newest = promotion.newest_release(run(c.git_tags(cfg.stack.compose_dir)).stdout.splitlines())
    if newest is None:
        raise NoReleaseFound(str(cfg.stack.compose_dir))
    return newest


@flow(name="promote", log_prints=False)
def promote(release: str | None = None, staging: str = "staging", prod: str = "prod",
            approval_timeout_minutes: float = 240, run_timeout_minutes: float = 60,
            staging_deployment: str = "upgrade/upgrade-staging", prod_deployment: str = "upgrade/upgrade-prod",
            staging_status_deployment: str = "status/status-staging"):
    """Promote a release from staging to prod: upgrade staging, plan prod, wait for a person's approval, then
    upgrade prod to exactly the images staging verified.

    Args:
        release: Release tag to promote, e.g. `v2.0.0`. Empty: the newest vX.Y.Z tag of prod's compose checkout.
        staging: The staging environment (stack-environment block) upgraded and verified first.
        prod: The prod environment (stack-environment block) upgraded after the approval.
        approval_timeout_minutes: How long to wait for the approval; then the promotion ends, prod untouched.
        run_timeout_minutes: How long each upgrade or plan run on a host's pool may take (a host whose worker is
            down must not hang the promotion).
        staging_deployment: Deployment that upgrades staging on staging's host (its work pool).
        prod_deployment: Deployment that plans and upgrades prod on prod's host (its work pool).
        staging_status_deployment: Deployment that reports what staging runs now, on staging's host.
    """
    log = get_run_logger()
    prod_cfg = load_environment(prod)
    hosts.check_host(prod_cfg.stack.host, prod)  # the promotion runs on prod's host: it reads prod's engine itself
    release = resolve_release(release, prod_cfg)
    me = flow_run.id
    seconds: dict[str, float] = {}
    notes = []

    # 1. staging: upgraded and verified, unless its last verified upgrade is this release and it still runs it
    t0 = time.monotonic()
    digests = None
    staged = pt.latest_rows(artifact_key(staging, pt.DIGESTS))
    if staged and all(r.get("release") == release for r in staged):
        look = pt.run_on_pool(f"a look at what {staging} runs", staging_status_deployment, {"environment": staging},
                              run_timeout_minutes, f"{me}-staging-status")
        running = pt.rows_of(pt.run_artifacts(look.id)[artifact_key(staging, pt.RUNNING)])
        if promotion.still_runs(staged, running):
            digests = {r["service"]: r["digest"] for r in staged}
            here = pt.running_now(prod_cfg)
            if here["digests"] == digests and here["commit"] == staged[0].get("commit"):
                note = f"Nothing to promote: {staging} and {prod} both run {release} with the same digests."
                log.info(note)
                return Completed(name="Skipped", message=note)
            notes.append(f"{staging} already runs {release}, verified earlier and checked now "
                         f"([status run]({pt.run_url(look.id)})): not upgraded again")
        else:
            notes.append(f"{staging} no longer runs the {release} it verified earlier "
                         f"([status run]({pt.run_url(look.id)})): upgraded again")
    if digests is None:
        child = pt.run_on_pool(f"the upgrade of {staging} to {release}", staging_deployment,
                               {"environment": staging, "target": release}, run_timeout_minutes, f"{me}-staging")
        rows = pt.rows_of(pt.run_artifacts(child.id)[artifact_key(staging, pt.DIGESTS)])
        digests = {r["service"]: r["digest"] for r in rows}
        notes.append(f"{staging} upgraded to {release} and verified: [run]({pt.run_url(child.id)})")
    seconds["staging"] = time.monotonic() - t0

    # 2. prod: the plan, the env diff and the migration report, as a dry run on prod's host
    t0 = time.monotonic()
    planned = pt.run_on_pool(f"the plan of {prod} for {release}", prod_deployment,
                             {"environment": prod, "target": release, "dry_run": True, "pinned_images": digests},
                             run_timeout_minutes, f"{me}-prod-plan")
    made = pt.run_artifacts(planned.id)
    facts = pt.rows_of(made[artifact_key(prod, pt.APPROVAL_FACTS)])[0]
    fp, verdict = facts["fingerprint"], facts["verdict"]
    links = {f"{title} ({key})": pt.artifact_url(made[key].id)
             for title, key in (("Prod plan", artifact_key(prod, "plan")),
                                ("Prod env diff, secrets masked", artifact_key(prod, "env-diff")),
                                ("Prod migration report", artifact_key(prod, "migrations"))) if key in made}
    links["Prod plan run"] = pt.run_url(planned.id)
    seconds["prod plan"] = time.monotonic() - t0
    if verdict.startswith("BLOCKED"):
        notes.append("the migration gate blocks prod: its upgrade would stop before any change")
    summary = promotion.summary_markdown(release, staging, prod, digests, verdict, fp, links, notes)
    pt.publish_summary(summary, release)

    # 3. the approval
    t0 = time.monotonic()
    form = pt.Approval.with_initial_data(description=summary, fingerprint=fp)
    pt.announce_approval_needed(release, prod, fp)
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=int(approval_timeout_minutes * 60), poll_interval=3,
                                key="approval")
    except FlowPauseTimeout:
        pt.end_expired_pause()
        seconds["waiting"] = time.monotonic() - t0
        pt.publish_timeline(release, "no decision in time", seconds)
        return Completed(name="Expired", message=f"No decision within {approval_timeout_minutes:g} min: prod was "
                                                 f"not touched; {staging} stays on {release}.")
    seconds["waiting"] = time.monotonic() - t0
    who = f"{answer.approver}" + (f" ({answer.comment})" if answer.comment else "")
    if answer.decision == "reject":
        pt.publish_timeline(release, f"rejected by {who}", seconds)
        return Completed(name="Rejected", message=f"Rejected by {who}: prod was not touched; {staging} stays on "
                                                  f"{release}.")
    if answer.fingerprint != fp:
        raise ApprovalRefused(answer.fingerprint, fp)
    log.info("Approved by %s: upgrading %s to %s, pinned to staging's digests", who, prod, release)

    # 4. prod, pinned to the digests staging verified, only if its plan is still the approved one
    t0 = time.monotonic()
    try:
        done = pt.run_on_pool(f"the upgrade of {prod} to {release}", prod_deployment,
                              {"environment": prod, "target": release, "pinned_images": digests,
                               "approved_fingerprint": fp}, run_timeout_minutes, f"{me}-prod")
    finally:
        seconds["prod"] = time.monotonic() - t0
        pt.publish_timeline(release, f"approved by {who}", seconds)
    return {"release": release, "digests": digests, "fingerprint": fp, "approved_by": answer.approver,
            "prod_run": str(done.id), "seconds": seconds}
