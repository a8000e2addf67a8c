"""What pre-flight found, in a few parts: the run's settings, the run itself, what runs now, the target, the
databases, the rollback point chosen and the env-sync result. `build_plan` turns it into steps.

`plan.json` holds `to_dict()`: the settings as a snapshot without secrets (`Settings.snapshot`), so recovery uses
exactly what the run used, with the block's secrets put back (`load(path, settings_now)`). A `plan.json` written
before the parts existed (one flat object) still loads: `_from_flat`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.cutover.online import OnlineFacts
from core.env.envsync import EnvSyncResult
from core.files import write_json
from core.settings import Settings


@dataclass(frozen=True)
class RunFacts:
    """This run: its environment's name, its id, its folder and how it backs up."""

    environment: str
    id: str
    dir: Path
    volume_excludes: list[str] = field(default_factory=list)
    dump_jobs: int = 1


@dataclass(frozen=True)
class DeployedFacts:
    """What runs now: the checkout's commit, the services, and each one's image (pre-flight's `current_images`)."""

    commit: str
    services: list[str]
    running: list[str]
    images: dict[str, dict]
    jobs: list[str] = field(default_factory=list)  # one-shot services (`ResolvedConfig.jobs`): done when exited 0


@dataclass(frozen=True)
class TargetFacts:
    """The release to deploy: ref and commit, services and images, its Alembic heads and what is pending."""

    ref: str
    commit: str
    services: list[str]
    images: dict[str, str]
    heads: list[str]
    pending_revisions: list[str] = field(default_factory=list)
    noop_downgrades: list[str] = field(default_factory=list)
    render_sql_command: list[str] = field(default_factory=list)  # renders the pending SQL offline ([] = none pending)
    jobs: list[str] = field(default_factory=list)  # one-shot services (`ResolvedConfig.jobs`): done when exited 0
    transaction_per_migration: bool = False  # the migration commits after each revision (Alembic's setting)
    transaction_shape_from: str = "Alembic's default"  # who says so: the settings, the image's env.py, the default


@dataclass(frozen=True)
class DatabaseFacts:
    """The databases backed up and restored (the app's first), and the app database's revision now."""

    names: list[str]
    revision: list[str]
    room_bytes: int | None = None  # free beside the data directory once the rollback point is counted (None: unknown)


@dataclass(frozen=True)
class RollbackFacts:
    """The rollback point chosen (`core.cutover.rollback_methods` names), its forecast, and, for PITR, where the
    cluster's data directory is (`{"service", "host", "container"}`)."""

    method: str
    forecast: dict = field(default_factory=dict)
    data_dir: dict | None = None


@dataclass(frozen=True)
class Facts:
    """What pre-flight found, in parts (see the module's docstring)."""

    settings: Settings
    run: RunFacts
    current: DeployedFacts
    target: TargetFacts
    database: DatabaseFacts
    rollback: RollbackFacts
    env_sync: EnvSyncResult  # pre-flight's one env merge: masked rows, counts, the staged file and its sha256
    online: OnlineFacts = field(default_factory=OnlineFacts)  # the migration pre-flight's online preparation

    def differences(self) -> list[str]:
        """What an upgrade to the target would change, as the facts show it: the commit, an image of a service, a
        service to start or retire, a pending revision, the `.env`. [] is "already at the target": nothing to do."""
        out = []
        if self.current.commit != self.target.commit:
            out.append(f"commit {self.current.commit[:12]} → {self.target.commit[:12]}")
        for service, image in sorted(self.target.images.items()):
            running = self.current.images.get(service) if service in self.current.running else None
            if running is None:
                out.append(f"{service} does not run")
            elif image != running.get("image") and image not in (running.get("repo_digests") or []):
                out.append(f"{service} runs {running.get('image')}, the target {image}")
        out += [f"{s} is not in the target" for s in sorted(set(self.current.running) - set(self.target.services))]
        if self.target.pending_revisions or sorted(self.database.revision) != sorted(self.target.heads):
            out.append(f"database at {', '.join(self.database.revision) or 'no revision'}, the target's head "
                       f"{', '.join(self.target.heads)}")
        if self.env_sync.sha256 and self.env_sync.sha256 != self.env_sync.source_sha256:
            out.append("the merged .env differs from the one in place")
        out += [f"the merged {c['path']} differs from the one in place" for c in self.env_sync.changed_copies]
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"settings": self.settings.snapshot()}
        for name in ("run", "current", "target", "database", "rollback"):
            out[name] = asdict(getattr(self, name))
        out["run"]["dir"] = str(self.run.dir)
        out["env_sync"] = asdict(self.env_sync)
        out["online"] = self.online.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], settings_now: Settings) -> Facts:
        """`settings_now` (the block's, now) gives the secrets, which `to_dict` never writes."""
        if "settings" not in d:
            return _from_flat(d, settings_now)
        return cls(settings=Settings.from_snapshot(d["settings"], secrets_of=settings_now),
                   run=RunFacts(**{**d["run"], "dir": Path(d["run"]["dir"])}), current=DeployedFacts(**d["current"]),
                   target=TargetFacts(**d["target"]), database=DatabaseFacts(**d["database"]),
                   rollback=RollbackFacts(**d["rollback"]), env_sync=EnvSyncResult.from_facts(d),
                   online=OnlineFacts.from_dict(d.get("online")))

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path, settings_now: Settings) -> Facts:
        return cls.from_dict(json.loads(path.read_text()), settings_now)


# An old plan.json's flat keys that copied a setting → (group, name) in Settings.
_FLAT_SETTINGS = {
    "project": ("stack", "project_name"), "compose_dir": ("stack", "compose_dir"),
    "compose_files": ("stack", "compose_files"), "env_file": ("stack", "env_file"),
    "env_template": ("stack", "env_template"), "db_name": ("database", "name"), "db_host": ("database", "host"),
    "db_port": ("database", "port"), "db_user": ("database", "user"), "db_services": ("database", "services"),
    "writer_services": ("writers", "services"), "stop_timeouts": ("writers", "stop_timeouts"),
    "migrate_service": ("migration", "service"), "migrate_command": ("migration", "command"),
    "migration_switch": ("migration", "switch"), "migration_timeout": ("migration", "timeout_seconds"),
    "health_timeout": ("health", "timeout_seconds"), "version_command": ("health", "version_command"),
    "keep_failed_database": ("rollback_point", "keep_failed_database"),
    "snapshot_command": ("rollback_point", "snapshot_command"),
    "snapshot_restore_command": ("rollback_point", "snapshot_restore_command"),
}


def _from_flat(d: dict[str, Any], settings_now: Settings) -> Facts:
    """A plan.json from before the parts: the settings it recorded override the block's now."""
    groups: dict[str, dict[str, Any]] = {}
    for key, (group, name) in _FLAT_SETTINGS.items():
        if key in d:
            groups.setdefault(group, {})[name] = d[key]
    data = settings_now.model_dump()  # python mode: the secrets stay SecretStr / SecretDict
    for group, values in groups.items():
        data[group] = {**data[group], **values}
    if "rehearsal_command" in d:
        data["migration"]["rehearsal"] = {**data["migration"]["rehearsal"], "command": d["rehearsal_command"] or None}
    settings = Settings.model_validate(data)
    return Facts(
        settings=settings,
        run=RunFacts(environment=d["environment"], id=d.get("run_id", ""), dir=Path(d["run_dir"]),
                     volume_excludes=d.get("volume_excludes", []), dump_jobs=d.get("dump_jobs", 1)),
        current=DeployedFacts(commit=d["current_commit"], services=d["current_services"],
                              running=d["running_services"], images=d["current_images"]),
        target=TargetFacts(ref=d["target_ref"], commit=d["target_commit"], services=d["target_services"],
                           images=d["target_images"], heads=d["target_heads"],
                           pending_revisions=d.get("pending_revisions", []),
                           noop_downgrades=d.get("noop_downgrades", []),
                           render_sql_command=d.get("render_sql_command", [])),
        database=DatabaseFacts(names=d["databases"], revision=d["db_revision"]),
        rollback=RollbackFacts(method=d.get("rollback_method", "file-copy"), forecast=d.get("rollback_forecast", {}),
                               data_dir=d.get("data_dir")),
        env_sync=EnvSyncResult.from_facts(d),
    )
