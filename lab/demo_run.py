"""The demo upgrade: a v1 deployment of the demo stack with seeded data, upgraded to v2 by stackshift."""
from __future__ import annotations

import argparse
import os
import shutil
import time

from blocks.stack_environment import StackEnvironment
from lab import stack
from lab.paths import LAB_HOME

DEMO_ROOT = LAB_HOME / "demo"
NAME = "demo"


def reset() -> None:
    if (DEMO_ROOT / NAME).exists():
        stack.Deployment(NAME, DEMO_ROOT / NAME, DEMO_ROOT / "backups", 0, 0, "").down()
    shutil.rmtree(DEMO_ROOT, ignore_errors=True)
    DEMO_ROOT.mkdir(parents=True)


def promote_demo(release: str, rows: int, approver: str | None) -> None:
    """Staging (first engine) and prod (the prod engine) at v1, saved as the blocks `staging` and `prod`; the
    `promote-staging-to-prod` deployment runs on the workers lab/setup started; the approval is yours to give."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from deployments.approve import decide
    from tasks.promotion import run_url, ui_url

    root = LAB_HOME / "promote-demo"
    for name, engine in (("staging", None), ("prod", stack.PROD_ENGINE)):
        if (root / name).exists():
            stack.Deployment(name, root / name, root / "backups", 0, 0, "", engine).down()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.monotonic()
    for name, engine in (("staging", None), ("prod", stack.PROD_ENGINE)):
        print(f"[demo] deploying {name} at v1.0.0 with {rows:,} rows on {engine or 'the local engine'}", flush=True)
        dep = stack.create(root, name, "v1.0.0", rows, docker_host=engine)
        StackEnvironment(**(dep.block_fields() | {"host": name})).save(name, overwrite=True)
    run = run_deployment("promote/promote-staging-to-prod", parameters={"release": release}, timeout=0,
                         as_subflow=False)
    print(f"[demo] promotion of {release} started: {run_url(run.id)}", flush=True)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
        while not (state.is_paused() or state.is_final()):
            time.sleep(2)
            state = client.read_flow_run(run.id).state
        if state.is_paused():
            print(f"[demo] staging is upgraded; prod is planned. Review the summary and prod's env diff at "
                  f"{ui_url()}/artifacts, then approve the run: ⋮ → Resume at {run_url(run.id)}, or", flush=True)
            print(f"[demo]   PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m deployments.approve "
                  f"{run.id} --approver YOUR-NAME   (add --reject to reject)", flush=True)
            if approver:
                decide(str(run.id), approver, True, "approved by ./lab/run-demo --promote --approve-as")
                print(f"[demo] approved as {approver}", flush=True)
        while not state.is_final():
            time.sleep(2)
            state = client.read_flow_run(run.id).state
    print(f"[demo] promotion: {state.name}: {state.message or ''}")
    from tasks.promotion import run_artifacts

    timeline = run_artifacts(run.id).get("promotion-timeline")
    if timeline is not None:
        print(f"[demo] wall time by phase: {timeline.data}")
    print(f"[demo] total demo time {time.monotonic() - t0:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description="Deploy the demo stack at v1 and upgrade it to v2 with stackshift.")
    parser.add_argument("--rows", type=int, help="events rows seeded at v1 (default 1,000,000; 100,000 with --promote)")
    parser.add_argument("--target", default="v2.0.0", help="release to upgrade to (v2.0.0, v3.0.0, v3.0.0-unhealthy)")
    parser.add_argument("--promote", action="store_true",
                        help="show a staging → prod promotion instead (two engines, two workers, an approval)")
    parser.add_argument("--approve-as", metavar="NAME", help="with --promote: approve at once as NAME")
    args = parser.parse_args()
    if args.promote:
        promote_demo(args.target, args.rows or 100_000, args.approve_as)
        return
    args.rows = args.rows or 1_000_000

    t0 = time.monotonic()
    reset()
    print(f"[demo] deploying the demo stack v1.0.0 with {args.rows:,} seeded rows in {DEMO_ROOT / NAME}", flush=True)
    dep = stack.create(DEMO_ROOT, NAME, "v1.0.0", args.rows)
    StackEnvironment(**dep.block_fields()).save("demo", overwrite=True)
    before = stack.checksums(dep)

    from flows.upgrade import upgrade

    print(f"[demo] upgrading environment 'demo' to {args.target} (Prefect flow 'upgrade')", flush=True)
    state = upgrade(environment="demo", target=args.target, return_state=True)
    after = stack.checksums(dep)
    print()
    print(f"[demo] flow run: {state.name}: {state.message or ''}")
    print(f"[demo] api now reports: {dep.api_health()}")
    print(f"[demo] seeded data identical: {after == before} ({after['events'][0]:,} events)")
    if state.is_completed():
        result = state.result()
        print(f"[demo] downtime: {result['downtime']['total']:.2f} s ({result['downtime']})")
        print(f"[demo] backup: {result['backup']}")
        m = result["migrations"]
        print(f"[demo] migration pre-flight: {m['pending']} pending revision(s); writes blocked at most "
              + ", ".join(f"{t} {s:.1f} s" for t, s in m.get("lock_hold", {}).items() if s) + " (forecast, high)")
    api = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api").removesuffix("/api")
    print(f"[demo] artifacts (plan, env diff, migrations, backup manifest, timeline, verification): {api}/artifacts")
    print(f"[demo] the run: {api}/runs   |   the stack: {DEMO_ROOT / NAME} (docker compose -p {NAME} ps)")
    print(f"[demo] total demo time {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()
