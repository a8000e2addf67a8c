"""Shared task settings, and the bridge that puts stackshift's own log lines into the run's logs."""
from __future__ import annotations

import logging
from typing import TypedDict

from prefect.cache_policies import NONE, CachePolicy
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler


class TaskDefaults(TypedDict):
    """The `@task` options every stackshift task shares (typed, so `**TASK_DEFAULTS` checks against `task`)."""
    cache_policy: CachePolicy
    persist_result: bool


# Tasks take live objects (blocks with secrets, the step context); never cache or hash them.
TASK_DEFAULTS: TaskDefaults = {"cache_policy": NONE, "persist_result": False}


def api_reachable(timeout: float = 2.0) -> bool:
    """Whether the Prefect server answers now. Best-effort extras (progress, reports, the UI's lock slot) ask first:
    the Prefect client retries a dead server for about a minute per call, which must never stall a cutover."""
    import urllib.request

    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return True  # an ephemeral in-process server
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout):
            return True
    except OSError:
        return False


def set_state_if_open(flow_run_id: str, state) -> None:
    """Gives a flow run `state` unless it already has a final one; best effort (never raises)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(UUID(flow_run_id)).state
            # a final state (Crashed and Cancelled included) is left as it is: setting it again would fire the crash
            # automation a second time
            if current is None or current.type.value not in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
                client.set_flow_run_state(flow_run_id, state, force=True)
    except Exception as exc:
        logging.getLogger("stackshift").warning("Could not update flow run %s (%s)", flow_run_id, type(exc).__name__)


def artifact_key(environment: str, what: str) -> str:
    return f"{environment}-{what}".lower().replace("_", "-")


class _InARun(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def send_stackshift_logs_to_runs() -> None:
    """Attaches Prefect's API log handler to the `stackshift` logger (once): inside a flow or task run, every step's
    log line (commands run, durations, failures) shows in that run's logs in the UI."""
    logger = logging.getLogger("stackshift")
    if any(isinstance(h, APILogHandler) for h in logger.handlers):
        return
    handler = APILogHandler()
    handler.addFilter(_InARun())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


send_stackshift_logs_to_runs()
