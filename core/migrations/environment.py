"""The app's migration environment, copied out of the target image without running it: its Alembic revision files
and `env.py`, as far as pre-flight needs them (the revision graph; whether the migration commits after each
revision)."""
from __future__ import annotations

import io
import re
import tarfile
from pathlib import PurePosixPath

import docker

from core.errors import MigrationFileUnreadable
from core.io import commands as c
from core.migrations import revgraph
from core.settings import Settings

ENV_SCRIPT = "env.py"  # beside the versions folder; `migration_sources` hands it over as this key
_PER_MIGRATION = re.compile(r"\btransaction_per_migration\s*=\s*(True|False)\b")


def migration_sources(client: docker.DockerClient, image: str, versions_path: str, stack: str = "") -> dict[str, str]:
    """The revision files of an image, copied out of a created (never started) container: nothing runs. The
    migration environment (`env.py` beside the versions folder), when there is one, comes as key `ENV_SCRIPT`."""
    ctr = client.containers.create(image, command=["true"], network_disabled=True, labels={c.STACK_LABEL: stack})
    try:
        try:
            stream, _ = ctr.get_archive(versions_path)
        except docker.errors.NotFound:
            raise MigrationFileUnreadable(versions_path, f"no such folder in {image}; set the block's "
                                                         f"migrations_path") from None
        data = b"".join(stream)
        try:
            env_stream, _ = ctr.get_archive(str(PurePosixPath(versions_path).parent / ENV_SCRIPT))
            env_data: bytes | None = b"".join(env_stream)
        except docker.errors.NotFound:
            env_data = None
    finally:
        ctr.remove(force=True)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            _, _, name = m.name.partition("/")  # the archive holds the folder: its files are `<folder>/<name>`
            member = tar.extractfile(m) if m.isfile() and "/" not in name else None
            if member is not None and revgraph.is_revision_filename(name):
                out[name] = member.read().decode("utf-8")
    if env_data is not None:
        with tarfile.open(fileobj=io.BytesIO(env_data)) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            if member is not None:
                out[ENV_SCRIPT] = member.read().decode("utf-8", errors="replace")
    return out


def transaction_shape(cfg: Settings, env_script: str | None) -> tuple[bool, str]:
    """Whether the migration runs one transaction per revision (Alembic's `transaction_per_migration`), and who
    says so: the environment's setting, else the image's `env.py` (a literal `transaction_per_migration=True`),
    else Alembic's default (one transaction for the whole upgrade)."""
    if cfg.migration.transaction_per_migration is not None:
        return cfg.migration.transaction_per_migration, "the environment's settings"
    found = _PER_MIGRATION.search(env_script or "")
    if found:
        return found.group(1) == "True", f"the target image's {ENV_SCRIPT}"
    return False, "Alembic's default" + ("" if env_script else f" (no {ENV_SCRIPT} read in the image)")
