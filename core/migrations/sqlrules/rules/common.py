"""Remedy text more than one rule gives."""

LOCK_TIMEOUT_RETRY = "set a short lock_timeout (e.g. '2s') and retry"
