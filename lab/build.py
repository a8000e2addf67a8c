"""Builds the lab's images and the demo stack's git repository, idempotently.

- `127.0.0.1:5000/lab/base:bookworm`: Debian 12 minbase with Python, SQLAlchemy, Alembic, psycopg2 and
  PostgreSQL 15, all from Debian packages (debootstrap + `docker import`), since no public image can be pulled.
- `127.0.0.1:5000/demo/postgres:15` and `127.0.0.1:5000/demo/app:{1.0.0,2.0.0,3.0.0,2.0.1,2.1.0}` built on it.
- `$STACKSHIFT_LAB_HOME/demo-stack.git`: the demo stack's compose directory, one tag per release.

The MLflow stack (`python -m lab.mlflow.build`, `lab/setup --mlflow`) is built apart: the demo does not need it, and
the test command builds it while the other tests run.

Each piece is rebuilt only when its inputs changed (a content hash is kept as a label or a file).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from http import HTTPStatus
from pathlib import Path

import docker

from lab.demo import releases
from lab.paths import DEMO_REPO, LAB_HOME

REGISTRY = "127.0.0.1:5000"
BASE = f"{REGISTRY}/lab/base:bookworm"
HERE = Path(__file__).resolve().parent
DEMO = HERE / "demo"
DEB_PACKAGES = "python3,python3-sqlalchemy,python3-alembic,python3-psycopg2,postgresql-15"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "stackshift lab", "GIT_AUTHOR_EMAIL": "lab@stackshift.invalid",
    "GIT_COMMITTER_NAME": "stackshift lab", "GIT_COMMITTER_EMAIL": "lab@stackshift.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def say(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def run(argv: list[str], **kw) -> None:
    subprocess.run(argv, check=True, **kw)


def in_registry(ref: str) -> bool:
    repo, tag = ref.removeprefix(f"{REGISTRY}/").rsplit(":", 1)
    req = urllib.request.Request(
        f"http://{REGISTRY}/v2/{repo}/manifests/{tag}", method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == HTTPStatus.OK
    except OSError:
        return False


def has_local(client: docker.DockerClient, ref: str, label: str | None = None) -> bool:
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return label is None or (image.labels or {}).get("stackshift.lab.inputs") == label


def ensure_base(client: docker.DockerClient) -> None:
    if has_local(client, BASE):
        if not in_registry(BASE):
            client.images.push(BASE)
        return
    if in_registry(BASE):
        say(f"pulling {BASE} from the local registry")
        client.images.pull(BASE)
        return
    say("building the base image with debootstrap (about a minute)")
    work = Path(tempfile.mkdtemp(prefix="base-", dir=LAB_HOME))
    rootfs = work / "rootfs"
    run(["debootstrap", "--variant=minbase", f"--include={DEB_PACKAGES}", "bookworm", str(rootfs),
         "http://deb.debian.org/debian"], stdout=subprocess.DEVNULL)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    tarball = work / "rootfs.tar"
    run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."])
    run(["docker", "import", str(tarball), BASE], stdout=subprocess.DEVNULL)
    shutil.rmtree(work)
    client.images.push(BASE)


def _digest_dir(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build_image(client: docker.DockerClient, ref: str, dockerfile: str, files: dict[str, Path]) -> None:
    label = _digest_dir(list(files.values()), dockerfile + json.dumps(sorted(files)))
    if not has_local(client, ref, label):
        say(f"building {ref}")
        with tempfile.TemporaryDirectory() as ctx:
            for rel, src in files.items():
                dest = Path(ctx, rel)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dest)
            Path(ctx, "Dockerfile").write_text(dockerfile + f'LABEL stackshift.lab.inputs="{label}"\n')
            client.images.build(path=ctx, tag=ref, rm=True)
    if not in_registry(ref) or client.images.get_registry_data(ref).id != _local_digest(client, ref):
        client.images.push(ref)


def _local_digest(client: docker.DockerClient, ref: str) -> str | None:
    repo = ref.rsplit(":", 1)[0]
    for digest in client.images.get(ref).attrs.get("RepoDigests") or []:
        if digest.startswith(repo + "@"):
            return digest.split("@", 1)[1]
    return None


def ensure_images(client: docker.DockerClient) -> None:
    build_image(
        client, f"{REGISTRY}/demo/postgres:{releases.POSTGRES_TAG}",
        f"FROM {BASE}\nCOPY pg_entrypoint.py /usr/local/bin/pg_entrypoint.py\n"
        "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin PGDATA=/var/lib/postgresql/data/pgdata\n"
        "STOPSIGNAL SIGINT\nEXPOSE 5432\n"
        'ENTRYPOINT ["python3", "/usr/local/bin/pg_entrypoint.py"]\n',
        {"pg_entrypoint.py": DEMO / "images" / "pg_entrypoint.py"},
    )
    app_files = {f"app/{p.name}": p for p in sorted((DEMO / "app").glob("*.*"))}
    app_files |= {f"app/migrations/{p.name}": p for p in sorted((DEMO / "app" / "migrations").iterdir())}
    for version, revisions in releases.APP_REVISIONS.items():
        files = app_files | {f"app/migrations/versions/{r}": DEMO / "revisions" / r for r in revisions}
        build_image(
            client, f"{REGISTRY}/demo/app:{version}",
            f"FROM {BASE}\nCOPY app /app\nENV APP_VERSION={version} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1\n"
            "WORKDIR /app\nSTOPSIGNAL SIGTERM\nEXPOSE 5001\n"
            'ENTRYPOINT ["python3", "/app/entrypoint.py"]\n',
            files,
        )


def ensure_release_repo(repo: Path, stamp_name: str, content: str, commit_releases) -> None:
    """A stack's compose directory as a bare git repository, one tag per release, rewritten only when `content` (what
    it holds) changed. `commit_releases(git, work)` writes and commits the releases in the work tree `work`."""
    stamp = hashlib.sha256(content.encode()).hexdigest()
    stamp_file = LAB_HOME / stamp_name
    if repo.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    say(f"writing the stack repository {repo}")
    shutil.rmtree(repo, ignore_errors=True)
    env = os.environ | GIT_ENV
    with tempfile.TemporaryDirectory() as work:
        run(["git", "init", "-q", "-b", "main", work])
        commit_releases(lambda *args: run(["git", "-C", work, *args], env=env), Path(work))
        run(["git", "clone", "-q", "--bare", work, str(repo)])
    stamp_file.write_text(stamp)


def ensure_demo_repo() -> None:
    """The demo stack's compose directory as a bare git repository with one tag per release."""
    def commit_releases(git, work: Path) -> None:
        (work / ".gitignore").write_text(".env\nvolumes/\n")
        for rel in releases.RELEASES:
            if rel.after:  # a side line, its own branch: its commit follows that tag; the next ones follow it
                git("checkout", "-q", "-B", f"after-{rel.after}-{rel.tag}", rel.after)
            (work / "docker-compose.yaml").write_text(releases.compose_yaml(rel))
            (work / ".env.example").write_text(rel.env_example)
            git("add", "-A")
            git("commit", "-q", "-m", f"release {rel.tag}")
            git("tag", rel.tag)

    content = json.dumps([(r.tag, releases.compose_yaml(r), r.env_example) for r in releases.RELEASES])
    ensure_release_repo(DEMO_REPO, "demo-stack.sha256", content, commit_releases)


def register_blocks() -> None:
    sys.path.insert(0, str(HERE.parent))
    from blocks.stack_environment import StackEnvironment

    StackEnvironment.register_type_and_schema()


def main() -> None:
    LAB_HOME.mkdir(parents=True, exist_ok=True)
    client = docker.from_env()
    ensure_base(client)
    ensure_images(client)
    ensure_demo_repo()
    from lab.dify import build as dify

    dify.ensure(client)  # the Dify-faithful stack's stand-ins (small; seconds the first time, nothing after)
    register_blocks()


if __name__ == "__main__":
    main()
