"""Builds the Dify-faithful stack's stand-in images and its git repository, idempotently (called by `lab.build`).

Each image is a small layer on the lab's Debian base (or, for `postgres:15-alpine`, on the lab's PostgreSQL 15),
built with the classic builder and no network, labelled with a hash of its inputs: a second setup finds every label
unchanged and builds nothing. Each is pushed as `127.0.0.1:5000/<Dify's name>` (the name the repository's compose
files use) and tagged `<Dify's name>` on this engine too.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

from lab.dify import releases
from lab.dify.releases import REGISTRY

IMAGES = releases.HERE / "images"
DEMO = releases.HERE.parent / "demo"


def _command(role: str) -> bytes:
    """A command of a stand-in image: `standin.py` in that role."""
    return f'#!/bin/sh\nexec python3 /usr/local/lib/standin/standin.py {role} "$@"\n'.encode()


def _dockerfile_standin(base: str, s: releases.Standin, version: str) -> tuple[str, dict[str, bytes]]:
    files = {"lib/standin.py": (IMAGES / "standin.py").read_bytes()} | {f"bin/{r}": _command(r) for r in s.roles}
    text = (f"FROM {base}\nCOPY lib /usr/local/lib/standin\nCOPY bin /usr/local/bin\n"
            f"ENV STANDIN_VERSION={version} PYTHONUNBUFFERED=1\n"
            f"WORKDIR /data\nCMD {json.dumps(list(s.cmd))}\n")
    return text, files


def _dockerfile_api(base: str, tag: str) -> tuple[str, dict[str, bytes]]:
    app = DEMO / "app"
    files: dict[str, bytes] = {f"app/api/{p.name}": p.read_bytes() for p in sorted(app.glob("*.py"))
                                     if p.name != "entrypoint.py"}
    files["app/api/alembic.ini"] = (app / "alembic.ini").read_text().replace(
        "/app/migrations", "/app/api/migrations").encode()
    files["app/api/migrations/env.py"] = (app / "migrations" / "env.py").read_text().replace(
        'sys.path.insert(0, "/app")', 'sys.path.insert(0, "/app/api")').encode()
    files["app/api/migrations/script.py.mako"] = (app / "migrations" / "script.py.mako").read_bytes()
    files |= {f"app/api/migrations/versions/{r}": (DEMO / "revisions" / r).read_bytes()
              for r in releases.API_REVISIONS[tag]}
    files |= {"lib/standin.py": (IMAGES / "standin.py").read_bytes(), "bin/curl": _command("curl"),
              "bin/flask": (IMAGES / "flask.py").read_bytes(), "entrypoint.py": (IMAGES / "entrypoint.py").read_bytes()}
    version = tag.removesuffix("-broken")
    text = (f"FROM {base}\nCOPY app /app\nCOPY lib /usr/local/lib/standin\nCOPY bin /usr/local/bin\n"
            "COPY entrypoint.py /entrypoint.py\n"
            f"ENV APP_VERSION={version} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1\nWORKDIR /app/api\nEXPOSE 5001\n"
            'ENTRYPOINT ["python3", "/entrypoint.py"]\n')
    return text, files


def image_specs(base: str, postgres: str) -> dict[str, tuple[str, dict[str, bytes]]]:
    """Dify's image name → (Dockerfile, build context: path → bytes)."""
    specs = {s.ref: _dockerfile_standin(base, s, s.ref.rsplit(":", 1)[1]) for s in releases.STANDINS}
    specs[releases.BUSYBOX] = (f"FROM {base}\nCMD [\"sh\"]\n", {})
    # its `sh` comes first in PATH: the job's `sh -c …` fails with exit 3
    specs[releases.BADJOB] = (f"FROM {base}\nCOPY bin /usr/local/bin\nCMD [\"sh\"]\n", {"bin/sh": (
        b'#!/bin/dash\necho "sh: the one-shot job cannot run (the lab\'s broken busybox)" >&2\nexit 3\n')})
    specs[releases.POSTGRES] = (f"FROM {postgres}\nCMD [\"postgres\"]\n", {})
    specs |= {f"{releases.API}:{tag}": _dockerfile_api(base, tag) for tag in releases.API_REVISIONS}
    return specs


def _label(dockerfile: str, files: dict[str, bytes]) -> str:
    h = hashlib.sha256(dockerfile.encode())
    for path, data in sorted(files.items()):
        h.update(path.encode())
        h.update(data)
    return h.hexdigest()[:16]


def _write_context(ctx: Path, dockerfile: str, files: dict[str, bytes], label: str) -> None:
    for rel, data in files.items():
        dest = ctx / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        dest.chmod(0o755)
    (ctx / "Dockerfile").write_text(dockerfile + f'LABEL stackshift.lab.inputs="{label}"\n')


def ensure_images(client) -> list[str]:
    """Builds what changed, pushes what the registry lacks; returns the images built."""
    from lab import build as lab

    built, ids = [], {}
    for name, (dockerfile, files) in image_specs(lab.BASE, f"{REGISTRY}/demo/postgres:15").items():
        ref, parent = f"{REGISTRY}/{name}", dockerfile.split("\n", 1)[0].removeprefix("FROM ")
        ids[parent] = ids.get(parent) or client.images.get(parent).id  # rebuilt when its parent image changed
        label = _label(dockerfile + ids[parent], files)
        if not lab.has_local(client, ref, label):
            with tempfile.TemporaryDirectory() as ctx:
                _write_context(Path(ctx), dockerfile, files, label)
                client.images.build(path=ctx, tag=ref, rm=True, forcerm=True, network_mode="none")
            built.append(name)
        image = client.images.get(ref)
        if name not in image.tags:
            image.tag(name)
        if not lab.in_registry(ref) or client.images.get_registry_data(ref).id != lab._local_digest(client, ref):
            client.images.push(ref)
    return built


def ensure_repo() -> None:
    from lab import build as lab

    def commit_releases(git, work: Path) -> None:
        (work / ".gitignore").write_text(releases.GITIGNORE)
        for tag in releases.TAGS:
            if "-" in tag:  # a variant of a release, on a branch of its own
                release, variant = tag.split("-", 1)
                git("checkout", "-q", "-B", variant, release)
            shutil.rmtree(work / "docker", ignore_errors=True)
            for rel, data in releases.release_files(tag).items():
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                (work / rel).write_bytes(data)
                if rel.endswith(".sh"):
                    (work / rel).chmod(0o755)
            git("add", "-A")
            git("commit", "-q", "-m", f"release {tag}")
            git("tag", tag)

    content = json.dumps([(t, {k: hashlib.sha256(v).hexdigest() for k, v in releases.release_files(t).items()})
                          for t in releases.TAGS] + [releases.GITIGNORE])
    lab.ensure_release_repo(releases.REPO, "dify-stack.sha256", content, commit_releases)


def ensure(client=None) -> None:
    """The stand-in images and the repository (idempotent; a second run takes about a second)."""
    import docker

    client = client or docker.from_env()
    t0 = time.monotonic()
    built = ensure_images(client)
    ensure_repo()
    if built:
        print(f"[lab] Dify stand-in images built ({len(built)}) in {time.monotonic() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    ensure()
