"""The `stack-environment` block: everything stackshift needs to know about one deployed stack, in groups."""
from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, model_validator

from core.settings import (BackupSettings, DatabaseSettings, HealthSettings, HttpCheck, MigrationSettings,
                           RegistrySettings, RollbackPointSettings, Settings, StackSettings, WriterSettings,
                           nest_flat_fields)

__all__ = ["HttpCheck", "StackEnvironment"]


class StackEnvironment(Block):
    """A docker-compose stack deployed from a git checkout, with an Alembic-migrated PostgreSQL database.

    One block per environment (for example `stack-environment/staging` and `stack-environment/prod`). Its fields are
    groups (the UI shows each as a sub-form): `stack`, `database`, `writers`, `migration`, `health`, `registry`,
    `rollback_point`, `backup`. Secrets are `SecretStr` and are unwrapped only where a connection is made; they reach
    `pg_dump` through its environment, never its argv. A run reads the block once, as one frozen `Settings`.

    Example:
        ```python
        from blocks.stack_environment import StackEnvironment

        staging = StackEnvironment.load("staging")
        print(staging.stack.compose_dir, staging.database.name)
        ```
    """

    _block_type_name = "Stack Environment"
    _block_type_slug = "stack-environment"
    _logo_url = None  # no picture fetched from the internet: hosts here may have none
    _documentation_url = None  # no link: the reference is docs/ in the checkout, which the UI cannot open
    _description = "One docker-compose stack with an Alembic-migrated PostgreSQL database, upgraded by stackshift."

    stack: StackSettings = Field(description="Where the stack lives: git checkout, compose project, env files, engine.")
    database: DatabaseSettings = Field(description="The PostgreSQL server, its databases and the role stackshift uses.")
    writers: WriterSettings = Field(default_factory=WriterSettings,
                                    description="The services that write to the database (stopped for the cutover).")
    migration: MigrationSettings = Field(default_factory=MigrationSettings,
                                         description="How the app migrates, how its SQL is rendered, the risk gate.")
    health: HealthSettings = Field(default_factory=HealthSettings,
                                   description="What must hold after an upgrade or a rollback.")
    registry: RegistrySettings = Field(default_factory=RegistrySettings,
                                       description="The registry login before any pull, if one is needed.")
    rollback_point: RollbackPointSettings = Field(default_factory=RollbackPointSettings,
                                                  description="How the databases are put back after a failure.")
    backup: BackupSettings = Field(description="Where backups, the stack's lock and its run journals go.")
    command_timeout_seconds: int = Field(
        default=600, description="How long any one docker, compose, git or pg command may run before it is killed.")

    @model_validator(mode="before")
    @classmethod
    def _group_flat_fields(cls, data: Any) -> Any:
        """A block saved before the fields were grouped (or flat keyword arguments) still loads."""
        return nest_flat_fields(data)

    def settings(self) -> Settings:
        """The frozen settings a run reads, built once from this block."""
        return Settings(stack=self.stack, database=self.database, writers=self.writers, migration=self.migration,
                        health=self.health, registry=self.registry, rollback_point=self.rollback_point,
                        backup=self.backup, command_timeout_seconds=self.command_timeout_seconds)
