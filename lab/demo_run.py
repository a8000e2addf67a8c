"""The demo upgrade: a v1 deployment of the demo stack with seeded data, upgraded to v2 by stackshift."""
from __future__ import annotations

import argparse
import os
import shutil
import time

from blocks.stack_environment import StackEnvironment
from lab import stack

DEMO_ROOT = stack.LAB_HOME / "demo"
NAME = "demo"


def reset() -> None:
    if (DEMO_ROOT / NAME).exists():
        stack.Deployment(NAME, DEMO_ROOT / NAME, DEMO_ROOT / "backups", 0, 0, "").down()
    shutil.rmtree(DEMO_ROOT, ignore_errors=True)
    DEMO_ROOT.mkdir(parents=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Deploy the demo stack at v1 and upgrade it to v2 with stackshift.")
    parser.add_argument("--rows", type=int, default=1_000_000, help="events rows seeded at v1 (default 1,000,000)")
    parser.add_argument("--target", default="v2.0.0", help="release to upgrade to (v2.0.0, v3.0.0, v3.0.0-unhealthy)")
    args = parser.parse_args()

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
