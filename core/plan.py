"""The upgrade plan: facts gathered by pre-flight, turned into ordered, typed steps by one pure function.

Dry-run renders the steps, apply walks them, and rollback walks its own list built from the same facts.
Every command step holds its argv; the plan holds no secret (steps that need the database password say
so with `needs_db_password`, and the executor adds it to the child's environment).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from core import commands as c


@dataclass(frozen=True)
class Step:
    id: str
    phase: str  # backup | cutover | rollback
    title: str
    kind: str  # command | copy-config | write-state | manifest | rollback-point | checkout | write-env | restore-env | restore-db | pin-images | verify
    argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    needs_db_password: bool = False
    stdout_file: str | None = None
    ok_codes: tuple[int, ...] = (0,)
    params: dict = field(default_factory=dict)


@dataclass
class Facts:
    """What pre-flight found: the current deployment, the target, and where this run's files go."""

    environment: str
    project: str
    compose_dir: Path
    compose_files: list[str]
    env_file: str
    env_template: str
    current_commit: str
    target_ref: str
    target_commit: str
    current_services: list[str]
    running_services: list[str]
    target_services: list[str]
    current_images: dict[str, dict]
    target_images: dict[str, str]
    db_name: str
    databases: list[str]
    db_host: str
    db_port: int
    db_user: str
    db_revision: list[str]
    target_heads: list[str]
    pending_revisions: list[str]
    noop_downgrades: list[str]
    render_sql_command: list[str]  # renders the pending SQL offline in the target image ([] = nothing pending)
    db_services: list[str]
    writer_services: list[str]
    migrate_service: str
    migrate_command: list[str]
    migration_switch: str
    health_timeout: int
    run_dir: Path
    volume_excludes: list[str]
    env_report: list[dict]
    env_counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Plan:
    facts: Facts
    backup: list[Step]
    cutover: list[Step]
    rollback: list[Step]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["facts"]["compose_dir"] = str(self.facts.compose_dir)
        d["facts"]["run_dir"] = str(self.facts.run_dir)
        return d


def rollback_point_name(db: str, run_id: str) -> str:
    return f"{db}__ss_rb_{run_id}"[:63]


def failed_db_name(db: str, run_id: str) -> str:
    return f"{db}__ss_failed_{run_id}"[:63]


def old_project(f: Facts, pinned: bool = False) -> c.ComposeProject:
    """The deployment as it was: the backup's copies of its compose files and .env, run from its directory."""
    saved = f.run_dir / "compose"
    files = tuple(saved / name for name in f.compose_files)
    if pinned:
        files += (f.run_dir / "rollback-pins.yaml",)
    return c.ComposeProject(f.compose_dir, files, saved / f.env_file, f.project)


def target_project(f: Facts) -> c.ComposeProject:
    return c.ComposeProject(f.compose_dir, tuple(f.compose_dir / n for n in f.compose_files), f.compose_dir / f.env_file, f.project)


def build_plan(f: Facts, run_id: str) -> Plan:
    """The whole upgrade as steps. Pure: same facts, same plan."""
    old, new = old_project(f), target_project(f)
    off = {f.migration_switch: "false"}
    backup = [
        Step("save-config", "backup", "Copy compose files, .env and the env template", "copy-config"),
        Step("resolved-config", "backup", "Save the resolved compose config (JSON)", "command",
             argv=c.compose_config_json(c.ComposeProject(f.compose_dir, tuple(f.compose_dir / n for n in f.compose_files),
                                                         f.compose_dir / f.env_file, f.project)),
             stdout_file="compose-config.json"),
    ]
    for db in f.databases:
        dump = f.run_dir / f"{db}.dump"
        backup += [
            Step(f"pg-dump-{db}", "backup", f"pg_dump -Fc of {db} (online, the old version still serving)", "command",
                 argv=c.pg_dump(f.db_host, f.db_port, f.db_user, db, dump), needs_db_password=True),
            Step(f"verify-dump-{db}", "backup", f"Check {db}.dump is readable (pg_restore --list)", "command",
                 argv=c.pg_restore_list(dump), stdout_file=f"{db}.dump.list"),
        ]
    backup += [
        Step("archive-volumes", "backup", "Archive bind-mounted volumes, without the live database directory", "command",
             argv=c.tar_create(f.run_dir / "volumes.tar.gz", f.compose_dir / "volumes", f.volume_excludes), ok_codes=(0, 1)),
        Step("write-state", "backup", "Record image digests, git commit and Alembic revision", "write-state"),
        Step("manifest", "backup", "Write the sha256 manifest; files 0600", "manifest"),
    ]

    writers = [s for s in f.writer_services if s in f.running_services]
    retired = [s for s in f.current_services if s not in f.target_services and s in f.running_services]
    target_db = [s for s in f.db_services if s in f.target_services]
    cutover = [
        Step("stop-writers", "cutover", f"Stop the writers ({', '.join(writers) or 'none'}): downtime starts", "command",
             argv=c.compose_stop(old, writers)),
        Step("rollback-point", "cutover", "Take the rollback point (file-level copy of each database, same server)",
             "rollback-point", params={"databases": {db: rollback_point_name(db, run_id) for db in f.databases}}),
        Step("checkout-target", "cutover", f"git checkout {f.target_ref} ({f.target_commit[:12]})", "checkout",
             argv=c.git_checkout(f.compose_dir, f.target_commit)),
        Step("write-env", "cutover", f"Write the merged {f.env_file}", "write-env"),
    ]
    if retired:
        cutover.append(Step("remove-retired", "cutover", f"Remove services the target no longer has ({', '.join(retired)})",
                            "command", argv=c.compose_rm(old, retired)))
    if target_db:
        cutover.append(Step("start-db", "cutover", f"Start the database ({', '.join(target_db)}) and wait for health",
                            "command", argv=c.compose_up(new, target_db, wait_timeout=f.health_timeout, no_deps=True), env=off))
    cutover += [
        Step("migrate", "cutover", f"Migrate once: {' '.join(f.migrate_command)} in a one-off {f.migrate_service} container",
             "command", argv=c.compose_run_once(new, f.migrate_service, f.migrate_command, off)),
        Step("start-target", "cutover", f"Start every service ({f.migration_switch}=false) and wait for health: downtime ends",
             "command", argv=c.compose_up(new, wait_timeout=f.health_timeout, remove_orphans=True), env=off),
        Step("verify", "cutover", f"Verify: compose health, HTTP checks, database at {', '.join(f.target_heads)}", "verify",
             params={"heads": f.target_heads, "services": f.target_services, "images": f.target_images}),
    ]

    pinned = old_project(f, pinned=True)
    old_db = [s for s in f.db_services if s in f.current_services]
    rollback = [
        Step("stop-target", "rollback", "Stop and remove the target's containers", "command", argv=c.compose_down(new)),
        Step("checkout-previous", "rollback", f"git checkout the previous commit {f.current_commit[:12]}", "checkout",
             argv=c.git_checkout(f.compose_dir, f.current_commit)),
        Step("restore-env", "rollback", f"Restore {f.env_file} from the backup", "restore-env"),
        Step("pin-images", "rollback", "Pin every service to its previous image digest", "pin-images"),
    ]
    if old_db:
        rollback.append(Step("start-previous-db", "rollback", f"Start the previous database service ({', '.join(old_db)})",
                             "command", argv=c.compose_up(pinned, old_db, wait_timeout=f.health_timeout, no_deps=True), env=off))
    rollback += [
        Step("restore-db", "rollback", "Put each database back at the rollback point (the failed state is kept aside)",
             "restore-db", params={"databases": {db: [rollback_point_name(db, run_id), failed_db_name(db, run_id)]
                                                 for db in f.databases}}),
        Step("start-previous", "rollback", "Start the previous version by digest and wait for health", "command",
             argv=c.compose_up(pinned, wait_timeout=f.health_timeout, remove_orphans=True), env=off),
        Step("verify-previous", "rollback", f"Verify the previous version: database at {', '.join(f.db_revision) or '(none)'}",
             "verify", params={"heads": f.db_revision, "services": f.current_services,
                               "images": {s: i["image"] for s, i in f.current_images.items()}}),
    ]
    return Plan(f, backup, cutover, rollback)
