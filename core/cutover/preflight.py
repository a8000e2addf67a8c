"""Pre-flight: read the deployment and the target, validate everything, change nothing.

Every error raised here is a `PreflightError`: the deployment is exactly as it was.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import docker

from core import files
from core.settings import Settings
from core.io import commands as c
from core.io import db as dbops
from core.io import compose
from core.env import envmerge, envsync, flowmerge
from core.env.composeversion import ComposeFileNotYaml
from core.env.envlayout import ComposeLayoutUnreadable
from core.backup import kept
from core.migrations import revgraph
from core.migrations.environment import ENV_SCRIPT, migration_sources, transaction_shape
from core.backup import rollbackpoint as rp
from core.cutover import rollback_methods as rm
from core.io.compose import ResolvedConfig, parse_ps
from core.cutover.inputs import check_checkout, check_env_file, missing_images
from core.errors import (CommandFailed, ComposeDirDirty, ImageMissing, InsufficientDisk, InvalidComposeFile,
                         MissingPrivilege, NotDeployed, UnknownMigrationService, UnknownRef,
                         UnsupportedServer)
from core.io.engine import current_images
from core.io.executor import run
from core.cutover.facts import (DatabaseFacts, DeployedFacts, Facts, RollbackFacts, RunFacts,
                                 TargetFacts)
from core.cutover.steps import MERGED_ENV
from core.stackio import StackIO


PG_15 = 150000  # server_version_num of PostgreSQL 15.0: CREATE DATABASE … STRATEGY FILE_COPY
MAX_NAME_BYTES = 63  # PostgreSQL's identifier limit (NAMEDATALEN - 1)


@dataclass(frozen=True)
class UpgradeRequest:
    """What a run asks pre-flight for: the environment's name, the release, the run's folder and id, and the
    operator's choices (accept the env conflicts; a promotion's pinned digests)."""

    environment: str
    target: str
    run_dir: Path
    run_id: str = ""
    accept_env_conflicts: bool = False
    pins: dict[str, str] | None = None

    @property
    def scratch(self) -> Path:
        """Pre-flight's scratch folder beside the run folders (the recovery removes it if the runner is killed)."""
        return self.run_dir.parent / f".scratch-{self.run_id or os.getpid()}"


def resolve_commit(compose_dir: Path, ref: str) -> str:
    done = run(c.git_rev_parse(compose_dir, ref), check=False)
    if done.returncode != 0:
        raise UnknownRef(ref, str(compose_dir))
    return done.stdout.strip()




def render_sql_command(template: list[str], sql_range: str) -> list[str]:
    return [a.replace("{range}", sql_range) for a in template]


def check_privileges(db: dbops.DbAccess, databases: list[str], run_id: str = "") -> dict:
    """The rollback point creates databases (`STRATEGY FILE_COPY`, PostgreSQL 15+), and the restore renames them
    after ending their sessions: the role needs CREATEDB (or superuser), must own (or be a member of the owner of)
    each database, and may end the sessions other roles hold on them. Returns the facts read, with sizes."""
    p = dbops.role_privileges(db, databases)
    if p["server_version_num"] < PG_15:
        raise UnsupportedServer(f"it is PostgreSQL {p['server_version_num'] // 10000}; the rollback point needs "
                                f"15 or later (CREATE DATABASE … STRATEGY FILE_COPY)")
    for name in databases:
        longest = rm.FileCopy.failed_name(name, run_id or "x" * 8)
        if len(longest.encode()) > MAX_NAME_BYTES:
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
               point_bytes: int | None = None) -> int | None:
    """The backup (dump ≈ database size at worst, plus the volumes' archive) goes to `backup_dir`; the rollback
    point copies the databases (FILE_COPY) or the cluster (a PITR base backup) beside the server's data directory.
    Each must fit, with 10 % to spare. Returns what is left beside the data directory (None: not on this host)."""
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
    data = next((c for d in data_dirs[:1] for c in (d, *d.parents) if c.exists()), None)
    free, need, _ = needs.get(os.stat(data).st_dev, [None, 0, []]) if data is not None else [None, 0, []]
    return int(free - need) if free is not None else None


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


def rollback_probes(cfg: Settings, db: dbops.DbAccess, client: docker.DockerClient, deployed: Deployed,
                    run_id: str) -> rm.Probes:
    """What choosing the rollback point may ask the server and the engine: where the cluster's data directory is
    (for PITR, with what would stop it) and how fast the server copies a database."""
    def pitr_data_dir() -> tuple[rp.DataDir | None, str]:
        data, blocker = locate_data_dir(client, deployed.config, list(cfg.database.services), deployed.running)
        return data, (pitr_blocker(dbops.pitr_facts(db)) if data is not None else blocker)

    return rm.Probes(pitr_data_dir, lambda: dbops.measure_copy_rate(db, run_id or "x"))


def choose_rollback_point(cfg: Settings, database_bytes: int,
                          probes: rm.Probes) -> tuple[rp.Forecast, rp.DataDir | None]:
    """Which rollback point this upgrade takes and what it will cost (see `core.cutover.rollback_methods`). The copy
    rate is measured on the server with a probe (unless the migration probe is off). Refuses an explicit method
    that cannot work here."""
    point = cfg.rollback_point
    request = rm.Request(point.method, tuple(point.snapshot_command), tuple(point.snapshot_restore_command),
                         point.file_copy_max_seconds, bool(cfg.migration.probe))
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


@dataclass(frozen=True)
class Deployed:
    """What `read_deployed` found: the checkout's commits, the services up as they should be (running, or a one-shot
    job that exited 0: `ResolvedConfig.jobs`) and the resolved config."""

    current_commit: str
    target_commit: str
    running: list[str]
    config: ResolvedConfig


def read_deployed(io_: StackIO, cfg: Settings, target: str) -> Deployed:
    """The checkout (both commits, no local edits) and what compose runs now; the resolved config is kept for the
    backup, which then need not ask compose again."""
    compose_dir = Path(cfg.stack.compose_dir)
    check_checkout(compose_dir)
    target_commit = resolve_commit(compose_dir, target)
    current_commit = resolve_commit(compose_dir, "HEAD")
    dirty = run(c.git_status_tracked(compose_dir)).stdout.splitlines()
    if dirty:
        raise ComposeDirDirty(str(compose_dir), [line[3:] for line in dirty])
    check_env_file(compose_dir / cfg.stack.env_file)  # stackshift's own parser, before compose reads it
    current = c.ComposeProject.of(cfg.stack)
    statuses = parse_ps(io_.run(c.Command(c.compose_ps_json(current))).stdout)
    if not any(s.state == "running" for s in statuses):
        raise NotDeployed(cfg.stack.project_name)
    resolved = io_.run(c.Command(c.compose_config_json(current))).stdout
    read = [*current.files, *filter(None, [current.env_file])]
    kept.keep(c.compose_config_json(current), read, resolved)  # the backup records it
    config = ResolvedConfig.parse(resolved)
    jobs = set(config.jobs(cfg.health.jobs))
    up = sorted({s.service for s in statuses
                 if s.state == "running" or (s.service in jobs and s.verdict(job=True) == "ok")})
    return Deployed(current_commit, target_commit, up, config)


def merge_env(cfg: Settings, deployed: Deployed) -> flowmerge.FlowMerge:
    """The one env merge of the run: the operator's .env, from the deployed release's template onto the target's,
    and with Dify's split layout (1.14+) every `envs/**.env` copy it has; the block's `env_slim` and
    `generate_missing_secrets` applied (`core.env.flowmerge`)."""
    compose_dir, stack = Path(cfg.stack.compose_dir), cfg.stack
    release = flowmerge.Release(compose_dir, tuple(stack.compose_files), deployed.current_commit,
                                deployed.target_commit,
                                envsync.template_at(compose_dir, deployed.current_commit, stack.env_template),
                                envsync.template_at(compose_dir, deployed.target_commit, stack.env_template))
    required = envsync.required_at(compose_dir, deployed.target_commit, stack.compose_files)
    options = flowmerge.Options(stack.env_slim, stack.generate_missing_secrets, frozenset(stack.secret_env_keys))
    return flowmerge.merge(release, compose_dir / stack.env_file, required, options)


def read_target(io_: StackIO, cfg: Settings, request: UpgradeRequest, target_commit: str,  # noqa: PLR0913 (the run, then the merge and its secret keys)
                merged: envmerge.MergeResult, *, secret_keys: frozenset[str] = frozenset()) -> ResolvedConfig:
    """The target release's resolved config, with the merged .env: compose accepts its files, then the merged .env,
    and everything the target needs starts. Works on a copy of the release in the request's scratch folder
    (removed)."""
    compose_dir, scratch, target = Path(cfg.stack.compose_dir), request.scratch, request.target
    scratch.mkdir(parents=True, mode=0o700, exist_ok=True)
    try:
        envsync.extract_release(compose_dir, target_commit, cfg.stack.compose_files, scratch)
        files.write_atomic(scratch / "merged.env", merged.text, keep_mode=True)
        staged = c.ComposeProject(compose_dir, tuple(scratch / "tree" / f for f in cfg.stack.compose_files),
                                  scratch / "merged.env", cfg.stack.project_name)
        try:  # the release's own files first (syntax, schema), before any variable is read
            io_.run(c.Command(c.compose_config_check(staged)))
        except CommandFailed as exc:
            raise InvalidComposeFile(target, exc.stderr.strip().splitlines()[-1] if exc.stderr.strip()
                                      else str(exc)) from None
        # then the merged .env: compose accepts it, and it starts everything the target needs
        with envsync.target_tree(compose_dir, target_commit, cfg.stack.compose_files, scratch=scratch) as target_files:
            envsync.check_startable(target_files, merged, cfg.database.services, request.accept_env_conflicts,
                                    frozenset(cfg.stack.secret_env_keys) | secret_keys)
        return ResolvedConfig.parse(io_.run(c.Command(c.compose_config_json(staged))).stdout)
    finally:
        shutil.rmtree(scratch)


def read_database(db: dbops.DbAccess, cfg: Settings, run_id: str) -> tuple[DatabaseFacts, dict]:
    """The databases (reachable, the role's privileges, their sizes) and the app database's Alembic revision."""
    names = cfg.database.all_names
    privileges = check_privileges(db, names, run_id)
    revision = dbops.alembic_revisions(db, cfg.database.name)
    for extra in cfg.database.extra_databases:
        db.connect(extra).close()
    return DatabaseFacts(names=names, revision=revision), privileges


def read_target_images(io_: StackIO, client: docker.DockerClient, cfg: Settings, target_cfg: ResolvedConfig,
                       pins: dict[str, str] | None) -> dict[str, str]:
    """The target's images (pinned to staging's digests in a promotion), each present in its registry; the migrate
    service's image pulled (after the registry login) so its revision files can be read."""
    auth = None
    if cfg.registry.username and cfg.registry.password:
        auth = {"username": cfg.registry.username, "password": cfg.registry.password.get_secret_value()}
    if cfg.migration.service not in target_cfg.services:
        raise UnknownMigrationService(cfg.migration.service, target_cfg.services)
    images = compose.apply_pins(target_cfg.images(), pins or {})  # a promotion: staging's verified digests
    missing = missing_images(client, list(images.values()), auth)
    if missing:
        raise ImageMissing(missing)
    registry_login(io_, cfg)
    io_.run(c.Command(c.docker_pull(images[cfg.migration.service])))
    return images


def read_revisions(client: docker.DockerClient, cfg: Settings, image: str,
                   revision: list[str]) -> tuple[revgraph.RevisionState, tuple[bool, str]]:
    """The target's Alembic graph, read from the migrate image's revision files, against the database's revision;
    and its transaction shape (`transaction_shape`)."""
    sources = migration_sources(client, image, cfg.migration.versions_path, cfg.stack.project_name)
    env_script = sources.pop(ENV_SCRIPT, None)
    return revgraph.state(revgraph.RevisionGraph.from_sources(sources), revision), transaction_shape(cfg, env_script)


def volume_layout(cfg: Settings, current: ResolvedConfig, target: ResolvedConfig) -> tuple[list[str], list[Path]]:
    """What the volumes' archive leaves out (the database's live data, in either release) and the current
    database's data directories."""
    volumes_root = Path(cfg.stack.compose_dir) / "volumes"
    excludes = ["./" + str(src.relative_to(volumes_root))
                for service in cfg.database.services for resolved in (current, target) if service in resolved.services
                for src in resolved.bind_sources(service) if src.is_relative_to(volumes_root)]
    data_dirs = [src for service in cfg.database.services if service in current.services
                 for src in current.bind_sources(service)]
    return sorted(set(excludes)), data_dirs


def gather(cfg: Settings, request: UpgradeRequest, client: docker.DockerClient | None = None) -> Facts:
    """Reads everything the plan needs; raises a PreflightError and changes nothing if anything is off.

    Every Docker call, SDK or CLI, goes to the environment's engine (`stack.docker_host`); a silent engine is
    refused first.
    """
    io_ = StackIO(cfg, cfg.stack.project_name)
    client = client or io_.endpoint.client()
    deployed = read_deployed(io_, cfg, request.target)
    try:  # once: the env-sync task publishes it, install-env installs it
        merged = merge_env(cfg, deployed)
    except (ComposeLayoutUnreadable, ComposeFileNotYaml) as exc:  # the target's compose file: what pre-flight calls it
        raise InvalidComposeFile(request.target, exc.detail) from None
    target_cfg = read_target(io_, cfg, request, deployed.target_commit, merged.env,
                             secret_keys=frozenset(merged.generated))
    db = dbops.DbAccess.of(cfg)
    database, privileges = read_database(db, cfg, request.run_id)
    images = read_target_images(io_, client, cfg, target_cfg, request.pins)
    revisions, (per_migration, shape_from) = read_revisions(client, cfg, images[cfg.migration.service],
                                                            database.revision)
    render = cfg.migration.render_sql_command
    sql_command = render_sql_command(list(render), revisions.sql_range) if revisions.pending and render else []
    excludes, data_dirs = volume_layout(cfg, deployed.config, target_cfg)
    db_bytes = sum(privileges["sizes"].values())
    forecast, data_dir = choose_rollback_point(cfg, db_bytes, rollback_probes(cfg, db, client, deployed,
                                                                              request.run_id))
    point_bytes = rm.by_name(forecast.method).point_bytes(db_bytes, lambda: dbops.pitr_facts(db)["cluster_bytes"])
    volumes_root = Path(cfg.stack.compose_dir) / "volumes"
    room = check_disk(Path(cfg.backup.dir), data_dirs, db_bytes,
                      dir_bytes(volumes_root, data_dirs) if volumes_root.is_dir() else 0, point_bytes)
    return Facts(
        settings=cfg,
        run=RunFacts(environment=request.environment, id=request.run_id, dir=request.run_dir,
                     volume_excludes=excludes, dump_jobs=cfg.backup.jobs()),
        current=DeployedFacts(commit=deployed.current_commit, services=deployed.config.services,
                              running=deployed.running, images=current_images(client, cfg.stack.project_name),
                              jobs=deployed.config.jobs(cfg.health.jobs)),
        target=TargetFacts(ref=request.target, commit=deployed.target_commit, services=target_cfg.services,
                           images=images, heads=[revisions.head], pending_revisions=revisions.pending,
                           noop_downgrades=revisions.noop_downgrades, render_sql_command=sql_command,
                           jobs=target_cfg.jobs(cfg.health.jobs), transaction_per_migration=per_migration,
                           transaction_shape_from=shape_from),
        database=dataclasses.replace(database, room_bytes=room),
        rollback=RollbackFacts(method=forecast.method, forecast=forecast.to_dict(), data_dir={
            "service": data_dir.service, "host": str(data_dir.host), "container": str(data_dir.container)}
            if data_dir else None),
        env_sync=flowmerge.stage(merged, request.run_dir / MERGED_ENV, frozenset(cfg.stack.secret_env_keys)),
    )
