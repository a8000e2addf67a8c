"""Every docker, compose, git, tar and pg command stackshift runs, built as data (argv lists).

Nothing here runs anything: `core.io.executor.run` does. Secrets never appear in argv: pg tools read the
password from PGPASSWORD in their environment.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import StackSettings

DEFAULT_TIMEOUT = 600.0
"""Seconds any command may run unless its step says otherwise (`Command.timeout`)."""

STACK_LABEL = "io.stackshift.stack"
RUN_LABEL = "io.stackshift.run"


@dataclass(frozen=True)
class ComposeProject:
    """How to address one compose project: directory, files, env file and name."""

    project_dir: Path
    files: tuple[Path, ...]
    env_file: Path | None  # None: compose's own default (a stack `init` reads may have no .env)
    name: str

    @classmethod
    def of(cls, stack: StackSettings) -> ComposeProject:
        """The stack as its checkout has it now: its compose files and .env, run from its directory."""
        d = Path(stack.compose_dir)
        return cls(d, tuple(d / name for name in stack.compose_files), d / stack.env_file, stack.project_name)

    def base(self) -> list[str]:
        argv = ["docker", "compose", "--project-directory", str(self.project_dir), "--project-name", self.name]
        if self.env_file is not None:
            argv += ["--env-file", str(self.env_file)]
        for f in self.files:
            argv += ["--file", str(f)]
        return argv


@dataclass(frozen=True)
class Command:
    """One command: argv plus environment overrides (values here may be secret; they are never logged)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdout_path: Path | None = None
    timeout: float | None = None
    stdin: bytes | None = None
    ok_codes: tuple[int, ...] = (0,)

    def describe(self) -> str:
        keys = f" (env: {', '.join(sorted(self.env))})" if self.env else ""
        return " ".join(self.argv) + keys


def compose_config_json(p: ComposeProject) -> list[str]:
    return p.base() + ["config", "--format", "json"]


def compose_config_check(p: ComposeProject) -> list[str]:
    """Validates the compose files themselves (syntax, schema) without reading any variable."""
    return p.base() + ["config", "--no-interpolate", "--quiet"]


def compose_ps_json(p: ComposeProject) -> list[str]:
    return p.base() + ["ps", "--all", "--format", "json"]


def compose_stop(p: ComposeProject, services: Sequence[str]) -> list[str]:
    return p.base() + ["stop", *services]


def compose_rm(p: ComposeProject, services: Sequence[str]) -> list[str]:
    return p.base() + ["rm", "--stop", "--force", *services]


def compose_create(p: ComposeProject, services: Sequence[str]) -> list[str]:
    """Creates the services' containers (replacing those whose configuration or image changed) without starting
    anything."""
    return p.base() + ["create", *services]


def compose_up(  # noqa: PLR0913 (one flag per `docker compose up` option, all but the services by keyword)
    p: ComposeProject, services: Sequence[str] | None = None, *, wait_timeout: int = 120, no_deps: bool = False,
    remove_orphans: bool = False, wait: bool = True,
) -> list[str]:
    """`up --detach`, with compose's own `--wait` unless the caller polls health itself (compose checks on a
    500 ms tick, for `--wait` and for each `depends_on` condition)."""
    argv = p.base() + ["up", "--detach"]
    if wait:
        argv += ["--wait", "--wait-timeout", str(wait_timeout)]
    if no_deps:
        argv.append("--no-deps")
    if remove_orphans:
        argv.append("--remove-orphans")
    return argv + list(services or [])


def compose_exec(p: ComposeProject, service: str, command: Sequence[str]) -> list[str]:
    """`command` in the running container of `service`, without a TTY."""
    return p.base() + ["exec", "--no-TTY", service, *command]


def compose_logs_since(p: ComposeProject, service: str, since: str) -> list[str]:
    """The log lines of `service`'s container since `since` (RFC 3339), without compose's prefixes or colours."""
    return p.base() + ["logs", "--no-color", "--no-log-prefix", "--since", since, service]


def compose_down(p: ComposeProject) -> list[str]:
    return p.base() + ["down", "--remove-orphans"]


def compose_run_once(p: ComposeProject, service: str, command: Sequence[str],  # noqa: PLR0913 (one value per part of the run)
                     env: dict[str, str] | None = None, run_id: str = "", *,
                     pass_env: Sequence[str] = (), replace_entrypoint: bool = False) -> list[str]:
    """A one-off container of `service` (its image and env), no dependencies started, removed afterwards; labelled
    with the stack and the run so that a recovery finds it if the runner dies while it runs. `env` values are in the
    argv (switches, nothing secret); `pass_env` names variables the container takes from the command's own
    environment (`--env KEY`), so that their values never appear in an argv or a log. `replace_entrypoint`: the
    command's first word runs as the entrypoint (an image whose entrypoint ignores its arguments)."""
    argv = p.base() + ["run", "--rm", "--no-deps", "--no-TTY", "--label", f"{STACK_LABEL}={p.name}"]
    if run_id:
        argv += ["--label", f"{RUN_LABEL}={run_id}"]
    for key, value in sorted((env or {}).items()):
        argv += ["--env", f"{key}={value}"]
    for key in sorted(pass_env):
        argv += ["--env", key]
    if replace_entrypoint:
        return argv + ["--entrypoint", command[0], service, *command[1:]]
    return argv + [service, *command]


def git_rev_parse(repo: Path, ref: str) -> list[str]:
    return ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"]


def git_status_tracked(repo: Path) -> list[str]:
    return ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"]


def git_show(repo: Path, commit: str, path: str) -> list[str]:
    """The file `path` (relative to `repo`, which may be a subfolder of the repository, as Dify's `docker/` is) at
    `commit`: `./` makes git read it from that folder, not from the repository's root."""
    return ["git", "-C", str(repo), "show", f"{commit}:./{path}"]


def git_ls_files(repo: Path, path: str) -> list[str]:
    """Exits 0 when git tracks `path` (relative to `repo`), 1 when it does not."""
    return ["git", "-C", str(repo), "ls-files", "--error-unmatch", "--", path]


def git_archive(repo: Path, commit: str, out: Path) -> list[str]:
    return ["git", "-C", str(repo), "archive", "--format=tar", f"--output={out}", commit]


def git_checkout(repo: Path, commit: str) -> list[str]:
    return ["git", "-C", str(repo), "checkout", "--quiet", "--detach", commit]


def tar_extract(archive: Path, into: Path) -> list[str]:
    return ["tar", "--extract", "--file", str(archive), "--directory", str(into)]


def tar_list(archive: Path) -> list[str]:
    """Reads a zstd archive to its end (listing it): proves every frame decompresses."""
    return ["tar", "--list", "--zstd", "--file", str(archive)]


def tar_create(out: Path, root: Path, excludes: Sequence[str]) -> list[str]:
    """A zstd archive of `root`'s contents, leaving out `excludes` (paths relative to root, as ./x/y). tar runs
    `zstd`, which takes its thread count from ZSTD_NBTHREADS (see `ZSTD_ENV`)."""
    argv = ["tar", "--create", "--zstd", "--file", str(out), "--directory", str(root)]
    for ex in excludes:
        argv += ["--exclude", ex]
    return argv + ["."]


def pg_dump(host: str, port: int, user: str, database: str, out: Path,  # noqa: PLR0913, PLR0917 (pg_dump's own options; core.cutover.plan passes jobs by position)
            jobs: int = 1) -> list[str]:
    """Directory format (one file per table, compressed), `jobs` tables at a time; the caller adds `--snapshot`."""
    return ["pg_dump", "--host", host, "--port", str(port), "--username", user, "--no-password",
            "--format", "directory", "--jobs", str(jobs), "--file", str(out), database]


def pg_restore(host: str, port: int, user: str, database: str, dump: Path, *,  # noqa: PLR0913 (pg_restore's own options)
               jobs: int = 1) -> list[str]:
    """Restores a dump into an existing (empty) database, `jobs` at a time, stopping at the first error."""
    return ["pg_restore", "--host", host, "--port", str(port), "--username", user, "--no-password", "--exit-on-error",
            "--no-owner", "--jobs", str(jobs), "--dbname", database, str(dump)]


def pg_basebackup(p: ComposeProject, service: str, user: str, into: str, slot: str) -> list[str]:
    """A base backup of the cluster taken inside the database's own container as the `postgres` OS user, over the
    local socket (so no password), with the WAL it needs streamed, and a new physical replication slot `slot` that
    keeps every later WAL segment. `into` is a path in the container, beside the data directory."""
    return p.base() + ["exec", "--no-TTY", "--user", "postgres", service, "pg_basebackup", "--pgdata", into,
                       "--username", user, "--no-password", "--wal-method", "stream", "--checkpoint", "fast",
                       "--create-slot", "--slot", slot]


ZSTD_ENV = (("ZSTD_NBTHREADS", "0"),)  # 0: one thread per core


def pg_restore_list(dump: Path) -> list[str]:
    return ["pg_restore", "--list", str(dump)]


def docker_pull(image: str) -> list[str]:
    return ["docker", "pull", "--quiet", image]


def docker_tag(source: str, target: str) -> list[str]:
    """Points `target` (repo:tag) at the image `source` (repo@sha256:…) on the engine."""
    return ["docker", "tag", source, target]


def git_tags(repo: Path) -> list[str]:
    return ["git", "-C", str(repo), "tag", "--list"]


def git_tags_at(repo: Path, commit: str) -> list[str]:
    return ["git", "-C", str(repo), "tag", "--list", "--points-at", commit]


def docker_login(registry: str, username: str) -> list[str]:
    """The password goes to stdin (`--password-stdin`), never argv."""
    return ["docker", "login", "--username", username, "--password-stdin", registry]


def docker_run_offline(image: str, command: Sequence[str], stack: str = "") -> list[str]:
    """A throw-away container of `image` with no network, running `command` instead of the entrypoint."""
    labels = ["--label", f"{STACK_LABEL}={stack}"] if stack else []
    return ["docker", "run", "--rm", "--network", "none", *labels, "--entrypoint", command[0], image, *command[1:]]


PACKAGE_DIR = "import importlib.util, sys; print(importlib.util.find_spec(sys.argv[1]).submodule_search_locations[0])"


def python_package_dir(image: str, package: str, stack: str = "") -> list[str]:
    """Prints the folder of the Python package `package` inside `image` (found, not imported: nothing of the app runs),
    in a throw-away container with no network."""
    return docker_run_offline(image, ["python3", "-c", PACKAGE_DIR, package], stack)


def docker_ps_labelled(label: str, value: str) -> list[str]:
    """Ids (one per line) of every container, running or not, carrying `label=value`."""
    return ["docker", "container", "ls", "--all", "--quiet", "--no-trunc", "--filter", f"label={label}={value}"]


def docker_rm_force(ids: Sequence[str]) -> list[str]:
    return ["docker", "container", "rm", "--force", "--volumes", *ids]


def compose_config_every_profile_json(p: ComposeProject) -> list[str]:
    """`config --format json` with every profile enabled (`--profile '*'`): each service with its `profiles` and
    `depends_on`, whatever COMPOSE_PROFILES says."""
    return p.base() + ["--profile", "*", "config", "--format", "json"]


def compose_version_json() -> list[str]:
    """The installed Docker Compose's version, as JSON (`{"version": "v2.40.3"}`)."""
    return ["docker", "compose", "version", "--format", "json"]


def compose_config_layout_json(p: ComposeProject) -> list[str]:
    """`config --format json` with every profile and no interpolation: each service's `env_file` list as written
    (path and `required`), and its `${VAR}` references unexpanded."""
    return p.base() + ["--profile", "*", "config", "--no-interpolate", "--format", "json"]
