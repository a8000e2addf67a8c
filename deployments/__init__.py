"""Prefect deployments of stackshift."""
