"""What end-to-end tests observe of a deployment, all read from real sources."""
import json
import subprocess

from prefect.client.orchestration import get_client

from core.io.compose import parse_ps
from core.cutover.lock import LOCK_FILE
from lab import stack


def services(dep: stack.Deployment) -> dict:
    out = subprocess.run(["docker", "compose", "-p", dep.name, "ps", "--all", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    return {s.service: s for s in parse_ps(out)}


def revision(dep: stack.Deployment) -> list[str]:
    with dep.connect() as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def tables(dep: stack.Deployment) -> set[str]:
    with dep.connect() as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def schemas(dep: stack.Deployment) -> set[str]:
    with dep.connect() as conn:
        return {r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema)'")}


def databases(dep: stack.Deployment) -> set[str]:
    with dep.connect("postgres") as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")}


def head(dep: stack.Deployment) -> str:
    return subprocess.run(["git", "-C", str(dep.compose_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def snapshot(dep: stack.Deployment) -> dict:
    """Everything an upgrade could change: git HEAD, .env bytes and mode, containers, schema, data, databases,
    backups."""
    ctrs = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={dep.name}",
                           "--format", "{{.ID}} {{.Image}} {{.State}}"], check=False, capture_output=True,
                          text=True).stdout
    env = dep.compose_dir / ".env"
    return {
        "head": head(dep), "env": env.read_bytes(), "env_mode": env.stat().st_mode & 0o777,
        "containers": sorted(ctrs.splitlines()), "revision": revision(dep), "tables": tables(dep),
        "schemas": schemas(dep),
        "data": stack.checksums(dep), "databases": databases(dep),
        # the stack's lock file is taken (created) before anything is read: it is not a change to the stack
        "backups": sorted(p.name for p in dep.backup_dir.rglob("*") if p.is_file() and p.name != LOCK_FILE)
        if dep.backup_dir.exists() else [],
        "env_backups": sorted(p.name for p in (dep.compose_dir / "env-backup").glob("*"))
        if (dep.compose_dir / "env-backup").exists() else [],
    }


def artifacts(prefix: str) -> dict[str, str]:
    """Latest artifact of each key starting with `prefix`: key → its data (markdown text or table JSON)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=prefix)))
    out = {}
    for a in sorted(found, key=lambda a: a.created):
        out[a.key] = a.data if isinstance(a.data, str) else json.dumps(a.data)
    return out
