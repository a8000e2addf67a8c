"""Pre-flight: read the deployment and the target, validate everything, change nothing.

Every error raised here is a `PreflightError`: the deployment is exactly as it was.
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import docker

from core.settings import Settings
from core.io import commands as c
from core.io import db as dbops
from core.io import compose
from core.env import envfile
from core.env import envsync
from core.backup import kept
from core.migrations import revgraph
from core.backup import rollbackpoint as rp
from core.cutover import rollback_methods as rm
from core.io.compose import ResolvedConfig, parse_ps
from core.errors import (CommandFailed, ComposeDirDirty, ImageMissing, InsufficientDisk, InvalidComposeFile,
                         MigrationFileUnreadable, MissingPrivilege, NotDeployed, UnknownRef,
                         UnsupportedServer)
from core.io.engine import current_images
from core.io.executor import run
from core.cutover.plan import Facts
from core.cutover.steps import MERGED_ENV
from core.stackio import StackIO


def _current_project(cfg: Settings) -> c.ComposeProject:
    d = Path(cfg.stack.compose_dir)
    return c.ComposeProject(d, tuple(d / f for f in cfg.stack.compose_files), d / cfg.stack.env_file, cfg.stack.project_name)


def resolve_commit(compose_dir: Path, ref: str) -> str:
    done = run(c.git_rev_parse(compose_dir, ref), check=False)
    if done.returncode != 0:
        raise UnknownRef(ref, str(compose_dir))
    return done.stdout.strip()


def missing_images(client: docker.DockerClient, images: list[str], auth: dict | None) -> list[str]:
    missing = []
    for image in sorted(set(images)):
        try:
            client.images.get_registry_data(image, auth_config=auth)
        except docker.errors.APIError:
            missing.append(image)
    return missing


def migration_sources(client: docker.DockerClient, image: str, versions_path: str, stack: str = "") -> dict[str, str]:
    """The revision files of an image, copied out of a created (never started) container: nothing runs."""
    ctr = client.containers.create(image, command=["true"], network_disabled=True, labels={c.STACK_LABEL: stack})
    try:
        try:
            stream, _ = ctr.get_archive(versions_path)
        except docker.errors.NotFound:
            raise MigrationFileUnreadable(versions_path, f"no such folder in {image}; set the block's "
                                                         f"migrations_path") from None
        data = b"".join(stream)
    finally:
        ctr.remove(force=True)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 2 and revgraph.is_revision_filename(parts[1]):
                out[parts[1]] = tar.extractfile(m).read().decode("utf-8")
    return out


def render_sql_command(template: list[str], sql_range: str) -> list[str]:
    return [a.replace("{range}", sql_range) for a in template]


def check_privileges(db: dbops.DbAccess, databases: list[str], run_id: str = "") -> dict:
    """The rollback point creates databases (`STRATEGY FILE_COPY`, PostgreSQL 15+), and the restore renames them
    after ending their sessions: the role needs CREATEDB (or superuser), must own (or be a member of the owner of)
    each database, and may end the sessions other roles hold on them. Returns the facts read, with sizes."""
    p = dbops.role_privileges(db, databases)
    if p["server_version_num"] < 150000:
        raise UnsupportedServer(f"it is PostgreSQL {p['server_version_num'] // 10000}; the rollback point needs "
                                f"15 or later (CREATE DATABASE … STRATEGY FILE_COPY)")
    for name in databases:
        longest = rm.FileCopy.failed_name(name, run_id or "x" * 8)
        if len(longest.encode()) > 63:
            raise UnsupportedServer(f"the database name {name!r} is too long for the rollback point's names "
                                    f"({longest!r} passes PostgreSQL's 63-byte limit); at most 43 bytes")
    if not (p["createdb"] or p["superuser"]):
        raise MissingPrivilege(db.user, "it has neither CREATEDB nor superuser")
    if p["other_roles"] and not (p["superuser"] or p["signal_backend"]):
        raise MissingPrivilege(db.user, f"sessions of other roles ({', '.join(p['other_roles'])}) are open on the "
                                        f"databases and it may not end them (grant it pg_signal_backend)")
    not_owned = [d for d in databases if not (p["superuser"] or p["member_of_owner"].get(d))]
    if not_owned:
        raise MissingPrivilege(db.user, f"it does not own {', '.join(not_owned)} (owner "
                                        f"{', '.join(p['owners'][d] for d in not_owned)}), so it cannot rename them")
    return p


def free_bytes(path: Path) -> int | None:
    """Free bytes on the filesystem holding `path` (its nearest existing parent); None if unknown."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            st = os.statvfs(candidate)
            return st.f_bavail * st.f_frsize
    return None


def check_disk(backup_dir: Path, data_dirs: list[Path], db_bytes: int, volume_bytes: int,
               point_bytes: int | None = None) -> None:
    """The backup (dump ≈ database size at worst, plus the volumes' archive) goes to `backup_dir`; the rollback
    point copies the databases (FILE_COPY) or the cluster (a PITR base backup) beside the server's data directory.
    Each must fit, with 10 % to spare."""
    point_bytes = db_bytes if point_bytes is None else point_bytes
    needs: dict[int, list] = {}  # filesystem (st_dev) → [free bytes, needed bytes, what]
    for path, need, what in [(backup_dir, (db_bytes + volume_bytes) * 1.1, "the backup"),
                             *((d, point_bytes * 1.1, "the rollback point") for d in data_dirs[:1])]:
        existing = next((c for c in (path, *path.parents) if c.exists()), None)
        if existing is None:
            continue
        entry = needs.setdefault(os.stat(existing).st_dev, [free_bytes(existing), 0, []])
        entry[1] += need
        entry[2].append(f"{what} in {path}")
    problems = [f"{' and '.join(what)} need up to {need / 1e9:.2f} GB on one filesystem, which has "
                f"{free / 1e9:.2f} GB free" for free, need, what in needs.values() if free is not None and free < need]
    if problems:
        raise InsufficientDisk(problems)


def pitr_blocker(facts: dict) -> str:
    """Why the server or role cannot give a PITR rollback point ('' when it can)."""
    if facts["wal_level"] not in ("replica", "logical"):
        return f"wal_level is {facts['wal_level']} (needs replica, PostgreSQL's default)"
    if facts["max_wal_senders"] <= facts["senders_used"]:
        return f"max_wal_senders ({facts['max_wal_senders']}) leaves no WAL sender for the base backup"
    if facts["max_replication_slots"] <= facts["slots_used"]:
        return f"max_replication_slots ({facts['max_replication_slots']}) leaves no slot free"
    if not (facts["replication"] or facts["superuser"]):
        return "the role has neither REPLICATION nor superuser (`ALTER ROLE … REPLICATION`)"
    if not (facts["restore_point"] or facts["superuser"]):
        return "the role may not run pg_create_restore_point (`GRANT EXECUTE ON FUNCTION pg_create_restore_point`)"
    return ""


def locate_data_dir(client: docker.DockerClient, current_cfg: ResolvedConfig, db_services: list[str],
                    running: list[str]) -> tuple[rp.DataDir | None, str]:
    """The running database service's data directory on this host, or why PITR cannot use it."""
    service = next((s for s in db_services if s in running and s in current_cfg.services), None)
    if service is None:
        return None, "no database service of the block's db_services is running in this project"

    def mountpoint(name: str) -> str | None:
        try:
            return client.volumes.get(name).attrs.get("Mountpoint")
        except docker.errors.APIError:
            return None

    data, why = rp.data_dir(current_cfg.raw["services"][service], service, mountpoint)
    if data is None:
        return None, why
    if not (data.host / "PG_VERSION").exists():
        return None, (f"the data directory {data.host} is not on this host (run stackshift on the database's host, "
                      f"where its worker runs)")
    return data, ""


def choose_rollback_point(cfg: Settings, db: dbops.DbAccess, client: docker.DockerClient, current_cfg: ResolvedConfig,
                          running: list[str], database_bytes: int, run_id: str) -> tuple[rp.Forecast, rp.DataDir | None]:
    """Which rollback point this upgrade takes and what it will cost (see `core.cutover.rollback_methods`). The copy
    rate is measured on the server with a probe (unless the block's migration_probe is off). Refuses an explicit
    method that cannot work here."""
    def pitr_data_dir() -> tuple[rp.DataDir | None, str]:
        data, blocker = locate_data_dir(client, current_cfg, cfg.database.services, running)
        return data, (pitr_blocker(dbops.pitr_facts(db)) if data is not None else blocker)

    request = rm.Request(cfg.rollback_point.method, tuple(cfg.rollback_point.snapshot_command), tuple(cfg.rollback_point.snapshot_restore_command),
                         cfg.rollback_point.file_copy_max_seconds, bool(cfg.migration.probe))
    probes = rm.Probes(pitr_data_dir, lambda: dbops.measure_copy_rate(db, run_id or "x"))
    chosen = rm.choose(request, database_bytes, probes)
    return chosen.forecast, chosen.data_dir


def dir_bytes(root: Path, excludes: list[Path]) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in excludes]
        total += sum((here / f).lstat().st_size for f in filenames if not (here / f).is_symlink())
    return total


def registry_login(io_: StackIO, cfg: Settings) -> None:
    """Logs the environment's engine in to the target's registry (password on stdin), before any pull."""
    if cfg.registry.username and cfg.registry.password and cfg.registry.host:
        io_.run(c.Command(c.docker_login(cfg.registry.host, cfg.registry.username),
                          stdin=cfg.registry.password.get_secret_value().encode()))


def gather(cfg: Settings, environment: str, target: str, run_dir: Path, client: docker.DockerClient | None = None,
           run_id: str = "", accept_env_conflicts: bool = False, pins: dict[str, str] | None = None) -> Facts:
    """Reads everything the plan needs; raises a PreflightError and changes nothing if anything is off.

    Every Docker call, SDK or CLI, goes to the block's engine (`docker_host`); a silent engine is refused first.
    """
    io_ = StackIO(cfg, cfg.stack.project_name)
    client = client or io_.endpoint.client()
    compose_dir = Path(cfg.stack.compose_dir)
    current = _current_project(cfg)
    target_commit = resolve_commit(compose_dir, target)
    current_commit = resolve_commit(compose_dir, "HEAD")
    dirty = run(c.git_status_tracked(compose_dir)).stdout.splitlines()
    if dirty:
        raise ComposeDirDirty(str(compose_dir), [line[3:] for line in dirty])

    statuses = parse_ps(io_.run(c.Command(c.compose_ps_json(current))).stdout)
    running = sorted(s.service for s in statuses if s.state == "running")
    if not running:
        raise NotDeployed(cfg.stack.project_name)
    resolved = io_.run(c.Command(c.compose_config_json(current))).stdout
    current_cfg = ResolvedConfig.parse(resolved)
    kept.keep(c.compose_config_json(current), [*current.files, current.env_file], resolved)  # the backup records it

    old_template = envsync.template_at(compose_dir, current_commit, cfg.stack.env_template)
    new_template = envsync.template_at(compose_dir, target_commit, cfg.stack.env_template)
    required = envsync.required_at(compose_dir, target_commit, cfg.stack.compose_files)
    merged, env_source = envsync.merge_env(compose_dir / cfg.stack.env_file, old_template, new_template, required)  # once
    staging = run_dir.parent / f".scratch-{run_id or os.getpid()}"  # the recovery removes it if we are killed
    staging.mkdir(parents=True, mode=0o700, exist_ok=True)
    try:
        run(c.git_archive(compose_dir, target_commit, staging / "target.tar"))
        (staging / "tree").mkdir()
        run(c.tar_extract(staging / "target.tar", staging / "tree"))
        envfile.write_atomic(staging / "merged.env", merged.text)
        staged = c.ComposeProject(compose_dir, tuple(staging / "tree" / f for f in cfg.stack.compose_files),
                                  staging / "merged.env", cfg.stack.project_name)
        try:  # the release's own files first (syntax, schema), before any variable is read
            io_.run(c.Command(c.compose_config_check(staged)))
        except CommandFailed as exc:
            raise InvalidComposeFile(target, exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else str(exc)) from None
        # then the merged .env: compose accepts it, and it starts everything the target needs
        with envsync.target_tree(compose_dir, target_commit, cfg.stack.compose_files, scratch=staging) as target_files:
            envsync.check_startable(target_files, merged, cfg.database.services, accept_env_conflicts,
                                    frozenset(cfg.stack.secret_env_keys))
        target_cfg = ResolvedConfig.parse(io_.run(c.Command(c.compose_config_json(staged))).stdout)
    finally:
        shutil.rmtree(staging)

    db = dbops.DbAccess.of(cfg)
    databases = [cfg.database.name, *cfg.database.extra_databases]
    privileges = check_privileges(db, databases, run_id)
    revision = dbops.alembic_revisions(db, cfg.database.name)
    for extra in cfg.database.extra_databases:
        db.connect(extra).close()

    auth = None
    if cfg.registry.username and cfg.registry.password:
        auth = {"username": cfg.registry.username, "password": cfg.registry.password.get_secret_value()}
    images = compose.apply_pins(target_cfg.images(), pins or {})  # a promotion: staging's verified digests
    missing = missing_images(client, list(images.values()), auth)
    if missing:
        raise ImageMissing(missing)
    migrate_image = images[cfg.migration.service]
    registry_login(io_, cfg)
    io_.run(c.Command(c.docker_pull(migrate_image)))
    graph = revgraph.RevisionGraph.from_sources(migration_sources(client, migrate_image, cfg.migration.versions_path,
                                                                  cfg.stack.project_name))
    revisions = revgraph.state(graph, revision)
    sql_command = render_sql_command(cfg.migration.render_sql_command, revisions.sql_range) \
        if revisions.pending and cfg.migration.render_sql_command else []

    excludes = []
    volumes_root = compose_dir / "volumes"
    for service in cfg.database.services:
        for cfg_ in (current_cfg, target_cfg):
            if service in cfg_.services:
                for src in cfg_.bind_sources(service):
                    if src.is_relative_to(volumes_root):
                        excludes.append("./" + str(src.relative_to(volumes_root)))
    data_dirs = [src for service in cfg.database.services if service in current_cfg.services
                 for src in current_cfg.bind_sources(service)]
    db_bytes = sum(privileges["sizes"].values())
    forecast, data_dir = choose_rollback_point(cfg, db, client, current_cfg, running, db_bytes, run_id)
    point_bytes = rm.by_name(forecast.method).point_bytes(db_bytes, lambda: dbops.pitr_facts(db)["cluster_bytes"])
    check_disk(Path(cfg.backup.dir), data_dirs, db_bytes, dir_bytes(volumes_root, data_dirs) if volumes_root.is_dir()
               else 0, point_bytes)
    secret_keys = frozenset(cfg.stack.secret_env_keys)
    return Facts(
        environment=environment, project=cfg.stack.project_name, compose_dir=compose_dir,
        compose_files=list(cfg.stack.compose_files), env_file=cfg.stack.env_file, env_template=cfg.stack.env_template,
        current_commit=current_commit, target_ref=target, target_commit=target_commit,
        current_services=current_cfg.services, running_services=running, target_services=target_cfg.services,
        current_images=current_images(client, cfg.stack.project_name), target_images=images,
        db_name=cfg.database.name, databases=databases, db_host=cfg.database.host, db_port=cfg.database.port, db_user=cfg.database.user,
        db_revision=revision, target_heads=[revisions.head], pending_revisions=revisions.pending,
        noop_downgrades=revisions.noop_downgrades, render_sql_command=sql_command, db_services=list(cfg.database.services),
        writer_services=list(cfg.writers.services), migrate_service=cfg.migration.service,
        migrate_command=list(cfg.migration.command), migration_switch=cfg.migration.switch,
        health_timeout=cfg.health.timeout_seconds, run_dir=run_dir, volume_excludes=sorted(set(excludes)),
        env_sync=envsync.stage(merged, run_dir / MERGED_ENV, env_source, secret_keys),
        run_id=run_id, migration_timeout=cfg.migration.timeout_seconds, keep_failed_database=cfg.rollback_point.keep_failed_database,
        rollback_method=forecast.method, rollback_forecast=forecast.to_dict(),
        data_dir={"service": data_dir.service, "host": str(data_dir.host), "container": str(data_dir.container)}
        if data_dir else None,
        snapshot_command=list(cfg.rollback_point.snapshot_command), snapshot_restore_command=list(cfg.rollback_point.snapshot_restore_command),
        dump_jobs=cfg.backup.dump_jobs or max(1, min(4, os.cpu_count() or 1)),
        stop_timeouts=dict(cfg.writers.stop_timeouts), version_command=list(cfg.health.version_command or []),
        rehearsal_command=list(cfg.migration.rehearsal.command or []),
    )
