"""The `stack-environment` block: everything stackshift needs to know about one deployed stack."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import BaseModel, Field, SecretStr


class HttpCheck(BaseModel):
    """One HTTP check that must pass after an upgrade (and after a rollback)."""

    name: str = Field(description="Name shown in the verification report.")
    url: str = Field(description="URL to GET, on 127.0.0.1 or another address stackshift can reach.")
    expect_status: int = Field(default=200, description="HTTP status the check expects.")
    expect_version_field: str | None = Field(
        default=None,
        description="JSON field that must equal the target's app version, if set (for example `version`).",
    )
    expect_body: str | None = Field(
        default=None,
        description="Plain-text body the check expects (surrounding whitespace ignored), if set (MLflow's /health: `OK`).",
    )
    expect_version_in_body: bool = Field(
        default=False,
        description="The whole body (plain text, surrounding whitespace ignored) must equal the target's app version "
                    "(MLflow's /version).",
    )


class StackEnvironment(Block):
    """A docker-compose stack deployed from a git checkout, with an Alembic-migrated PostgreSQL database.

    One block per environment (for example `stack-environment/staging` and `stack-environment/prod`).
    Secrets are `SecretStr` and are unwrapped only where a connection is made; they reach `pg_dump` through
    its environment, never its argv.

    Example:
        ```python
        from blocks.stack_environment import StackEnvironment

        staging = StackEnvironment.load("staging")
        print(staging.compose_dir, staging.project_name)
        ```
    """

    _block_type_name = "Stack Environment"
    _block_type_slug = "stack-environment"
    _logo_url = "https://raw.githubusercontent.com/docker-library/docs/master/docker/logo.png"
    _documentation_url = "https://github.com/stackshift/stackshift#blocks"
    _description = "One docker-compose stack with an Alembic-migrated PostgreSQL database, upgraded by stackshift."

    compose_dir: Path = Field(description="Git checkout holding the compose files and `.env` of the stack.")
    project_name: str = Field(description="Compose project name (`docker compose -p`).")
    compose_files: list[str] = Field(
        default_factory=lambda: ["docker-compose.yaml"], description="Compose files, relative to `compose_dir`."
    )
    env_file: str = Field(default=".env", description="The operator's env file, relative to `compose_dir`.")
    env_template: str = Field(
        default=".env.example", description="The env template tracked in git, relative to `compose_dir`."
    )
    docker_host: str | None = Field(
        default=None, description="Docker engine to talk to (`DOCKER_HOST`); the local engine if unset."
    )
    host: str | None = Field(
        default=None,
        description="The host whose Docker engine and compose directory this environment is (e.g. `prod`): its flows "
                    "refuse to run anywhere else. A host is named by `$STACKSHIFT_HOST` in its worker's environment, "
                    "else its hostname. Unset: any host.")
    db_host: str = Field(default="127.0.0.1", description="Host where stackshift reaches PostgreSQL.")
    db_port: int = Field(default=5432, description="Port where stackshift reaches PostgreSQL.")
    db_name: str = Field(description="The app's database, migrated by Alembic.")
    extra_databases: list[str] = Field(
        default_factory=list, description="Other databases on the same server to back up and restore (e.g. a plugin DB)."
    )
    db_user: str = Field(description="PostgreSQL role with CREATEDB (for the rollback point).")
    db_password: SecretStr = Field(description="Password of `db_user`.")
    db_services: list[str] = Field(
        default_factory=lambda: ["db", "db_postgres"],
        description="Compose services that run the database, in any release (a rename is expected).",
    )
    writer_services: list[str] = Field(
        default_factory=lambda: ["api", "worker"],
        description="Services that write to the database; they are stopped before the rollback point.",
    )
    migrate_service: str = Field(default="api", description="Service whose image runs the migration, once.")
    migrate_command: list[str] = Field(
        default_factory=lambda: ["python3", "-m", "alembic", "upgrade", "head"], description="The migration command in that image."
    )
    migrations_path: str = Field(
        default="/app/migrations/versions",
        description="Folder of the Alembic revision files inside the migrate image (Dify: /app/api/migrations/versions); "
                    "read without running anything.",
    )
    render_sql_command: list[str] | None = Field(
        default_factory=lambda: ["python3", "-m", "alembic", "upgrade", "{range}", "--sql"],
        description="Command in the target image that prints the pending SQL offline; `{range}` becomes FROM:TO "
                    "(Dify: [\"flask\", \"db\", \"upgrade\", \"{range}\", \"--sql\"]). Runs with no network. "
                    "None: the app cannot render offline (the rehearsal, if set, covers every revision).",
    )
    rehearsal_command: list[str] | None = Field(
        default=None,
        description="The target's migration command pointed at another database, `{database}` standing for its name "
                    "(MLflow: [\"mlflow\", \"db\", \"upgrade\", \"postgresql+psycopg2://mlflow@db:5432/{database}\"]). "
                    "Set, it runs when offline rendering fails or covers only part of the range: in a one-off "
                    "container of the target image, against a throw-away copy of the live schema, and the statements "
                    "it executes are analysed. Needs a superuser role (it sets `log_statement` on that database). "
                    "None: no rehearsal.",
    )
    rehearsal_env: SecretDict = Field(
        default_factory=lambda: SecretDict({}),
        description="Environment for the rehearsal's container, `{database}` standing for the throw-away database "
                    "(for apps that read the database name, or a whole URL with its password, from a variable: "
                    "{\"DB_DATABASE\": \"{database}\"}). Secret: masked in the UI, passed to the container by name.",
    )
    max_lock_seconds: float = Field(
        default=60.0,
        description="Stop the upgrade before any change when the forecast says writes to a table would be blocked "
                    "longer than this.",
    )
    migration_probe: bool = Field(
        default=True,
        description="Calibrate the forecast with a short probe on the server (a scratch table of about 40 MB in "
                    "a throw-away schema, dropped afterwards). Off: effects and sizes only, no durations.",
    )
    migration_switch: str | None = Field(
        default="MIGRATION_ENABLED",
        description="Variable that turns entrypoint migrations off for long-running services. None: the app migrates "
                    "when it starts and has no switch (MLflow); stackshift's own one-off migration still runs first, "
                    "with the writers stopped, so the start finds the database at the head and migrates nothing.",
    )
    version_command: list[str] | None = Field(
        default=None,
        description="Command run in the migrate service's container after the upgrade (`docker compose exec`) whose "
                    "output must name the target's app version as a whole word (e.g. [\"mlflow\", \"--version\"]).",
    )
    stop_timeouts: dict[str, int] = Field(
        default_factory=dict,
        description="Seconds a writer service may take to stop before the engine kills it, per service; services not "
                    "named use their compose `stop_grace_period` (10 s by default).",
    )
    http_checks: list[HttpCheck] = Field(default_factory=list, description="HTTP checks run after an upgrade.")
    health_timeout_seconds: int = Field(default=120, description="How long services may take to turn healthy.")
    registry: str | None = Field(
        default=None, description="Registry host to log in to before any pull (e.g. `registry.example.com`), if it "
                                  "needs a login.")
    registry_username: str | None = Field(default=None, description="Registry user, if the registry needs a login.")
    registry_password: SecretStr | None = Field(default=None, description="Registry password, if needed.")
    command_timeout_seconds: int = Field(
        default=600, description="How long any one docker, compose, git or pg command may run before it is killed.")
    migration_timeout_seconds: int = Field(
        default=3600, description="How long the migration (and each pg_dump or archive) may run before it is killed.")
    keep_failed_database: bool = Field(
        default=False, description="After a rollback, keep the failed database state as `<db>__ss_failed_<run>` for "
                                   "inspection instead of dropping it.")
    rollback_point: Literal["auto", "file-copy", "pitr", "snapshot-command"] = Field(
        default="auto",
        description="How the rollback point is taken. `auto`: FILE_COPY copies of the databases while that stays within "
                    "file_copy_max_seconds of downtime (forecast from their size and a measured copy rate), else PITR "
                    "(online base backup + replication slot + a named restore point at the cutover: constant time), "
                    "else FILE_COPY. `pitr` needs wal_level=replica, a role with REPLICATION (or superuser), PGDATA in "
                    "a sub-directory of a mount on this host. `snapshot-command`: the two commands below.")
    file_copy_max_seconds: float = Field(
        default=0.3, description="`auto` takes FILE_COPY while its forecast downtime stays within this many seconds "
                                 "(its fixed cost, two checkpoints, is already about 0.2 s; PITR's restore point is "
                                 "constant, about 0.05 s).")
    snapshot_command: list[str] = Field(
        default_factory=list, description="For a managed database: argv that takes a provider snapshot named `{point}` "
                                          "(run with the writers stopped). Sets rollback_point to snapshot-command.")
    snapshot_restore_command: list[str] = Field(
        default_factory=list, description="argv that restores the snapshot `{point}` over the database (on rollback).")
    dump_jobs: int | None = Field(
        default=None, description="Parallel jobs of `pg_dump -Fd` (default: the cores of this host, at most 4).")
    backup_dir: Path = Field(description="Where backups go (one folder per run, files 0600); the stack's lock and run "
                                         "journals live there too.")
    backup_retention: int = Field(default=5, description="How many backups of this project to keep.")
    secret_env_keys: list[str] = Field(
        default_factory=list, description="More env keys whose values are secret, beyond the built-in patterns."
    )
