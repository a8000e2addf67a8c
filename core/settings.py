"""An environment's settings, typed and grouped: what the `stack-environment` block holds and every run reads.

The groups are frozen pydantic models. The block (`blocks/stack_environment.py`) is made of them, so the Prefect UI
shows each group as a sub-form; a run builds one `Settings` from the block, once, and hands it down to the last call.
Secrets are `SecretStr` (or Prefect's `SecretDict`): `snapshot()` writes them masked, so a run's `plan.json` holds
what the run used without any secret, and `with_secrets_of()` puts the block's secrets back into such a snapshot.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from prefect.types import SecretDict
from pydantic import BaseModel, ConfigDict, Field, SecretStr

RollbackMethodName = Literal["auto", "file-copy", "pitr", "snapshot-command"]


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HttpCheck(_Group):
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
        description="Plain-text body the check expects (surrounding whitespace ignored), if set (MLflow's /health: "
                    "`OK`).",
    )
    expect_version_in_body: bool = Field(
        default=False,
        description="The whole body (plain text, surrounding whitespace ignored) must equal the target's app version "
                    "(MLflow's /version).",
    )


class StackSettings(_Group):
    """Where the stack lives: its git checkout, compose project and env files, and the engine that runs it."""

    compose_dir: Path = Field(description="Git checkout holding the compose files and `.env` of the stack.")
    project_name: str = Field(description="Compose project name (`docker compose -p`).")
    compose_files: tuple[str, ...] = Field(default=("docker-compose.yaml",),
                                           description="Compose files, relative to `compose_dir`.")
    env_file: str = Field(default=".env", description="The operator's env file, relative to `compose_dir`.")
    env_template: str = Field(default=".env.example",
                              description="The env template tracked in git, relative to `compose_dir`.")
    docker_host: str | None = Field(
        default=None, description="Docker engine to talk to (`DOCKER_HOST`); the local engine if unset.")
    host: str | None = Field(
        default=None,
        description="The host whose Docker engine and compose directory this environment is (e.g. `prod`): its flows "
                    "refuse to run anywhere else. A host is named by `$STACKSHIFT_HOST` in its worker's environment, "
                    "else its hostname. Unset: any host.")
    secret_env_keys: tuple[str, ...] = Field(
        default=(), description="More env keys whose values are secret, beyond the built-in patterns.")
    env_slim: bool = Field(
        default=False,
        description="With Dify's split env layout (1.14+): env-sync writes the essentials-only `.env` plus the "
                    "operator's own values, taking out the moved keys that are at their new default (as "
                    "`env-sync --slim`); the env diff says which and why. Off: the `.env` keeps every key.")
    generate_missing_secrets: bool = Field(
        default=False,
        description="A secret the target's compose file requires (`${VAR:?}`) that the merged `.env` leaves empty "
                    "gets a random value (as `env-sync --generate-missing-secrets`), written to the `.env` only, "
                    "never shown. Off: pre-flight stops and names the key.")


class DatabaseSettings(_Group):
    """The PostgreSQL server the app's Alembic migrations run against, and how stackshift reaches it."""

    host: str = Field(default="127.0.0.1", description="Host where stackshift reaches PostgreSQL.")
    port: int = Field(default=5432, description="Port where stackshift reaches PostgreSQL.")
    name: str = Field(description="The app's database, migrated by Alembic.")
    extra_databases: tuple[str, ...] = Field(
        default=(), description="Other databases on the same server to back up and restore (e.g. a plugin DB).")
    user: str = Field(description="PostgreSQL role with CREATEDB (for the rollback point).")
    password: SecretStr = Field(description="Password of the role.")
    services: tuple[str, ...] = Field(
        default=("db", "db_postgres"),
        description="Compose services that run the database, in any release (a rename is expected).")

    @property
    def all_names(self) -> list[str]:
        """The app's database first, then the extra ones."""
        return [self.name, *self.extra_databases]


class WriterSettings(_Group):
    """The services that write to the database: stopped before the rollback point is taken."""

    services: tuple[str, ...] = Field(
        default=("api", "worker"),
        description="Services that write to the database; they are stopped before the rollback point.")
    stop_timeouts: dict[str, int] = Field(
        default_factory=dict,
        description="Seconds a writer service may take to stop before the engine kills it, per service; services not "
                    "named use their compose `stop_grace_period` (10 s by default).")


class RehearsalSettings(_Group):
    """A rehearsal of the migration against a throw-away copy of the live schema, for apps that cannot render their
    SQL offline."""

    command: tuple[str, ...] | None = Field(
        default=None,
        description="The target's migration command pointed at another database, `{database}` standing for its name "
                    "(MLflow: [\"mlflow\", \"db\", \"upgrade\", \"postgresql+psycopg2://mlflow@db:5432/{database}\"]). "
                    "Set, it runs when offline rendering fails or covers only part of the range: in a one-off "
                    "container of the target image, against a throw-away copy of the live schema, and the statements "
                    "it executes are analysed. Needs a superuser role (it sets `log_statement` on that database). "
                    "None: no rehearsal.")
    env: SecretDict = Field(
        default_factory=lambda: SecretDict({}),
        description="Environment for the rehearsal's container, `{database}` standing for the throw-away database "
                    "(for apps that read the database name, or a whole URL with its password, from a variable: "
                    "{\"DB_DATABASE\": \"{database}\"}). Secret: masked in the UI, passed to the container by name.")


class MigrationSettings(_Group):
    """How the app migrates: the one-off migration, its offline rendering for the pre-flight, and the risk gate."""

    service: str = Field(default="api", description="Service whose image runs the migration, once.")
    command: tuple[str, ...] = Field(default=("python3", "-m", "alembic", "upgrade", "head"),
                                     description="The migration command in that image.")
    replace_entrypoint: bool = Field(
        default=False,
        description="Run the command (and the rehearsal's) in place of the image's entrypoint, its first word as "
                    "`--entrypoint`: for an image whose entrypoint ignores its arguments, as Dify's does (it starts "
                    "the server unless MODE=job).")
    versions_path: str = Field(
        default="/app/migrations/versions",
        description="Folder of the Alembic revision files inside the migrate image (Dify: "
                    "/app/api/migrations/versions); read without running anything.")
    render_sql_command: tuple[str, ...] | None = Field(
        default=("python3", "-m", "alembic", "upgrade", "{range}", "--sql"),
        description="Command in the target image that prints the pending SQL offline; `{range}` becomes FROM:TO "
                    "(Dify: [\"flask\", \"db\", \"upgrade\", \"{range}\", \"--sql\"]). Runs with no network. "
                    "None: the app cannot render offline (the rehearsal, if set, covers every revision).")
    switch: str | None = Field(
        default="MIGRATION_ENABLED",
        description="Variable that turns entrypoint migrations off for long-running services. None: the app migrates "
                    "when it starts and has no switch (MLflow); stackshift's own one-off migration still runs first, "
                    "with the writers stopped, so the start finds the database at the head and migrates nothing.")
    transaction_per_migration: bool | None = Field(
        default=None,
        description="Whether the migration commits after each revision (Alembic's `transaction_per_migration`): the "
                    "lock holds and MS025 follow the transactions as they will really run. None: read from the "
                    "target image's migration environment (`env.py` beside `versions_path`), else Alembic's default "
                    "(one transaction for the whole upgrade).")
    max_lock_seconds: float = Field(
        default=60.0,
        description="Stop the upgrade before any change when the forecast says writes to a table would be blocked "
                    "longer than this.")
    probe: bool = Field(
        default=True,
        description="Calibrate the forecast with a short probe on the server (a scratch table of about 13 MB in "
                    "a throw-away schema, dropped afterwards). Off: effects and sizes only, no durations.")
    probe_seconds: float = Field(
        default=3.0, gt=0,
        description="Time budget of that probe: it repeats its round (scan, rewrite, index build) while another "
                    "fits in this many seconds; the first round always runs (about 1-2 s on an idle 2-core host).")
    timeout_seconds: int = Field(
        default=3600, description="How long the migration (and each pg_dump or archive) may run before it is killed.")
    rehearsal: RehearsalSettings = Field(default_factory=RehearsalSettings,
                                         description="The migration's rehearsal on a throw-away database.")
    online_preparation: Literal["auto", "off"] = Field(
        default="off",
        description="`auto`: after the backup, while the old version still serves, prepare online the pending "
                    "statements that have an online equivalent (an integer widening: shadow column, trigger, batched "
                    "backfill, swap; SET NOT NULL: a CHECK validated online), so that the app's own statement is a "
                    "catalog-only change in the downtime. `off`: every statement runs in the downtime, as it is.")
    online_batch_rows: int = Field(default=10_000, gt=0,
                                   description="Rows per batch of the online backfill (each its own short "
                                               "transaction).")
    online_pause_seconds: float = Field(default=0.05, ge=0,
                                        description="Pause between two batches of the online backfill (room for the "
                                                    "serving version's writes and for replication).")


class HealthSettings(_Group):
    """What must hold after an upgrade (and after a rollback) before the run counts as done."""

    http_checks: tuple[HttpCheck, ...] = Field(default=(), description="HTTP checks run after an upgrade.")
    timeout_seconds: int = Field(default=120, description="How long services may take to turn healthy.")
    jobs: tuple[str, ...] = Field(
        default=(),
        description="Services that run once and exit (an init, migrate or setup job): done when exited with 0, failed "
                    "with their exit code otherwise, in the health wait, the verification and the check whether a "
                    "stack already runs its target. A service with no restart policy (or `restart: \"no\"`) that "
                    "another waits for with `service_completed_successfully` is one already (Dify's "
                    "`init_permissions`); name here the others.")
    version_command: tuple[str, ...] | None = Field(
        default=None,
        description="Command run in the migrate service's container after the upgrade (`docker compose exec`) whose "
                    "output must name the target's app version as a whole word (e.g. [\"mlflow\", \"--version\"]).")


class RegistrySettings(_Group):
    """The registry to log in to before any pull, if it needs a login."""

    host: str | None = Field(
        default=None, description="Registry host to log in to before any pull (e.g. `registry.example.com`).")
    username: str | None = Field(default=None, description="Registry user, if the registry needs a login.")
    password: SecretStr | None = Field(default=None, description="Registry password, if needed.")


class RollbackPointSettings(_Group):
    """How the databases are put back if the upgrade fails after the writers stop."""

    method: RollbackMethodName = Field(
        default="auto",
        description="How the rollback point is taken. `auto`: FILE_COPY copies of the databases while that stays "
                    "within file_copy_max_seconds of downtime (forecast from their size and a measured copy rate), "
                    "else PITR (online base backup + replication slot + a named restore point at the cutover: "
                    "constant time), else FILE_COPY. `pitr` needs wal_level=replica, a role with REPLICATION (or "
                    "superuser), PGDATA in a sub-directory of a mount on this host. `snapshot-command`: the two "
                    "commands below.")
    file_copy_max_seconds: float = Field(
        default=0.3,
        description="`auto` takes FILE_COPY while its forecast downtime stays within this many seconds (its fixed "
                    "cost, two checkpoints, is already about 0.2 s; PITR's restore point is constant, about 0.05 s).")
    snapshot_command: tuple[str, ...] = Field(
        default=(), description="For a managed database: argv that takes a provider snapshot named `{point}` (run "
                                "with the writers stopped). Sets the method to snapshot-command.")
    snapshot_restore_command: tuple[str, ...] = Field(
        default=(), description="argv that restores the snapshot `{point}` over the database (on rollback).")
    keep_failed_database: bool = Field(
        default=False, description="After a rollback, keep the failed database state as `<db>__ss_failed_<run>` for "
                                   "inspection instead of dropping it.")


class BackupSettings(_Group):
    """Where backups go and how they are taken."""

    dir: Path = Field(description="Where backups go (one folder per run, files 0600); the stack's lock and run "
                                  "journals live there too.")
    retention: int = Field(default=5, description="How many backups of this project to keep.")
    dump_jobs: int | None = Field(
        default=None, description="Parallel jobs of `pg_dump -Fd` (default: the cores of this host, at most 4).")

    def jobs(self) -> int:
        """`dump_jobs`, or this host's cores, at most 4."""
        return self.dump_jobs or max(1, min(4, os.cpu_count() or 1))


class Settings(_Group):
    """Everything one environment's runs read, grouped; built once per run from the block (`StackEnvironment.
    settings()`) or from a run's snapshot plus the block's secrets (`with_secrets_of`)."""

    stack: StackSettings = Field(description="Where the stack lives.")
    database: DatabaseSettings = Field(description="The PostgreSQL server and its databases.")
    writers: WriterSettings = Field(default_factory=WriterSettings, description="The services that write.")
    migration: MigrationSettings = Field(default_factory=MigrationSettings, description="How the app migrates.")
    health: HealthSettings = Field(default_factory=HealthSettings, description="What must hold afterwards.")
    registry: RegistrySettings = Field(default_factory=RegistrySettings, description="The registry login.")
    rollback_point: RollbackPointSettings = Field(default_factory=RollbackPointSettings,
                                                  description="How a failed upgrade is put back.")
    backup: BackupSettings = Field(description="Where backups go.")
    command_timeout_seconds: int = Field(
        default=600, description="How long any one docker, compose, git or pg command may run before it is killed.")

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready, secrets masked (SecretStr dumps as `**********`): what `plan.json` records."""
        return self.model_dump(mode="json")

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], secrets_of: Settings) -> Settings:
        """A run's recorded settings, with the secrets (never recorded) taken from `secrets_of` (the block now)."""
        data = {**data,
                "database": {**data["database"], "password": secrets_of.database.password},
                "registry": {**data.get("registry", {}), "password": secrets_of.registry.password},
                "migration": {**data.get("migration", {}),
                              "rehearsal": {**data.get("migration", {}).get("rehearsal", {}),
                                            "env": secrets_of.migration.rehearsal.env}}}
        return cls.model_validate(data)


# The block's fields before they were grouped (stackshift ≤ 0.1): an old block document, a test's or a script's
# keyword arguments still load. Flat name → (group, name in the group).
FLAT_FIELDS: dict[str, tuple[str, str]] = {
    "compose_dir": ("stack", "compose_dir"), "project_name": ("stack", "project_name"),
    "compose_files": ("stack", "compose_files"), "env_file": ("stack", "env_file"),
    "env_template": ("stack", "env_template"), "docker_host": ("stack", "docker_host"), "host": ("stack", "host"),
    "secret_env_keys": ("stack", "secret_env_keys"), "env_slim": ("stack", "env_slim"),
    "generate_missing_secrets": ("stack", "generate_missing_secrets"),
    "db_host": ("database", "host"), "db_port": ("database", "port"), "db_name": ("database", "name"),
    "extra_databases": ("database", "extra_databases"), "db_user": ("database", "user"),
    "db_password": ("database", "password"), "db_services": ("database", "services"),
    "writer_services": ("writers", "services"), "stop_timeouts": ("writers", "stop_timeouts"),
    "migrate_service": ("migration", "service"), "migrate_command": ("migration", "command"),
    "migrations_path": ("migration", "versions_path"), "render_sql_command": ("migration", "render_sql_command"),
    "migration_switch": ("migration", "switch"), "max_lock_seconds": ("migration", "max_lock_seconds"),
    "migration_probe": ("migration", "probe"), "migration_timeout_seconds": ("migration", "timeout_seconds"),
    "online_preparation": ("migration", "online_preparation"),
    "online_batch_rows": ("migration", "online_batch_rows"),
    "online_pause_seconds": ("migration", "online_pause_seconds"),
    "http_checks": ("health", "http_checks"), "health_timeout_seconds": ("health", "timeout_seconds"),
    "version_command": ("health", "version_command"),
    "registry": ("registry", "host"), "registry_username": ("registry", "username"),
    "registry_password": ("registry", "password"),
    "rollback_point": ("rollback_point", "method"),
    "file_copy_max_seconds": ("rollback_point", "file_copy_max_seconds"),
    "snapshot_command": ("rollback_point", "snapshot_command"),
    "snapshot_restore_command": ("rollback_point", "snapshot_restore_command"),
    "keep_failed_database": ("rollback_point", "keep_failed_database"),
    "backup_dir": ("backup", "dir"), "backup_retention": ("backup", "retention"), "dump_jobs": ("backup", "dump_jobs"),
}
FLAT_REHEARSAL = {"rehearsal_command": "command", "rehearsal_env": "env"}


def nest_flat_fields(data: Any) -> Any:
    """Groups an old flat field set (see FLAT_FIELDS); a dict already grouped is returned as it is."""
    if not isinstance(data, dict):
        return data
    # `registry` and `rollback_point` name a group too: flat only when they hold a plain value
    flat = {k for k in data if (k in FLAT_FIELDS or k in FLAT_REHEARSAL)
            and not (k in Settings.model_fields and isinstance(data[k], (dict, BaseModel)))}
    if not flat:
        return data
    out: dict[str, Any] = {k: v for k, v in data.items() if k not in flat}
    for key in sorted(flat):
        if key in FLAT_REHEARSAL:
            group = dict(out.get("migration") or {})
            group["rehearsal"] = {**dict(group.get("rehearsal") or {}), FLAT_REHEARSAL[key]: data[key]}
            out["migration"] = group
            continue
        group_name, name = FLAT_FIELDS[key]
        out[group_name] = {**dict(out.get(group_name) or {}), name: data[key]}
    return out
