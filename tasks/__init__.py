"""Prefect tasks of stackshift: thin wrappers that call `core` and publish artifacts."""
