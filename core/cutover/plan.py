"""The upgrade plan: facts gathered by pre-flight, turned into ordered, typed steps by one pure function.

Dry-run renders the steps, apply walks them, and rollback and recovery walk their own lists built from the same
facts. Each step is a type from `core.cutover.steps` that knows how to apply itself, how it fails and how it renders.
The plan holds no secret (steps that need the database password say so with `needs_db_password`; the password is
added to the child's environment at the last call).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.io import commands as c
from core.backup import rollbackpoint as rp
from core.cutover import steps as st
from core.env.envsync import EnvSyncResult
from core.io.compose import digest_ref


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
    migration_switch: str | None  # None: the app migrates when it starts and has no switch
    health_timeout: int
    run_dir: Path
    volume_excludes: list[str]
    env_sync: EnvSyncResult  # pre-flight's one env merge: masked rows, counts, the staged file and its sha256
    warnings: list[str] = field(default_factory=list)
    run_id: str = ""
    migration_timeout: int = 3600
    keep_failed_database: bool = False
    rollback_method: str = rp.FILE_COPY
    data_dir: dict | None = None  # {"service", "host", "container"} of the cluster's data directory (PITR)
    snapshot_command: list[str] = field(default_factory=list)
    snapshot_restore_command: list[str] = field(default_factory=list)
    rollback_forecast: dict = field(default_factory=dict)
    dump_jobs: int = 1
    stop_timeouts: dict[str, int] = field(default_factory=dict)
    version_command: list[str] = field(default_factory=list)
    rehearsal_command: list[str] = field(default_factory=list)  # `{database}` = the throw-away database ([] = none)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["compose_dir"], d["run_dir"] = str(self.compose_dir), str(self.run_dir)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Facts":
        known = {f.name for f in fields(cls)}
        d, old = {k: v for k, v in d.items() if k in known}, d
        d["compose_dir"], d["run_dir"] = Path(d["compose_dir"]), Path(d["run_dir"])
        d["env_sync"] = EnvSyncResult.from_facts(old)
        return cls(**d)

    def save(self, path: Path) -> None:
        from core.cutover.journal import write_atomic_json

        write_atomic_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "Facts":
        return cls.from_dict(json.loads(path.read_text()))


@dataclass
class Plan:
    """Every list an upgrade may walk: `backup` (old version serving), `prepare` (right before the downtime, after
    the pull), `cutover` (downtime), `verify`, `finish` (after success), `rollback` (after a failure once the cutover
    began)."""

    facts: Facts
    backup: list[st.Step]
    cutover: list[st.Step]
    verify: list[st.Step]
    finish: list[st.Step]
    rollback: list[st.Step]
    prepare: list[st.Step] = field(default_factory=list)

    def lists(self) -> dict[str, list[st.Step]]:
        return {"backup": self.backup, "prepare": self.prepare, "cutover": self.cutover, "verify": self.verify,
                "finish": self.finish, "rollback": self.rollback}

    def to_dict(self) -> dict:
        out = {"facts": self.facts.to_dict()}
        for name, steps in self.lists().items():
            out[name] = [{"id": s.id, "kind": type(s).__name__, "task": s.task_name, "title": s.title,
                          "does": s.render()} for s in steps]
        return out

    def after_migration(self) -> list[st.Step]:
        """The cutover steps after the migration (what is left to finish a cutover whose migration completed)."""
        i = next(i for i, s in enumerate(self.cutover) if isinstance(s, st.Migrate))
        return self.cutover[i + 1:]

    @property
    def rollback_point(self) -> st.RollbackPoint:
        return next(s for s in self.cutover if isinstance(s, st.RollbackPoint))


def rollback_point_name(db: str, run_id: str) -> str:
    """`<db>__ss_rb_<run>`; pre-flight refuses names that would pass PostgreSQL's 63 bytes (no silent truncation)."""
    return f"{db}__ss_rb_{run_id}"


def failed_db_name(db: str, run_id: str) -> str:
    return f"{db}__ss_failed_{run_id}"


def old_project(f: Facts, pinned: bool = False) -> c.ComposeProject:
    """The deployment as it was: the backup's copies of its compose files and .env, run from its directory."""
    saved = f.run_dir / "compose"
    files = tuple(saved / name for name in f.compose_files)
    if pinned:
        files += (f.run_dir / "rollback-pins.yaml",)
    return c.ComposeProject(f.compose_dir, files, saved / f.env_file, f.project)


def target_project(f: Facts) -> c.ComposeProject:
    return c.ComposeProject(f.compose_dir, tuple(f.compose_dir / n for n in f.compose_files), f.compose_dir / f.env_file,
                            f.project)


def scratch_glob(f: Facts) -> str:
    """Pre-flight's scratch folders of this stack (a killed pre-flight can leave one)."""
    return str(f.run_dir.parent / ".scratch-*")


def pinned_digests(images: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """(service, repo@sha256:…) of the target's images pinned by digest (a promotion pins every one)."""
    return tuple((s, digest_ref(ref)) for s, ref in sorted(images.items()) if digest_ref(ref))


def rp_args(template: list[str], run_id: str) -> list[str]:
    """A snapshot command with `{point}` replaced by the run's snapshot name."""
    return [a.replace("{point}", rp.restore_point_name(run_id)) for a in template]


def _pitr_paths(f: Facts, run_id: str) -> dict[str, tuple[str, ...]]:
    if f.rollback_method != rp.PITR or not f.data_dir:
        return {"slots": (), "base": (), "failed": ()}
    host = Path(f.data_dir["host"])
    return {"slots": (rp.slot_name(run_id),), "base": (str(host.parent / rp.base_dir_name(run_id)),),
            "failed": (str(host.parent / rp.failed_dir_name(run_id)),)}


def _base_backup(f: Facts, old: c.ComposeProject, run_id: str) -> list[st.Step]:
    """PITR only: the online base backup, taken in the running database container, beside its data directory."""
    if f.rollback_method != rp.PITR or not f.data_dir:
        return []
    d = rp.DataDir(f.data_dir["service"], Path(f.data_dir["host"]), rp.PurePosixPath(f.data_dir["container"]))
    name = rp.base_dir_name(run_id)
    return [st.BaseBackup("base-backup", "backup", f"Base backup of the cluster beside its data directory, with the "
                          f"replication slot {rp.slot_name(run_id)} keeping the WAL from now on (online)",
                          argv=tuple(c.pg_basebackup(old, d.service, f.db_user, d.container_sibling(name),
                                                     rp.slot_name(run_id))),
                          timeout=f.migration_timeout, host_dir=str(d.host_sibling(name)), slot=rp.slot_name(run_id))]


def _rollback_point(f: Facts, run_id: str) -> st.RollbackPoint:
    if f.rollback_method == rp.PITR:
        base = _pitr_paths(f, run_id)["base"]
        return st.TakeRestorePoint("rollback-point", "cutover", "Take the rollback point (a named restore point in "
                                   "the WAL, over the online base backup: constant time)", run_id=run_id,
                                   base_backup=base[0] if base else "")
    if f.rollback_method == rp.SNAPSHOT:
        return st.TakeSnapshot("rollback-point", "cutover", "Take the rollback point (the environment's snapshot "
                               "command)", argv=tuple(rp_args(f.snapshot_command, run_id)), timeout=f.migration_timeout,
                               point=rp.restore_point_name(run_id))
    return st.TakeRollbackPoint("rollback-point", "cutover", "Take the rollback point (file-level copy of each "
                                "database, same server)",
                                databases=tuple((db, rollback_point_name(db, run_id)) for db in f.databases))


def _create_ahead(f: Facts, new: c.ComposeProject, services: list[str], off, record: str) -> st.CreateAhead:
    return st.CreateAhead(tuple(c.compose_create(new, services)), off, f.project, tuple(services), record)


def _start_target(f: Facts, new: c.ComposeProject, target_db: list[str], off, up_timeout: int,
                  ahead: st.CreateAhead | None) -> st.StartServices:
    """Every service, with the migration switch off. When the database was started and waited for by `start-db`,
    compose need not wait on it again (`--no-deps`): the step polls the app's HTTP checks itself."""
    starts = f"{f.migration_switch}=false" if f.migration_switch else "the database already at the head"
    title = f"Start every service ({starts}) and wait for health: downtime ends"
    if target_db:
        return st.StartApp("start-target", "cutover", title,
                           argv=tuple(c.compose_up(new, no_deps=True, remove_orphans=True, wait=False)), env=off,
                           timeout=up_timeout, project_name=f.project, wait_for=tuple(f.target_services),
                           wait_timeout=float(f.health_timeout), created_ahead=ahead.record if ahead else "")
    return st.StartServices("start-target", "cutover", title, argv=tuple(c.compose_up(new, wait_timeout=f.health_timeout,
                                                                                    remove_orphans=True)),
                            env=off, timeout=up_timeout)


def version_argv(p: c.ComposeProject, f: Facts) -> tuple[str, ...]:
    """The environment's version command, in the running container of the migrate service ([] = none)."""
    return tuple(c.compose_exec(p, f.migrate_service, f.version_command)) if f.version_command else ()


def build_plan(f: Facts, run_id: str) -> Plan:
    """The whole upgrade as steps. Pure: same facts, same plan."""
    old, new = old_project(f), target_project(f)
    # With a switch, every start runs with entrypoint migrations off. Without one (the app migrates when it starts),
    # the one-off `migrate` below still runs first, with the writers stopped: each start then finds the database at
    # the head, and its own migration has nothing to do.
    off = ((f.migration_switch, "false"),) if f.migration_switch else ()
    resolved = st.SaveResolvedConfig("resolved-config", "backup", "Save the resolved compose config (JSON)",
                                argv=tuple(c.compose_config_json(new)), stdout_file="compose-config.json")
    dumps, checks = [], []
    for db in f.databases:
        dump = f.run_dir / f"{db}.dump"
        dumps.append(st.DumpDatabase(f"pg-dump-{db}", "backup", f"pg_dump -Fd -j {f.dump_jobs} of {db}, rows counted in "
                                     f"the same snapshot (online, the old version still serving)",
                                     argv=tuple(c.pg_dump(f.db_host, f.db_port, f.db_user, db, dump, f.dump_jobs)),
                                     needs_db_password=True, timeout=f.migration_timeout, database=db))
        checks.append(st.BackupCommand(f"verify-dump-{db}", "backup", f"Check {db}.dump is readable (pg_restore "
                                       f"--list)", argv=tuple(c.pg_restore_list(dump)), stdout_file=f"{db}.dump.list"))
    archive = st.BackupCommand("archive-volumes", "backup", "Archive bind-mounted volumes (zstd), without the live "
                               "database directory", argv=tuple(c.tar_create(f.run_dir / "volumes.tar.zst",
                                                                            f.compose_dir / "volumes", f.volume_excludes)),
                               env=c.ZSTD_ENV, ok_codes=(0, 1), timeout=f.migration_timeout)
    # the heavy work (each dump, then the archive) one after the other, as the raw tools would; the light records
    # and checks beside it, so that they cost no time of their own
    first = [st.Together("dump-and-config", "backup", "The first dump, and the resolved compose config beside it",
                         steps=(dumps[0], resolved))] if dumps else [resolved]
    backup: list[st.Step] = [
        st.SaveConfig("save-config", "backup", "Copy compose files, .env and the env template",
                      names=(*f.compose_files, f.env_file, f.env_template)),
        *first,
        *dumps[1:],
        st.Together("archive-and-check", "backup", "Archive the volumes, and check every dump beside it",
                    steps=(archive, *checks)),
        *_base_backup(f, old, run_id),
        st.WriteState("write-state", "backup", "Record image digests, git commit and Alembic revision"),
        st.WriteManifest("manifest", "backup", "Write the sha256 manifest; files 0600"),
    ]

    writers = [s for s in f.writer_services if s in f.running_services]
    retired = [s for s in f.current_services if s not in f.target_services and s in f.running_services]
    target_db = [s for s in f.db_services if s in f.target_services]
    up_timeout = f.health_timeout + 60
    apps = [s for s in f.target_services if s not in target_db]
    # containers are created while an earlier step waits (for a stop, for the migration); the starts then only start
    db_ahead = _create_ahead(f, new, target_db, off, "created-db.json") if retired and target_db else None
    app_ahead = _create_ahead(f, new, apps, off, "created-app.json") if target_db and apps else None
    timeouts = lambda services: tuple((s, f.stop_timeouts[s]) for s in services if s in f.stop_timeouts)  # noqa: E731
    cutover: list[st.Step] = [
        # the files change while the writers stop: running containers never read them again
        st.Together("stop-and-check-out", "cutover", "Stop the writers and, meanwhile, check out the target",
                    steps=(st.StopContainers("stop-writers", "cutover", f"Stop the writers ({', '.join(writers) or 'none'})"
                                             f": downtime starts", project_name=f.project, services=tuple(writers),
                                             timeouts=timeouts(writers)),
                           st.Checkout("checkout-target", "cutover", f"git checkout {f.target_ref} "
                                       f"({f.target_commit[:12]})",
                                       argv=tuple(c.git_checkout(f.compose_dir, f.target_commit))))),
        _rollback_point(f, run_id),
        st.InstallEnv("install-env", "cutover", f"Install the merged {f.env_file} (env-sync's result)"),
    ]
    if retired:  # stopped now (a renamed database must let go of its data); removed after the downtime
        cutover.append(st.StopContainers("stop-retired", "cutover", f"Stop services the target no longer has "
                                         f"({', '.join(retired)})", project_name=f.project, services=tuple(retired),
                                         timeouts=timeouts(retired), ahead=db_ahead))
    if target_db:
        cutover.append(st.StartDatabase("start-db", "cutover", f"Start the database ({', '.join(target_db)}) and wait "
                                        f"for health", argv=tuple(c.compose_up(new, target_db, no_deps=True, wait=False)),
                                        env=off, timeout=up_timeout, project_name=f.project, wait_for=tuple(target_db),
                                        wait_timeout=float(f.health_timeout),
                                        created_ahead=db_ahead.record if db_ahead else ""))
    cutover += [
        st.Migrate("migrate", "cutover", f"Migrate once: {' '.join(f.migrate_command)} in a one-off {f.migrate_service} "
                   f"container" + (f"; meanwhile create the containers of {', '.join(apps)}" if app_ahead else ""),
                   argv=tuple(c.compose_run_once(new, f.migrate_service, f.migrate_command, dict(off), run_id)),
                   timeout=f.migration_timeout, ahead=app_ahead),
        _start_target(f, new, target_db, off, up_timeout, app_ahead),
    ]
    verify: list[st.Step] = [
        *([st.RemoveServices("remove-retired", "verify", f"Remove the stopped containers of services the target no "
                             f"longer has ({', '.join(retired)}), the downtime over", argv=tuple(c.compose_rm(old, retired)))]
          if retired else []),
        st.Verify("verify", "verify", f"Verify: compose health, HTTP checks, database at {', '.join(f.target_heads)}",
                  project=new, heads=tuple(f.target_heads), services=tuple(f.target_services),
                  images=tuple(sorted(f.target_images.items())), version_argv=version_argv(new, f)),
    ]
    digests = pinned_digests(f.target_images)
    if digests:
        verify.append(st.VerifyDigests("verify-digests", "verify", "Verify the running containers' images are the pinned "
                                    "digests", digests=digests))
    points = tuple(rollback_point_name(db, run_id) for db in f.databases)
    failed = tuple(failed_db_name(db, run_id) for db in f.databases)
    pitr = _pitr_paths(f, run_id)
    finish: list[st.Step] = [
        st.Cleanup("drop-rollback-points", "finish", "Drop the rollback points (the pg_dump stays in the backup)",
                   drop=points if f.rollback_method == rp.FILE_COPY else (), scratch=(scratch_glob(f),),
                   slots=pitr["slots"], folders=pitr["base"]),
    ]

    pinned = old_project(f, pinned=True)
    old_db = [s for s in f.db_services if s in f.current_services]
    rollback: list[st.Step] = [
        st.StopRunContainers("stop-one-offs", "rollback", "Remove the stack's one-off containers (a migration still "
                             "running)"),
        st.StopServices("stop-target", "rollback", "Stop and remove the target's containers",
                        argv=tuple(c.compose_down(new)), timeout=up_timeout),
        st.Checkout("checkout-previous", "rollback", f"git checkout the previous commit {f.current_commit[:12]}",
                    argv=tuple(c.git_checkout(f.compose_dir, f.current_commit))),
        st.RestoreEnv("restore-env", "rollback", f"Restore {f.env_file} from the backup"),
        st.PinImages("pin-images", "rollback", "Pin every service to its previous image digest"),
    ]
    start_old_db = [st.StartServices("start-previous-db", "rollback", f"Start the previous database service "
                                     f"({', '.join(old_db)})", argv=tuple(c.compose_up(pinned, old_db,
                                                                                      wait_timeout=f.health_timeout,
                                                                                      no_deps=True)),
                                     env=off, timeout=up_timeout)] if old_db else []
    if f.rollback_method == rp.PITR:  # the data directory is swapped while the database is down, then replayed
        d = f.data_dir or {}
        rollback += [st.RestoreBaseBackup("restore-db", "rollback", "Put the base backup in place of the data "
                                          "directory (by rename: no copy) and set it to replay to the restore point",
                                          service=d.get("service", ""), host=d.get("host", ""),
                                          container=d.get("container", ""), run_id=run_id),
                     *start_old_db,
                     st.AwaitRecovery("await-recovery", "rollback", "Wait for the WAL replay to the restore point and "
                                      "the promotion", timeout=float(f.migration_timeout))]
    elif f.rollback_method == rp.SNAPSHOT:
        rollback += [*start_old_db,
                     st.RestoreSnapshot("restore-db", "rollback", "Restore the database from the environment's snapshot",
                                        argv=tuple(rp_args(f.snapshot_restore_command, run_id)),
                                        timeout=f.migration_timeout)]
    else:
        rollback += [*start_old_db,
                     st.RestoreDatabase("restore-db", "rollback", "Put each database back at the rollback point (by "
                                        "rename: no copy)", databases=tuple(
                                            (db, rollback_point_name(db, run_id), failed_db_name(db, run_id))
                                            for db in f.databases))]
    rollback += [
        st.StartServices("start-previous", "rollback", "Start the previous version by digest and wait for health",
                         argv=tuple(c.compose_up(pinned, wait_timeout=f.health_timeout, remove_orphans=True)), env=off,
                         timeout=up_timeout),
        st.Verify("verify-previous", "rollback", f"Verify the previous version: database at "
                  f"{', '.join(f.db_revision) or '(none)'}", project=pinned, heads=tuple(f.db_revision),
                  services=tuple(f.current_services), images=tuple(sorted((s, i["image"]) for s, i in
                                                                           f.current_images.items())),
                  check_images=False, version_argv=version_argv(pinned, f)),
        st.Cleanup("cleanup", "rollback", "Drop the rollback points and the failed state; remove one-off containers "
                   "and scratch folders", drop=points if f.rollback_method == rp.FILE_COPY else (),
                   failed=failed if f.rollback_method == rp.FILE_COPY else (), scratch=(scratch_glob(f),),
                   slots=pitr["slots"], folders=pitr["base"], failed_folders=pitr["failed"]),
    ]
    prepare: list[st.Step] = [st.Checkpoint("checkpoint", "backup", "Write the dirty buffers now, the old version "
                                            "still serving (not in the downtime)")]
    return Plan(f, backup, cutover, verify, finish, rollback, prepare)
