"""Prefect flows of stackshift."""
