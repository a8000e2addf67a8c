"""Shared task settings."""
from prefect.cache_policies import NONE

# Tasks take live objects (blocks with secrets, the runner); never cache or hash them.
TASK_DEFAULTS = {"cache_policy": NONE, "persist_result": False}
