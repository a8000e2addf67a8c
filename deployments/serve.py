"""Serves one `upgrade-<environment>` deployment per stack environment, for manual runs from the Prefect UI.

In the UI: Deployments → `upgrade/upgrade-staging` → Run → Custom run: fill in `target` (a release tag such as
`v2.0.0`) and, to only see the plan and env diff, tick `dry_run`. Only one run per environment at a time: a
second one is cancelled at once (CANCEL_NEW), which is stackshift's deploy lock.

Run: `PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m deployments.serve staging prod`
"""
from __future__ import annotations

import sys

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.upgrade import upgrade


def upgrade_deployment(environment: str):
    """The manual-upgrade deployment of one environment: `environment` fixed, `target` asked for in the UI."""
    return upgrade.to_deployment(
        name=f"upgrade-{environment}",
        parameters={"environment": environment, "dry_run": False},
        description=f"Upgrade the `{environment}` stack to a release. Fill in `target` (e.g. v2.0.0); tick "
                    f"`dry_run` to publish only the plan and the env diff.",
        tags=["stackshift", environment],
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
    )


def main(environments: list[str]) -> None:
    serve(*(upgrade_deployment(env) for env in environments))


if __name__ == "__main__":
    main(sys.argv[1:] or ["staging", "prod"])
