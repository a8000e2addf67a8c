"""Prefect blocks of stackshift: typed, per-environment configuration. No workflow logic lives here."""
from blocks.stack_environment import HttpCheck, StackEnvironment

__all__ = ["HttpCheck", "StackEnvironment"]
