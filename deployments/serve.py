"""Serves, per stack environment, the `upgrade-<environment>` and `recover-<environment>` deployments, and keeps the
automation that starts recovery when an upgrade run ends Crashed.

In the UI: Deployments → `upgrade/upgrade-staging` → Run → Custom run: fill in `target` (a release tag such as
`v2.0.0`) and, to only see the plan and env diff, tick `dry_run`. One run per environment at a time is enforced by
the stack's own lock (a kernel file lock on the host, shown in the UI as the global concurrency limit
`stackshift-<environment>`), not by a deployment concurrency limit: that one's lease, if lost (a Prefect server
restart), cancels the running flow, which must never happen mid-cutover.

Run: `PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m deployments.serve staging prod`
"""
from __future__ import annotations

import sys

from prefect import serve

from flows.recover import recover
from flows.upgrade import upgrade


def upgrade_deployment(environment: str):
    """The manual-upgrade deployment of one environment: `environment` fixed, `target` asked for in the UI."""
    return upgrade.to_deployment(
        name=f"upgrade-{environment}",
        parameters={"environment": environment, "dry_run": False},
        description=f"Upgrade the `{environment}` stack to a release. Fill in `target` (e.g. v2.0.0); tick "
                    f"`dry_run` to publish only the plan, the env diff and the migration report.",
        tags=["stackshift", environment],
    )


def recover_deployment(environment: str):
    """Finishes or rolls back an interrupted upgrade of the environment (started by the crash automation)."""
    return recover.to_deployment(
        name=f"recover-{environment}",
        parameters={"environment": environment},
        description=f"Finish or roll back an interrupted upgrade of `{environment}`, whichever is safe. Started by "
                    f"the automation `{automation_name(environment)}` when an upgrade run ends Crashed.",
        tags=["stackshift", environment, "recovery"],
    )


def automation_name(environment: str) -> str:
    return f"stackshift: recover {environment} after a crash"


def ensure_recovery_automation(environment: str, upgrade_id, recover_id) -> None:
    """(Re)creates the automation: an upgrade run of this environment ending Crashed (its process died) or Cancelled
    (a cancel's SIGTERM starts the rollback, but the runner kills the process 30 s later, possibly mid-rollback) →
    run recover-<env>, which does nothing when no journal is open."""
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    from prefect.client.orchestration import get_client

    name = automation_name(environment)
    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(name=name):
            client.delete_automation(existing.id)
    Automation(
        name=name,
        description=f"When an upgrade of {environment} ends Crashed or Cancelled, recover it.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed", "prefect.flow-run.Cancelled"},
            match_related={"prefect.resource.id": f"prefect.deployment.{upgrade_id}"},
            posture=Posture.Reactive, threshold=1,
        ),
        actions=[RunDeployment(source="selected", deployment_id=recover_id, parameters={"environment": environment})],
    ).create()


def main(environments: list[str]) -> None:
    deployments = []
    for env in environments:
        up, rec = upgrade_deployment(env), recover_deployment(env)
        ensure_recovery_automation(env, up.apply(), rec.apply())
        deployments += [up, rec]
    serve(*deployments)


if __name__ == "__main__":
    main(sys.argv[1:] or ["staging", "prod"])
