"""`./stackshift`: plan and run upgrades of compose stacks (and more commands, added per feature).

Heavy imports (Prefect) happen inside the commands that need them, so light commands stay fast.
"""
from __future__ import annotations

import argparse
import json
import sys


def _upgrade(args: argparse.Namespace) -> int:
    from core.errors import UpgradeError
    from flows.upgrade import upgrade

    try:
        result = upgrade(environment=args.environment, target=args.target, dry_run=args.dry_run)
    except UpgradeError as exc:
        print(f"stackshift: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _plan(args: argparse.Namespace) -> int:
    args.dry_run = True
    return _upgrade(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stackshift",
        description="Safe, reviewable, reversible upgrades of docker-compose stacks with an Alembic-migrated "
                    "PostgreSQL. Environments are Prefect blocks (stack-environment/<name>); runs and their "
                    "artifacts show in the Prefect UI (http://127.0.0.1:4200 in the lab).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, helptext in (
        ("upgrade", _upgrade, "back up, migrate once, cut over, verify; roll back on failure"),
        ("plan", _plan, "pre-flight and plan only (a dry run): publishes the plan and env diff, changes nothing"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--environment", "-e", required=True, help="stack-environment block name, e.g. staging")
        p.add_argument("--target", "-t", required=True, help="release to deploy: tag, branch or commit, e.g. v2.0.0")
        p.set_defaults(fn=fn, dry_run=False)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
