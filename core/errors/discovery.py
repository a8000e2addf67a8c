"""`stackshift init` refusals: what it could not read or tell about a stack, found before any block is saved."""
from __future__ import annotations

from core.errors.base import PreflightError


class ComposeFilesMissing(PreflightError):
    """The folder given to init holds no compose file."""

    def __init__(self, compose_dir: str):
        self.compose_dir = compose_dir
        super().__init__(
            f"No compose file in {compose_dir} (docker-compose.yaml, docker-compose.yml, compose.yaml or "
            f"compose.yml). Point init at the folder holding the stack's compose file and .env (Dify: its docker/ "
            f"folder); nothing was saved."
        )


class ComposeConfigUnreadable(PreflightError):
    """`docker compose config` refused the stack's files."""

    def __init__(self, compose_dir: str, detail: str):
        super().__init__(
            f"docker compose cannot read the stack in {compose_dir}: {detail}. Fix the compose file or .env until "
            f"`docker compose config` accepts them; nothing was saved."
        )


class ProjectNotFound(PreflightError):
    """No running compose project, or several, were started from the folder given to init."""

    def __init__(self, compose_dir: str, projects: list[str]):
        self.projects = projects
        if projects:
            detail = (f"several compose projects run from {compose_dir} ({', '.join(projects)}): name the one to "
                      f"upgrade with --project")
        else:
            detail = (f"no compose project runs from {compose_dir}: start the stack (`docker compose up -d --wait` "
                      f"there) or name its project with --project")
        super().__init__(f"{detail[0].upper()}{detail[1:]}; nothing was saved.")


class DiscoveryIncomplete(PreflightError):
    """init could not tell some of the block's values."""

    def __init__(self, gaps: list[str]):
        self.gaps = gaps
        super().__init__(
            "init could not tell " + "; ".join(gaps) + ". Nothing was saved: fix the stack and run init again, or "
            "write the block by hand (docs/init.md)."
        )


class EnvironmentExists(PreflightError):
    """A block of that name exists: init does not replace it unless told."""

    def __init__(self, name: str):
        super().__init__(
            f"A stack-environment block named {name!r} exists already. Rerun with --force to replace it, or with "
            f"--name to save another; nothing was saved."
        )


class PasswordMissing(PreflightError):
    """No database password in the environment or the stack's configuration, and no terminal to ask."""

    def __init__(self, user: str):
        super().__init__(
            f"No password for the database role {user!r}: the stack's configuration has no POSTGRES_PASSWORD and "
            f"there is no terminal to ask. Set STACKSHIFT_DB_PASSWORD in the environment and rerun; nothing was saved."
        )


class NotConfirmed(PreflightError):
    """The block was not confirmed (no terminal to ask, or the answer was no)."""

    def __init__(self, name: str, asked: bool):
        why = "you answered no" if asked else "there is no terminal to ask"
        super().__init__(f"The block {name!r} was not saved: {why}. Rerun with --yes to save it without asking.")


class PrefectUnreachable(PreflightError):
    """The Prefect server, which keeps the blocks, did not answer."""

    def __init__(self, url: str, detail: str):
        super().__init__(
            f"The Prefect server at {url} did not answer ({detail}); it keeps the stack-environment blocks. Start it "
            f"(`prefect server start`) or point PREFECT_API_URL at it; nothing was saved or changed."
        )
