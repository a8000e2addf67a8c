"""Serves `prefect.yaml`'s `upgrade-<environment>` and `recover-<environment>` deployments from this one process,
without work pools or workers (a single machine, and the tests), and keeps the automations that start recovery when
an upgrade run ends Crashed or Cancelled, and that mark Crashed a run gone silent (no heartbeat: its host died).

`prefect.yaml` is the one source of the deployments: their entrypoints, parameters, descriptions and tags are read
from it; only the work pool is dropped (a served deployment runs in this process). An environment that
`prefect.yaml` does not name is served from the template environment's entries (`staging`), with its name put in.
Serve or deploy an environment, not both: the two register the same deployment names.

In the UI: Deployments → `upgrade/upgrade-staging` → Run → Custom run: fill in `target` (a release tag such as
`v2.0.0`) and, to only see the plan and env diff, tick `dry_run` (ticked by default on `upgrade-prod`). The form has
no `environment`: the deployment's name fixes it. One run per environment at a time is enforced by
the stack's own lock (a kernel file lock on the host, shown in the UI as the global concurrency limit
`stackshift-<environment>`), not by a deployment concurrency limit: that one's lease, if lost (a Prefect server
restart), cancels the running flow, which must never happen mid-cutover.

It also serves the host's internal upgrade deployment, `promotion-<host>` (`--host NAME`, default `local`), whose
runs name their environment (what a promotion starts); every served environment's crash automation watches it too.

Run: `PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m deployments.serve [--host NAME] staging prod`
"""
from __future__ import annotations

import copy
import importlib
import re
import sys
from functools import cache
from pathlib import Path

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"
TEMPLATE_ENVIRONMENT = "staging"
SERVED_KINDS = ("upgrade", "recover")


@cache
def _prefect_yaml() -> dict:
    import yaml

    return yaml.safe_load(PREFECT_YAML.read_text())


def deployment_spec(kind: str, environment: str) -> dict:
    """`prefect.yaml`'s entry `<kind>-<environment>`, else the template environment's with the name put in
    (parameters, tags, description)."""
    by_name = {d["name"]: d for d in _prefect_yaml()["deployments"]}
    own = by_name.get(f"{kind}-{environment}")
    if own is not None:
        return copy.deepcopy(own)
    template = by_name.get(f"{kind}-{TEMPLATE_ENVIRONMENT}")
    if template is None:
        raise KeyError(f"prefect.yaml has neither {kind}-{environment} nor {kind}-{TEMPLATE_ENVIRONMENT}")
    spec = copy.deepcopy(template)
    word = re.compile(rf"\b{re.escape(TEMPLATE_ENVIRONMENT)}\b")
    spec["name"] = f"{kind}-{environment}"
    if "environment" in spec.get("parameters", {}):  # an upgrade deployment takes it from its name instead
        spec["parameters"] = {**spec["parameters"], "environment": environment}
    spec["tags"] = [environment if t == TEMPLATE_ENVIRONMENT else t for t in spec.get("tags", [])]
    spec["description"] = word.sub(environment, spec.get("description", ""))
    return spec


def _flow(entrypoint: str):
    path, attr = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), attr)


def to_deployment(kind: str, environment: str):
    """The served deployment (`RunnerDeployment`) of `prefect.yaml`'s entry; no work pool, no schedule."""
    spec = deployment_spec(kind, environment)
    return _flow(spec["entrypoint"]).to_deployment(
        name=spec["name"], parameters=spec.get("parameters") or {}, description=spec.get("description"),
        tags=spec.get("tags") or [])


def upgrade_deployment(environment: str):
    """The manual-upgrade deployment of one environment: the environment fixed by its name, `target` asked for."""
    return to_deployment("upgrade", environment)


def recover_deployment(environment: str):
    """Finishes or rolls back an interrupted upgrade of the environment (started by the crash automation)."""
    return to_deployment("recover", environment)


def automation_name(environment: str) -> str:
    return f"stackshift: recover {environment} after a crash"


def run_environment(environment: str) -> dict:
    """The `environment` the crashed run itself was given (its parameters), not the one the automation is named
    after: recovery follows the run (a promotion's run names it). A person's `upgrade-<env>` run has no such
    parameter (the deployment fixes it): then `environment`. Rendered by the Prefect server when the automation
    fires."""
    return {"__prefect_kind": "jinja",
            "template": "{{ flow_run.parameters.environment or '" + environment + "' }}"}


def ensure_recovery_automation(environment: str, upgrade_ids: list, recover_id) -> None:
    """(Re)creates the automation: a run of one of `upgrade_ids` (a person's `upgrade-<env>`, and the promotion's
    `promotion-<host>` on its host) ending Crashed (its process died) or Cancelled (a cancel's SIGTERM starts the
    rollback, but the runner kills the process 30 s later, possibly mid-rollback) → run recover-<environment> for
    the environment **the run named** (`run_environment`), which does nothing when no journal is open. The recover
    run hands the work to that environment's own `recover-` deployment when it lives on another host
    (flows/recover.py); when several automations fire for one promotion run, the stack's lock lets one recover."""
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    replace_automation(Automation(
        name=automation_name(environment),
        description=f"When a run of upgrade-{environment} ends Crashed or Cancelled, recover the environment it "
                    f"upgraded.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed", "prefect.flow-run.Cancelled"},
            match_related={"prefect.resource.id": [f"prefect.deployment.{i}" for i in upgrade_ids]},
            posture=Posture.Reactive, threshold=1,
        ),
        actions=[RunDeployment(source="selected", deployment_id=recover_id,
                               parameters={"environment": run_environment(environment)})],
    ))
    ensure_silence_automation(environment, upgrade_ids)


HEARTBEATS_MISSED = 3


def silence_name(environment: str) -> str:
    return f"stackshift: upgrade of {environment} gone silent"


def silence_seconds() -> int:
    """How long a run may send no heartbeat before it is taken for dead: three of this process's heartbeat periods
    (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, 180 s by default; the runs' own processes must share the setting)."""
    from prefect.settings import get_current_settings

    return HEARTBEATS_MISSED * (get_current_settings().flows.heartbeat_frequency or 180)


def ensure_silence_automation(environment: str, upgrade_ids: list) -> None:
    """Prefect's zombie detection, for this environment's upgrade runs: a run whose host or worker died sends no
    heartbeat and no final state, and would stay Running forever; after `silence_seconds()` of silence it is marked
    Crashed, which starts the crash automation's recovery (as soon as a worker of its pool is back)."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    window = silence_seconds()
    replace_automation(Automation(
        name=silence_name(environment),
        description=f"A run of upgrade-{environment} that sent no heartbeat for {window} s is marked Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"}, expect={"prefect.flow-run.*"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related={"prefect.resource.id": [f"prefect.deployment.{i}" for i in upgrade_ids]},
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=window)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=(
            f"No heartbeat for {window} s: its process, worker or host died (stackshift's zombie detection). The "
            f"crash automation recovers the environment it named."))],
    ))


def replace_automation(automation) -> None:
    """Creates `automation`, first deleting any of the same name (so a re-run replaces, never duplicates)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(name=automation.name):
            client.delete_automation(existing.id)
    automation.create()


SERVED_HOST = "local"  # this process is the one "host" of what it serves (`--host NAME` to name it)


def promotion_deployment(host: str = SERVED_HOST):
    """The internal upgrade deployment of a host, `promotion-<host>` (prefect.yaml's `promotion-staging` entry with
    the host's name): the CLI's `upgrade` flow, whose runs name their environment; a promotion starts it."""
    return to_deployment("promotion", host)


def main(environments: list[str], host: str = SERVED_HOST) -> None:
    from prefect import serve

    internal = promotion_deployment(host)
    internal_id = internal.apply()
    deployments = [internal]
    for env in environments:
        up, rec = upgrade_deployment(env), recover_deployment(env)
        ensure_recovery_automation(env, [up.apply(), internal_id], rec.apply())
        deployments += [up, rec]
    serve(*deployments)


if __name__ == "__main__":
    args = sys.argv[1:]
    served_host = SERVED_HOST
    if args[:1] == ["--host"]:
        served_host, args = args[1], args[2:]
    main(args or ["staging", "prod"], served_host)
