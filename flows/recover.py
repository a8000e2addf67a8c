"""The recover flow: under the environment's lock, finish or roll back a run whose runner died."""
from __future__ import annotations

from prefect import flow

from core import hosts
from core.cutover import faults
from flows import naming, runbook
from flows.upgrade import _run_id, load_environment
from prefect.runtime import flow_run
from tasks.dashboard import after_run
from tasks.locking import environment_lock


@flow(name="recover", flow_run_name="recover {environment}", log_prints=False, on_completion=[after_run],
      on_failure=[after_run])
def recover(environment: str) -> list[dict]:
    """Finish or roll back an interrupted upgrade of one environment, whichever is safe, and say which.

    Args:
        environment: Name of the `stack-environment` block whose interrupted run to recover.
    """
    faults.install_from_env()  # the fault-injection tests only (a served or worker's run is a process of its own)
    naming.label_run(environment)
    cfg = load_environment(environment)
    hosts.check_host(cfg.stack.host, environment)
    run_id = _run_id()
    with environment_lock(cfg, environment, run_id, flow_run.id):
        return runbook.recover_interrupted(cfg, environment, by=f"recover run {run_id}")
