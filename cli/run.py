"""`stackshift upgrade` and `stackshift plan`: run the upgrade flow (here, or on the environment's worker with
`--via-deployment`) and print it like a runbook: one line per phase with its duration, a live line during long
steps, then the summary (`cli.render`). `-v` shows the run's log lines too; `--json` prints one result object.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cli import render
from cli.live import Phases, ticking

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

EXIT_FAILED = 1
SWITCHES = (  # (flag, the one verb that has it or None for both, help)
    ("--accept-migration-risk", "upgrade",
     "go ahead despite data loss or a long lock-hold in the migration report (read it first)"),
    ("--force", "upgrade", "redeploy even when the target's commit, images and head revision are what runs "
                           "(otherwise that ends at once: already at the target, nothing stopped)"),
    ("--accept-env-conflicts", None, "go ahead although the merged .env leaves a service the target needs outside "
                                     "the active compose profiles (read the env diff first)"),
    ("--via-deployment", None, "run it on the environment's worker (deployment upgrade/upgrade-<environment>) "
                               "instead of in this process"),
    ("--watch", None, "with --via-deployment: follow the run to its end, printing its phases and summary"),
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for name, fn, helptext in (
        ("upgrade", upgrade_cmd, "back up, migrate once, cut over, verify; roll back on failure"),
        ("plan", plan_cmd, "pre-flight and plan only (a dry run): prints the plan, env diff and migration verdict, "
                           "changes nothing"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--environment", "-e", required=True, help="stack-environment block name, e.g. staging")
        p.add_argument("--target", "-t", required=True, help="release to deploy: tag, branch or commit, e.g. v2.0.0")
        for flag, only, says in SWITCHES:
            if only in (None, name):
                p.add_argument(flag, action="store_true", help=says)
        p.add_argument("--deployment", metavar="FLOW/NAME",
                       help="with --via-deployment: another deployment, e.g. a host's internal "
                            "upgrade/promotion-<host> (told the environment)")
        add_output_flags(p)
        p.set_defaults(fn=fn, dry_run=False, accept_migration_risk=False, force=False)


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also print the run's log lines (every command run, with timestamps)")
    p.add_argument("--json", action="store_true", help="print one machine-readable result object, nothing else")


def plan_cmd(args: argparse.Namespace) -> int:
    args.dry_run = True
    return upgrade_cmd(args)


def upgrade_cmd(args: argparse.Namespace) -> int:
    if args.via_deployment:
        return via_deployment(args)
    from core.errors import UpgradeError
    from flows.upgrade import upgrade

    from cli import observe

    phases = Phases(sys.stdout, sys.stdout.isatty() and not args.verbose, show=not args.json)
    phases.begin("pre-flight")
    started = time.time()
    result: dict[str, Any] = {}
    error: dict[str, str] = {}
    state = None
    with observe.in_process(phases) as seen, observe.console(phases, args.verbose), ticking(phases):
        try:
            state = upgrade(environment=args.environment, target=args.target, dry_run=args.dry_run,
                            accept_migration_risk=args.accept_migration_risk,
                            accept_env_conflicts=args.accept_env_conflicts, force=args.force, return_state=True)
            result = state.result()
        except UpgradeError as exc:
            error = {"name": type(exc).__name__, "message": str(exc)}
        except Exception as exc:  # not a condition stackshift names: say what it is, and what the journal says
            error = {"name": type(exc).__name__, "message": unexpected_failure(args.environment, exc, started)}
        phases.end("failed" if error else "ok")
    summary = summarise(args, seen, phases, Ended(result, error, run_url_of(state)))
    _print(summary, args.json)
    if error:
        message = error["message"] if error["message"].startswith("stackshift:") else \
            f"stackshift: {error['name']}: {error['message']}"
        print(message, file=sys.stderr)
        return EXIT_FAILED
    return 0


def _print(summary: render.RunSummary, as_json: bool) -> None:
    """The summary (the phase lines were printed as they ended), or the one JSON object."""
    print(render.as_json(summary) if as_json else render.text(summary, phases_shown=True), end="" if not as_json
          else "\n")


def run_url_of(state) -> str:
    flow_run_id = getattr(getattr(state, "state_details", None), "flow_run_id", None)
    if flow_run_id is None:
        return ""
    from tasks.promotion import run_url

    return run_url(flow_run_id)


@dataclass
class Ended:
    """How a run in this process ended: the flow's result, or the error (name, message); its URL."""

    result: dict[str, Any]
    error: dict[str, str]
    url: str


def summarise(args: argparse.Namespace, seen, phases: Phases, ended: Ended) -> render.RunSummary:
    """The summary of a run in this process, from what the hooks handed over and the flow's result."""
    result, error, url = ended.result, ended.error, ended.url
    outcome = "failed" if error else "already-at" if result.get("already_at") else \
        "planned" if args.dry_run else "upgraded"
    s = render.RunSummary(args.environment, args.target, args.dry_run, outcome, phases=phases.done,
                          seconds=phases.seconds, url=url, error=error, result=result,
                          migrations=seen.migrations or result.get("migrations") or {})
    plan = seen.plan
    if plan is None:
        return s
    f = plan.facts
    s.change = {"commit": f.current.commit, "target_commit": f.target.commit, "revision": list(f.database.revision),
                "heads": list(f.target.heads), "pending": list(f.target.pending_revisions)}
    if args.dry_run and not error and not f.differences():
        s.outcome = "already-at"
        return s
    s.env, s.env_counts = list(f.env_sync.rows), dict(f.env_sync.counts)
    s.env_copies = [{"path": c["path"], "rows": c["rows"]} for c in f.env_sync.copies if c.get("rows")]
    if args.dry_run:
        from core import report

        s.plan = render.plan_words(plan)
        s.rollback_point = report.rollback_point_line(f.rollback.forecast, f.rollback.method)
    s.downtime = result.get("downtime") or _journal_downtime(f.run.dir)
    return s


def _journal_downtime(run_dir: Path) -> dict[str, float]:
    """The downtime the run's journal measured (a failed run returns no result; its journal has the times)."""
    from core.cutover.journal import JOURNAL, Journal, downtime

    try:
        return downtime(Journal.load(Path(run_dir) / JOURNAL))
    except (OSError, ValueError, TypeError):
        return {}


# --- on the environment's worker --------------------------------------------------------------------------------
def via_deployment(args: argparse.Namespace) -> int:
    """Starts the environment's upgrade deployment on its worker; with --watch, follows it to its end."""
    from prefect.deployments import run_deployment

    from cli import observe
    from tasks.promotion import run_url

    name = args.deployment or f"upgrade/upgrade-{args.environment}"
    # `upgrade-<environment>` takes its environment from its name; another deployment (a host's internal
    # `promotion-<host>`) is told which environment to upgrade
    parameters: dict[str, Any] = {"target": args.target} | ({"environment": args.environment} if args.deployment
                                                            else {})
    parameters |= {k: True for k in ("dry_run", "accept_migration_risk", "accept_env_conflicts", "force")
                   if getattr(args, k)}
    # Prefect's sync-compatible functions are typed "result or coroutine"; called from sync code, a result.
    run = cast("FlowRun", run_deployment(name, parameters=parameters, timeout=0, as_subflow=False))
    if not args.json:
        print(f"Started {name} ({'plan' if args.dry_run else 'upgrade'} {args.environment} → {args.target}): "
              f"{run_url(run.id)}", flush=True)
    if not args.watch:
        if args.json:
            print(render.as_json(render.RunSummary(args.environment, args.target, args.dry_run, "started",
                                                   url=run_url(run.id))))
        return 0
    phases = Phases(sys.stdout, sys.stdout.isatty(), show=not args.json)
    with ticking(phases):
        state = observe.follow(run.id, phases)
        phases.end("ok" if state.is_completed() else "failed")
    summary = watched_summary(args, run.id, state, phases)
    _print(summary, args.json)
    if not state.is_completed():
        print(f"stackshift: the run ended {state.name}: {state.message or ''}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def watched_summary(args: argparse.Namespace, flow_run_id, state, phases: Phases) -> render.RunSummary:
    """The summary of a run on a worker, from what it published: the env diff's rows (masked), the verdict."""
    from tasks._common import artifact_key
    from tasks.promotion import APPROVAL_FACTS, rows_of, run_artifacts, run_url

    made = run_artifacts(flow_run_id)
    outcome = "failed" if not state.is_completed() else "planned" if args.dry_run else "upgraded"
    s = render.RunSummary(args.environment, args.target, args.dry_run, outcome, phases=phases.done,
                          seconds=phases.seconds, url=run_url(flow_run_id))
    if not state.is_completed():
        s.error = {"name": state.name, "message": state.message or ""}
    env_rows = made.get(artifact_key(args.environment, "env-diff-table"))
    s.env = rows_of(env_rows) if env_rows is not None else []
    facts = made.get(artifact_key(args.environment, APPROVAL_FACTS))
    if facts is not None:
        s.migrations = {"verdict": rows_of(facts)[0].get("verdict", "")}
    if s.outcome == "upgraded":
        s.downtime = {k: p.seconds for k, p in (("total", p) for p in phases.done if p.name.startswith("cutover"))}
    return s


# --- failures stackshift does not name ----------------------------------------------------------------------------
def prefect_failed(exc: BaseException) -> bool:
    """Whether the exception comes from Prefect or its HTTP client (the server went away, refused a call)."""
    return any(type(e).__module__.split(".")[0] in ("prefect", "httpx", "httpcore")
               for e in (exc, exc.__cause__, exc.__context__) if e is not None)


def unexpected_failure(environment: str, exc: BaseException, started: float, prefect_up: bool | None = None,
                       project_dir=None) -> str:
    """What to tell the operator about an exception stackshift does not name: the Prefect message only when Prefect
    failed; otherwise the exception as it is, the step and the stack's state per this run's journal, what to do."""
    if prefect_up is None:
        from tasks._common import api_reachable
        prefect_up = api_reachable()
    recover = f"`./stackshift recover -e {environment}`"
    if prefect_failed(exc) or not prefect_up:
        return (f"stackshift: the run could not be recorded in Prefect ({type(exc).__name__}: {exc}). The stack "
                f"itself is whole: its journal in the backup folder says how the run ended; {recover} gives the run "
                f"its final state once the server is back.")
    what = f"stackshift: the run failed with {type(exc).__name__}: {exc}"
    state = _journal_state(environment, started, project_dir, recover)
    return (f"{what}. {state} This is a condition stackshift does not name: fix the cause above (e.g. free disk "
            f"for `No space left on device`, permissions for `Permission denied`) and run again; report the message "
            f"so it gets its own error.")


def _journal_state(environment: str, started: float, project_dir, recover: str) -> str:
    """The stack's state per the journal this run wrote (none: it failed before its run folder was made)."""
    from core.cutover.journal import CLOSED, JOURNAL, Journal
    try:
        if project_dir is None:
            from flows.upgrade import load_environment
            cfg = load_environment(environment)
            project_dir = Path(cfg.backup.dir) / cfg.stack.project_name
        mine = [p for p in sorted(Path(project_dir).glob(f"*/{JOURNAL}")) if p.parent.stat().st_mtime >= started - 1]
        journal = Journal.load(mine[-1]) if mine else None
    except Exception as read_exc:  # the report must not fail on top of the failure
        return (f"Its journal could not be read ({type(read_exc).__name__}: {read_exc}); {recover} reads it and "
                f"puts the stack back if anything changed.")
    if journal is None:
        return "It failed before its run folder was made (pre-flight or the lock): nothing of the stack changed."
    step = journal.last
    at = f"at {step.phase} step {step.id!r} ({step.state})" if step else "before its first step"
    if journal.status in CLOSED:
        return (f"It stopped {at}; its journal {journal.path} says the run ended {journal.status}: "
                f"{journal.outcome or 'no outcome recorded'}.")
    return (f"It stopped {at}, and its journal {journal.path} is still open ({journal.status}): run {recover}, "
            f"which rolls the stack back or finishes the run, whichever is safe.")
