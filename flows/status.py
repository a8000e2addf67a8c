"""The status flow: what an environment runs right now, read on its own host and published for other hosts.

A promotion runs on prod's host and cannot look at staging's engine; it asks this flow, on staging's pool, before
it trusts staging's last verified upgrade (a stack can be rolled back or redeployed outside stackshift since).
It changes nothing and takes no lock: it never waits behind an upgrade.
"""
from __future__ import annotations

from prefect import flow

from core import hosts
from flows import naming
from flows.upgrade import load_environment
from tasks.promotion import publish_running


@flow(name="status", flow_run_name="status of {environment}", log_prints=False)
def status(environment: str) -> dict:
    """Publish what an environment runs now (`<env>-running`): the commit of its compose checkout and each running
    service's image digest. Changes nothing.

    Args:
        environment: Name of the `stack-environment` block to look at (on this host).
    """
    naming.label_run(environment)
    cfg = load_environment(environment)
    hosts.check_host(cfg.stack.host, environment)
    return publish_running(cfg, environment)
