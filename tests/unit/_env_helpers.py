"""Shared by the env-sync tests: the command, run as an operator runs it, and a snapshot of a folder."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
from pathlib import Path

from tests.conftest import DIFY, ROOT

OLD, NEW = DIFY / "env.example.1.0.0", DIFY / "env.example.1.12.1"
COMPOSE_1_12_1 = DIFY / "docker-compose.1.12.1.yaml"
# COMPOSE_PROFILES in the test runner's environment would override the files under test.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "COMPOSE_PROFILES"}


def sync(env: Path, *extra: str, old: Path = OLD, new: Path = NEW) -> subprocess.CompletedProcess:
    """`./stackshift env-sync` in a child process, as an operator runs it."""
    return subprocess.run([str(ROOT / "stackshift"), "env-sync", "--env-file", str(env), "--old-template", str(old),
                           "--new-template", str(new), *extra], check=False, capture_output=True, text=True,
                          env=CLEAN_ENV)


def sync_in_process(argv: list[str]) -> tuple[int, str, str]:
    """`cli.main.main(["env-sync", ...])` in this process (fast enough for property tests): code, stdout, stderr."""
    from cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["env-sync", *argv])
    return code, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder`: a file's sha256 and mode, a link's target, a folder's mode."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        st = path.lstat()
        if path.is_symlink():
            out[rel] = "link " + os.readlink(path)
        elif path.is_dir():
            out[rel] = f"dir {st.st_mode:o}"
        else:
            out[rel] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {st.st_mode:o} {st.st_uid}:{st.st_gid}"
    return out


def operator_env(folder: Path, text: str | None = None, name: str = ".env") -> Path:
    """A .env (0600) in `folder`: `text`, or Dify 1.0.0's template as an operator copied it."""
    env = folder / name
    env.write_text(OLD.read_text() if text is None else text)
    os.chmod(env, 0o600)
    return env


def fake_old_compose(folder: Path, version: str) -> Path:
    """FAKE_OLD_COMPOSE: a `docker` in `folder` (put it first on PATH) that reports Compose `version` and passes
    everything else to the real one. A mock, because no Compose older than 2.24 can be installed in the test run.
    Returns `folder`."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "docker"
    fake.write_text('#!/bin/sh\n'
                    f'if [ "$1 $2" = "compose version" ]; then echo \'{{"version":"{version}"}}\'; exit 0; fi\n'
                    f'exec {shutil.which("docker")} "$@"\n')
    fake.chmod(0o755)
    return folder
