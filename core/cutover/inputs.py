"""Pre-flight's first look at the operator's inputs, before compose or the registry is asked anything else: the
backup folder can be written, the compose directory is a git checkout, the stack's `.env` is one stackshift's own
parser reads, and the registry's answer about each target image tells "missing" from "did not answer"."""
from __future__ import annotations

import os
from pathlib import Path

import docker

from core.env import envdoc
from core.errors import BackupDirUnusable, ComposeDirMissing, EnvFileUnusable, RegistryUnreachable, error_line
from core.io import commands as c
from core.io.executor import run

__all__ = ["NO_SUCH_IMAGE", "check_backup_dir", "check_checkout", "check_env_file", "missing_images"]


def check_checkout(compose_dir: Path) -> None:
    """The compose directory exists and is a git checkout with a commit (else no ref could ever resolve)."""
    if not compose_dir.exists():
        raise ComposeDirMissing(str(compose_dir), "does not exist")
    if not compose_dir.is_dir():
        raise ComposeDirMissing(str(compose_dir), "is not a directory")
    done = run(c.git_rev_parse(compose_dir, "HEAD"), check=False)
    if done.returncode != 0:
        detail = error_line(done.stderr) if done.stderr.strip() else "git finds no commit checked out there"
        raise ComposeDirMissing(str(compose_dir), f"is not a git checkout ({detail})")


def check_env_file(path: Path) -> None:
    """The stack's `.env` is a readable UTF-8 file that stackshift's parser (and so compose) reads as env lines."""
    try:
        envdoc.parse(envdoc.read_env_file(path, "env file"), str(path))
    except envdoc.EnvParseError as exc:
        where = f"{exc.path}, line {exc.line}" if exc.line else exc.path
        raise EnvFileUnusable(str(path), f"{where}: {exc.why}. {exc.fix}.") from None


# Registry answers that mean "no such image (for these credentials)"; any other failure means the registry (or the
# engine's way to it) did not answer, which says nothing about the image.
NO_SUCH_IMAGE = (401, 403, 404)


def missing_images(client: docker.DockerClient, images: list[str], auth: dict | None) -> list[str]:
    """The images their registry does not have; RegistryUnreachable when a registry did not answer."""
    missing, unreachable = [], {}
    for image in sorted(set(images)):
        try:
            client.images.get_registry_data(image, auth_config=auth)
        except docker.errors.APIError as exc:
            if exc.status_code in NO_SUCH_IMAGE:
                missing.append(image)
            else:
                unreachable[image] = str(exc.explanation or exc)
    if unreachable:
        raise RegistryUnreachable(sorted(unreachable), "; ".join(sorted(set(unreachable.values()))))
    return missing


def check_backup_dir(backup_dir: Path) -> None:
    """The backup folder (or, if it does not exist yet, its nearest existing parent) is a folder this user can write:
    the run's lock, journal and backup go there."""
    existing = next((p for p in (backup_dir, *backup_dir.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise BackupDirUnusable(str(backup_dir), f"{existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BackupDirUnusable(str(backup_dir), f"{existing} is not writable for this user (a read-only mount, or "
                                                 f"its permissions)")
