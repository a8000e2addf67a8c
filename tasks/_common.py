"""Shared task settings, and the bridge that puts stackshift's own log lines into the run's logs."""
from __future__ import annotations

import logging

from prefect.cache_policies import NONE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler

# Tasks take live objects (blocks with secrets, the step context); never cache or hash them.
TASK_DEFAULTS = {"cache_policy": NONE, "persist_result": False}


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
