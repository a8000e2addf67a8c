"""Pre-flight: read the deployment and the target, validate everything, change nothing.

Every error raised here is a `PreflightError`: the deployment is exactly as it was.
"""
from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path

import docker

from core import commands as c
from core import db as dbops
from core import envfile, envmerge, envsync, revgraph
from core.compose import ResolvedConfig, image_repo, parse_ps
from core.errors import (CommandFailed, ComposeDirDirty, ImageMissing, InvalidComposeFile, MigrationFileUnreadable,
                         NotDeployed, UnknownRef)
from core.executor import run
from core.plan import Facts


def _current_project(cfg) -> c.ComposeProject:
    d = Path(cfg.compose_dir)
    return c.ComposeProject(d, tuple(d / f for f in cfg.compose_files), d / cfg.env_file, cfg.project_name)


def resolve_commit(compose_dir: Path, ref: str) -> str:
    done = run(c.git_rev_parse(compose_dir, ref), check=False)
    if done.returncode != 0:
        raise UnknownRef(ref, str(compose_dir))
    return done.stdout.strip()


def current_images(client: docker.DockerClient, project: str) -> dict[str, dict]:
    """Per service of the running project: configured image, image id and repo digest (docker SDK)."""
    out = {}
    for ctr in client.containers.list(filters={"label": f"com.docker.compose.project={project}"}):
        service = ctr.labels.get("com.docker.compose.service")
        if not service or ctr.labels.get("com.docker.compose.oneoff") == "True":
            continue
        ref = ctr.attrs["Config"]["Image"]
        image = client.images.get(ctr.attrs["Image"])
        repo = image_repo(ref)
        digests = [d for d in image.attrs.get("RepoDigests") or [] if d.startswith(repo + "@")]
        out[service] = {"image": ref, "id": image.id, "repo_digest": digests[0] if digests else None}
    return out


def missing_images(client: docker.DockerClient, images: list[str], auth: dict | None) -> list[str]:
    missing = []
    for image in sorted(set(images)):
        try:
            client.images.get_registry_data(image, auth_config=auth)
        except docker.errors.APIError:
            missing.append(image)
    return missing


def migration_sources(client: docker.DockerClient, image: str, versions_path: str) -> dict[str, str]:
    """The revision files of an image, copied out of a created (never started) container: nothing runs."""
    ctr = client.containers.create(image, command=["true"], network_disabled=True)
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


def gather(cfg, environment: str, target: str, run_dir: Path, client: docker.DockerClient | None = None) -> Facts:
    """Reads everything the plan needs; raises a PreflightError and changes nothing if anything is off."""
    client = client or docker.from_env()
    compose_dir = Path(cfg.compose_dir)
    current = _current_project(cfg)
    target_commit = resolve_commit(compose_dir, target)
    current_commit = resolve_commit(compose_dir, "HEAD")
    dirty = run(c.git_status_tracked(compose_dir)).stdout.splitlines()
    if dirty:
        raise ComposeDirDirty(str(compose_dir), [line[3:] for line in dirty])

    statuses = parse_ps(run(c.compose_ps_json(current)).stdout)
    running = sorted(s.service for s in statuses if s.state == "running")
    if not running:
        raise NotDeployed(cfg.project_name)
    current_cfg = ResolvedConfig.parse(run(c.compose_config_json(current)).stdout)

    old_template = envsync.template_at(compose_dir, current_commit, cfg.env_template)
    new_template = envsync.template_at(compose_dir, target_commit, cfg.env_template)
    merged = envsync.merge_for(compose_dir / cfg.env_file, old_template, new_template)
    staging = Path(tempfile.mkdtemp(prefix="stackshift-target-"))
    try:
        run(c.git_archive(compose_dir, target_commit, staging / "target.tar"))
        (staging / "tree").mkdir()
        run(c.tar_extract(staging / "target.tar", staging / "tree"))
        envfile.write_atomic(staging / "merged.env", merged.text)
        staged = c.ComposeProject(compose_dir, tuple(staging / "tree" / f for f in cfg.compose_files),
                                  staging / "merged.env", cfg.project_name)
        try:
            target_cfg = ResolvedConfig.parse(run(c.compose_config_json(staged)).stdout)
        except CommandFailed as exc:
            raise InvalidComposeFile(target, exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else str(exc)) from None
    finally:
        shutil.rmtree(staging)

    db = dbops.DbAccess.of(cfg)
    databases = [cfg.db_name, *cfg.extra_databases]
    revision = dbops.alembic_revisions(db, cfg.db_name)
    for extra in cfg.extra_databases:
        db.connect(extra).close()

    auth = None
    if cfg.registry_username and cfg.registry_password:
        auth = {"username": cfg.registry_username, "password": cfg.registry_password.get_secret_value()}
    images = target_cfg.images()
    missing = missing_images(client, list(images.values()), auth)
    if missing:
        raise ImageMissing(missing)
    migrate_image = images[cfg.migrate_service]
    run(c.docker_pull(migrate_image))
    graph = revgraph.RevisionGraph.from_sources(migration_sources(client, migrate_image, cfg.migrations_path))
    revisions = revgraph.state(graph, revision)
    sql_command = render_sql_command(cfg.render_sql_command, revisions.sql_range) if revisions.pending else []

    excludes = []
    volumes_root = compose_dir / "volumes"
    for service in cfg.db_services:
        for cfg_ in (current_cfg, target_cfg):
            if service in cfg_.services:
                for src in cfg_.bind_sources(service):
                    if src.is_relative_to(volumes_root):
                        excludes.append("./" + str(src.relative_to(volumes_root)))
    secret_keys = frozenset(cfg.secret_env_keys)
    return Facts(
        environment=environment, project=cfg.project_name, compose_dir=compose_dir,
        compose_files=list(cfg.compose_files), env_file=cfg.env_file, env_template=cfg.env_template,
        current_commit=current_commit, target_ref=target, target_commit=target_commit,
        current_services=current_cfg.services, running_services=running, target_services=target_cfg.services,
        current_images=current_images(client, cfg.project_name), target_images=images,
        db_name=cfg.db_name, databases=databases, db_host=cfg.db_host, db_port=cfg.db_port, db_user=cfg.db_user,
        db_revision=revision, target_heads=[revisions.head], pending_revisions=revisions.pending,
        noop_downgrades=revisions.noop_downgrades, render_sql_command=sql_command, db_services=list(cfg.db_services),
        writer_services=list(cfg.writer_services), migrate_service=cfg.migrate_service,
        migrate_command=list(cfg.migrate_command), migration_switch=cfg.migration_switch,
        health_timeout=cfg.health_timeout_seconds, run_dir=run_dir, volume_excludes=sorted(set(excludes)),
        env_report=envmerge.masked_changes(merged, secret_keys), env_counts=merged.counts(),
    )
