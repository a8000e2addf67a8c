"""The recover flow: under the environment's lock, finish or roll back a run whose runner died."""
from __future__ import annotations

from typing import cast

from prefect import flow

from core import hosts
from core.cutover import faults
from core.errors import HandedOverRecoveryFailed
from flows import naming, runbook
from flows.upgrade import _run_id, load_environment
from prefect.runtime import deployment, flow_run
from tasks.dashboard import after_run
from tasks.locking import environment_lock

HAND_OVER_SECONDS = 3600  # the other host's recovery: a rollback's restore and health waits, with a margin


@flow(name="recover", flow_run_name="recover {environment}", log_prints=False, on_completion=[after_run],
      on_failure=[after_run])
def recover(environment: str) -> list[dict]:
    """Finish or roll back an interrupted upgrade of one environment, whichever is safe, and say which.

    Args:
        environment: Name of the `stack-environment` block whose interrupted run to recover (the crash automation
            passes the one the crashed run named, whichever deployment ran it).
    """
    faults.install_from_env()  # the fault-injection tests only (a served or worker's run is a process of its own)
    naming.label_run(environment)
    cfg = load_environment(environment)
    if deployment.id and cfg.stack.host and cfg.stack.host != hosts.this_host():
        return hand_over(environment)
    hosts.check_host(cfg.stack.host, environment)
    run_id = _run_id()
    with environment_lock(cfg, environment, run_id, flow_run.id, recovery=True, wait_seconds=HAND_OVER_SECONDS):
        return runbook.recover_interrupted(cfg, environment, by=f"recover run {run_id}")


def hand_over(environment: str) -> list[dict]:
    """A deployment's recover run on another host than the environment's (the crash automation of one environment's
    upgrade deployment, whose run upgraded another): the environment's own `recover-<environment>` runs on its host
    (that host's worker); this run waits for it and says what it did."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    run = cast(FlowRun, run_deployment(f"recover/recover-{environment}", parameters={"environment": environment},
                                       timeout=HAND_OVER_SECONDS))
    state = run.state
    if state is None or not state.is_completed():
        raise HandedOverRecoveryFailed(environment, str(run.id), str(state.name) if state else "without a state")
    return [{"run": "", "action": "handed over", "reason": f"{environment} runs on another host",
             "outcome": f"recover-{environment} ran it there (flow run {run.id}): {state.message or state.name}"}]
