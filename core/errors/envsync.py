"""Env-sync refusals: the merged `.env` cannot be computed, written or started."""
from __future__ import annotations

from core.errors.base import PreflightError


class EnvSyncError(PreflightError):
    pass


class TemplateImplausible(EnvSyncError):
    """An env template that cannot be the one meant: empty, or sharing almost no keys with the .env or the other
    template. Merging onto it would drop the operator's keys or keep every stale default."""

    def __init__(self, path: str, finding: str, expected: str):
        self.path = path
        super().__init__(f"{path}: {finding}, but {expected}. Check that you gave the right template; nothing was "
                         f"written.")


class NeededServiceInactive(EnvSyncError):
    """The merged env would leave a service the target stack needs (its database, a `depends_on` target) outside
    the active compose profiles: the stack would start without it."""

    def __init__(self, env: str, key: str, finding: str, fix: str, override: str):
        self.key = key
        super().__init__(f"{env}: {finding}. Set {fix} in the env file, or {override} to go ahead anyway; nothing was "
                         f"written.")


class EnvFileUnwritable(EnvSyncError):
    """The env file, or its backup under env-backup/, cannot be written."""

    def __init__(self, path: str, detail: str, backup_dir: str):
        self.path = path
        super().__init__(f"Cannot write {path}: {detail}. Make {backup_dir} and the file's folder writable for this "
                         f"user (or run as the file's owner) and run again; the file is unchanged and no backup was "
                         f"left behind.")


class ComposeUnavailable(EnvSyncError):
    """`docker compose` cannot be run, so the merged env cannot be checked against the target's compose file."""

    def __init__(self, detail: str):
        super().__init__(f"Cannot run `docker compose` to check the merged env ({detail}). Install Docker with the "
                         f"Compose v2 plugin (`docker compose version`), or leave out --compose-file; nothing was "
                         f"written.")


class EnvFileEmpty(EnvSyncError):
    """The operator's `.env` has no KEY=value line (0 bytes, or comments only): most likely truncated. Merging onto
    it would write the whole new template and record every key of the template as the operator's deletion."""

    def __init__(self, path: str, finding: str, override: str):
        self.path = path
        super().__init__(f"{path}: {finding}, which looks like a truncated or emptied file. Restore it from its backup "
                         f"(env-backup/ beside it, or the last upgrade's backup folder), or {override} if it is empty "
                         f"on purpose; nothing was written.")


class ComposeTooOld(EnvSyncError):
    """The installed Docker Compose is older than the target's compose file needs: compose would refuse it, or
    read it otherwise."""

    def __init__(self, found: str, needed: str, why: str, compose_file: str):
        self.found, self.needed = found, needed
        super().__init__(f"{compose_file} needs Docker Compose {self.needed} or later ({why}); the installed "
                         f"one is {found} (`docker compose version`). Upgrade the Docker Compose plugin to "
                         f"{self.needed} or later and run again; nothing was written.")


class ComposeVersionUnknown(EnvSyncError):
    """`docker compose version --format json` did not say which version is installed."""

    def __init__(self, output: str):
        super().__init__(f"`docker compose version --format json` printed no version ({output[:80]!r}), so whether "
                         f"it can read the target's compose file is unknown. Check the Docker Compose plugin "
                         f"(`docker compose version`); nothing was written.")


class ComposeFileNotYaml(EnvSyncError):
    """The target's compose file cannot be read as YAML."""

    def __init__(self, compose_file: str, detail: str):
        self.detail = f"{compose_file} is not valid YAML ({detail})"
        super().__init__(f"{self.detail}. Fix the compose file; nothing was written.")
