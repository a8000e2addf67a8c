"""Builds the MLflow stack's images and git repository for the lab, idempotently (called by `lab.build`).

- Wheels: `pip download` on the host (PyPI is reachable here, no container registry is) into
  `$STACKSHIFT_LAB_HOME/mlflow/wheels/<version>`, once; a stamp records the requirements they satisfy, so a second
  setup downloads nothing.
- Images `127.0.0.1:5000/mlflow/mlflow:<version>`: built with no network (`--network none`) on the lab's Debian base,
  whose Python has no pip: `python3 -m venv --without-pip`, then pip run from its own wheel installs from the
  copied wheels only (`--no-index --find-links`). Two stages, so the wheels stay out of the final image.
- `$STACKSHIFT_LAB_HOME/mlflow-stack.git`: the compose directory with tags 3.6.0, 3.17.2 and 3.17.2-broken.

`ensure()` holds a file lock while it builds: the test command starts it in the background while the other tests
run, and the MLflow tests call it too, which waits for that build (or builds, when nothing started one) and then
finds everything in place.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from lab.mlflow import releases
from lab.paths import LAB_HOME

WHEELS = LAB_HOME / "mlflow" / "wheels"
REPO = LAB_HOME / "mlflow-stack.git"
STAMP = ".stackshift-requirements"


def say(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def pip_download_argv(requirements: list[str], dest: Path) -> list[str]:
    return ["python3", "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary", ":all:",
            "--dest", str(dest), *requirements, "pip"]


def ensure_wheels(version: str) -> Path:
    """The wheels of one MLflow version (and of pip itself), downloaded once."""
    dest = WHEELS / version
    want = json.dumps(releases.PIP_REQUIREMENTS[version])
    stamp = dest / STAMP
    if stamp.exists() and stamp.read_text() == want:
        return dest
    say(f"downloading the wheels of mlflow {version} from PyPI into {dest} (about 180 MB, once)")
    dest.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    done = subprocess.run(pip_download_argv(releases.PIP_REQUIREMENTS[version], dest), check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit("pip download failed: " + "\n".join(
            line for line in done.stderr.splitlines() if "is ignored: it is neither" not in line))
    stamp.write_text(want)
    say(f"wheels of mlflow {version}: {time.monotonic() - t0:.0f} s")
    return dest


def dockerfile(base: str, version: str) -> str:
    reqs = json.dumps(releases.PIP_REQUIREMENTS[version])[1:-1]
    return (
        f"FROM {base} AS install\n"
        "COPY wheels /wheels\n"
        'RUN ["python3", "-m", "venv", "--without-pip", "/opt/mlflow"]\n'
        # pip runs from its own wheel (a wheel is a zip Python can import from)
        f'RUN ["/opt/mlflow/bin/python", "/wheels/PIP_WHEEL/pip", "install", "--quiet", "--no-index", '
        f'"--find-links", "/wheels", {reqs}]\n'
        f"FROM {base}\n"
        "COPY --from=install /opt/mlflow /opt/mlflow\n"
        "ENV PATH=/opt/mlflow/bin:/usr/local/bin:/usr/bin:/bin PYTHONUNBUFFERED=1\n"
        "WORKDIR /opt/mlflow\nEXPOSE 5000\n"
        'CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]\n'
    )


def ensure_image(client, registry: str, base: str, version: str, *,  # noqa: PLR0913 (the image, then the registry's three probes)
                 in_registry, has_local, local_digest) -> None:
    ref = f"{registry}/{releases.IMAGE_REPO}:{version}"
    wheels = ensure_wheels(version)
    files = sorted(p for p in wheels.iterdir() if p.suffix == ".whl")
    pip_wheel = next(p.name for p in files if p.name.startswith("pip-"))
    text = dockerfile(base, version).replace("PIP_WHEEL", pip_wheel)
    label = hashlib.sha256((text + json.dumps([p.name for p in files]) + base).encode()).hexdigest()[:16]
    if not has_local(client, ref, label):
        if in_registry(ref):  # built on an earlier setup of this machine (or another): pull, check the label
            client.images.pull(ref)
        if not has_local(client, ref, label):
            say(f"building {ref} from the wheels, with no network (a few minutes)")
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory(dir=LAB_HOME) as ctx:
                (Path(ctx) / "wheels").mkdir()
                for p in files:
                    os.link(p, Path(ctx, "wheels", p.name))
                Path(ctx, "Dockerfile").write_text(text + f'LABEL stackshift.lab.inputs="{label}"\n')
                client.images.build(path=ctx, tag=ref, rm=True, forcerm=True, network_mode="none")
            say(f"built {ref} in {time.monotonic() - t0:.0f} s")
    if not in_registry(ref) or client.images.get_registry_data(ref).id != local_digest(client, ref):
        say(f"pushing {ref}")
        client.images.push(ref)


def ensure_repo() -> None:
    from lab import build as lab

    def commit_releases(git, work: Path) -> None:
        (work / ".gitignore").write_text(".env\nvolumes/\nenv-backup/\n")
        (work / ".env.example").write_text(releases.ENV_EXAMPLE)
        for r in releases.RELEASES:
            if r.tag.endswith("-broken"):
                git("checkout", "-q", "-B", "broken", r.mlflow_version)
            (work / "docker-compose.yaml").write_text(releases.compose_yaml(r))
            git("add", "-A")
            git("commit", "-q", "-m", f"release {r.tag}")
            git("tag", r.tag)

    content = json.dumps([(r.tag, releases.compose_yaml(r)) for r in releases.RELEASES] + [releases.ENV_EXAMPLE])
    lab.ensure_release_repo(REPO, "mlflow-stack.sha256", content, commit_releases)


def ensure() -> None:
    """The MLflow images and repository, built once (idempotent), one builder at a time on this machine."""
    import docker

    from lab import build as lab

    LAB_HOME.mkdir(parents=True, exist_ok=True)
    with open(LAB_HOME / "mlflow-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = docker.from_env()
        t0 = time.monotonic()
        for version in releases.VERSIONS:
            ensure_image(client, lab.REGISTRY, lab.BASE, version, in_registry=lab.in_registry,
                         has_local=lab.has_local, local_digest=lab._local_digest)
        ensure_repo()
        say(f"MLflow stack ready ({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    ensure()
