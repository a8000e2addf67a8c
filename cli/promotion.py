"""`stackshift promote`, `approve` and `reject`: start a staging → prod promotion on its deployment, and decide a
paused one from the terminal (the Prefect UI's Resume form does the same).

Approving needs the fingerprint of the plan you reviewed (`--fingerprint`, at least its first 12 characters): it
must be the one the promotion's summary shows, or nothing is sent. Rejecting needs none: it changes nothing.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, cast
from uuid import UUID

from cli.live import Phases, ticking

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

PROMOTE = "promote/promote-staging-to-prod"
MIN_FINGERPRINT = 12


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("promote", help="promote a release: upgrade staging, plan prod, wait for an approval",
                       description="Starts the promotion deployment (on prod's worker): staging is upgraded and "
                                   "verified, prod planned with staging's digests, then the run waits for a person's "
                                   "decision (`stackshift approve` / `reject`, or the UI's Resume form).")
    p.add_argument("--release", "-r", help="the release tag, e.g. v2.0.0 (default: the deployment's rule)")
    p.add_argument("--deployment", default=PROMOTE, metavar="FLOW/NAME", help=f"default {PROMOTE}")
    p.add_argument("--watch", action="store_true", help="follow it until it waits for the approval or ends")
    p.set_defaults(fn=promote_cmd)
    for verb, helptext in (("approve", "approve a paused promotion: prod is upgraded to staging's digests"),
                           ("reject", "reject a paused promotion: prod and staging stay as they are")):
        p = sub.add_parser(verb, help=helptext, description=helptext + ". Without RUN, the one paused promotion.")
        p.add_argument("run", nargs="?", metavar="RUN", help="the promotion's flow run id")
        p.add_argument("--approver", required=True, help="who decides (recorded with the decision)")
        p.add_argument("--comment", default="", help="why (recorded with the decision)")
        if verb == "approve":
            p.add_argument("--fingerprint", required=True,
                           help=f"the fingerprint of the plan you reviewed (the summary's; at least its first "
                                f"{MIN_FINGERPRINT} characters)")
        p.add_argument("--watch", action="store_true", help="follow the promotion to its end")
        p.set_defaults(fn=decide_cmd, verb=verb, fingerprint=None)


def fingerprint_matches(given: str, expected: str) -> bool:
    """Whether the fingerprint the approver gives is the summary's (whole, or its first 12+ characters)."""
    given = given.strip().lower()
    return len(given) >= MIN_FINGERPRINT and expected.lower().startswith(given)


def paused_promotions() -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,
                                                FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return list(client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["promote"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.PAUSED])))))


def decide_cmd(args: argparse.Namespace) -> int:
    from deployments.approve import resume, summary_fingerprint
    from tasks.promotion import run_url

    run_id = args.run
    if not run_id:
        found = paused_promotions()
        if len(found) != 1:
            listed = "; ".join(f"{r.id} ({r.name})" for r in found) or "none"
            print(f"stackshift {args.verb}: give the promotion's run id: {len(found)} promotion(s) wait for a "
                  f"decision ({listed})", file=sys.stderr)
            return 2
        run_id = str(found[0].id)
    expected = summary_fingerprint(run_id)
    if args.verb == "approve" and not fingerprint_matches(args.fingerprint, expected):
        print(f"stackshift approve: the fingerprint you reviewed ({args.fingerprint}) is not the one this promotion "
              f"asks you to approve ({expected}): its plan is not the one you read. Read the summary again: "
              f"{run_url(run_id)}. Nothing was sent.", file=sys.stderr)
        return 2
    resume(run_id, {"decision": args.verb, "approver": args.approver, "comment": args.comment,
                    "fingerprint": expected})
    print(f"{'Approved' if args.verb == 'approve' else 'Rejected'} by {args.approver}: {run_url(run_id)}")
    return _watch(run_id, stop_when_paused=False) if args.watch else 0


def promote_cmd(args: argparse.Namespace) -> int:
    from prefect.deployments import run_deployment

    from tasks.promotion import run_url

    # Prefect's sync-compatible functions are typed "result or coroutine"; called from sync code, a result.
    run = cast("FlowRun", run_deployment(args.deployment, parameters={"release": args.release} if args.release
                                         else {}, timeout=0, as_subflow=False))
    print(f"Started {args.deployment}: {run_url(run.id)}", flush=True)
    return _watch(str(run.id), stop_when_paused=True) if args.watch else 0


def _watch(run_id: str, stop_when_paused: bool) -> int:
    """Follows the promotion's state (a live line), then prints how it ended or, paused, what to review and how to
    decide."""
    from prefect.client.orchestration import get_client

    from tasks.promotion import run_artifacts

    phases = Phases(sys.stdout, sys.stdout.isatty())
    with ticking(phases), get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(UUID(run_id)).state
            if state is not None:
                phases.begin({"PAUSED": "waiting for the approval"}.get(state.type.value, (state.name or "").lower()))
            if state is not None and (state.is_final() or (stop_when_paused and state.is_paused())):
                break
            time.sleep(3)
    phases.end("ok" if state.is_completed() or state.is_paused() else "failed")
    if state.is_paused():
        summary = run_artifacts(run_id).get("promotion-summary")
        if summary is not None:
            print("\n" + str(summary.data).strip())
        print(f"\nDecide: stackshift approve {run_id} --approver NAME --fingerprint FINGERPRINT"
              f"\n    or: stackshift reject {run_id} --approver NAME --comment WHY")
        return 0
    print(f"\nPromotion {state.name}: {state.message or ''}")
    return 0 if state.is_completed() else 1
