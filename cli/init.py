"""`stackshift init` (point stackshift at a running compose stack: propose, save and check its block) and
`stackshift check` (pre-flight's readers on an environment as it runs now, changing nothing).

init reads the stack (its compose project, `docker compose config --format json`, what runs), asks
`core.discovery` for the block, prints each guess with its reason, takes the database password from
STACKSHIFT_DB_PASSWORD, the stack's own configuration or a prompt (never printed), saves the block and runs check.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import docker

    from core.discovery import Proposal, ReadStack
    from core.settings import Settings

COMPOSE_NAMES = ("docker-compose.yaml", "docker-compose.yml", "compose.yaml", "compose.yml")
PASSWORD_VARIABLE = "STACKSHIFT_DB_PASSWORD"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
NOT_READY = 3  # exit status of a check that found a problem


def add_verbs(sub: argparse._SubParsersAction) -> None:
    """Registers `init` and `check` on the command line."""
    p = sub.add_parser("init", help="point stackshift at a running compose stack: propose, save and check its block",
                       description="Reads the stack's compose config and running containers, proposes its "
                                   "stack-environment block (saying what it guessed and why), takes the database "
                                   f"password from ${PASSWORD_VARIABLE}, the stack's own POSTGRES_PASSWORD or a "
                                   "prompt, saves the block and runs `stackshift check` on it.")
    p.add_argument("compose_dir", metavar="COMPOSE_DIR", help="the stack's folder (its compose file and .env)")
    p.add_argument("--project", help="compose project name (default: the project running from COMPOSE_DIR)")
    p.add_argument("--name", help="block name, i.e. the environment (default: the project name)")
    p.add_argument("--backup-dir", metavar="DIR",
                   help="where backups, the lock and run journals go (default: /var/backups/stackshift)")
    p.add_argument("--yes", action="store_true", help="save without asking")
    p.add_argument("--force", action="store_true", help="replace an existing block of that name")
    p.set_defaults(fn=init)
    p = sub.add_parser("check", help="pre-flight on an environment as it runs now; changes nothing",
                       description="Runs pre-flight's readers against the environment's stack: the engine, the "
                                   "checkout, the database and the role's privileges, the migrate image's revision "
                                   "files, the backup folder and the HTTP checks. Exit 0 when ready, 3 when not.")
    p.add_argument("--environment", "-e", required=True, help="stack-environment block name, e.g. staging")
    p.set_defaults(fn=check)


def init(args: argparse.Namespace) -> int:
    """Propose, save and check the environment block of the stack in `args.compose_dir`."""
    from core.errors import UpgradeError

    try:
        stack, client = read_stack(args)
        proposal = propose(stack, client)
        name = args.name or stack.project
        _print_proposal(stack, proposal, name)
        settings = _settings(proposal)
        _save(settings, name, args)
    except UpgradeError as exc:
        print(f"stackshift init: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"Saved stack-environment/{name}. Checking it (`stackshift check -e {name}`):")
    return _report(name, settings)


def check(args: argparse.Namespace) -> int:
    """`stackshift check -e NAME`: the findings, then a one-line verdict; exit 0 ready, 3 not."""
    from core.errors import UpgradeError
    from flows.upgrade import load_environment

    try:
        with _prefect():
            settings = load_environment(args.environment)
    except UpgradeError as exc:
        print(f"stackshift check: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return _report(args.environment, settings)


@contextmanager
def _prefect() -> Iterator[None]:
    """Prefect's calls (the blocks): a server that does not answer is named, not a traceback."""
    from core.errors import PrefectUnreachable

    try:
        yield
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("prefect", "httpx", "httpcore"):
            raise
        from prefect.settings import PREFECT_API_URL

        raise PrefectUnreachable(str(PREFECT_API_URL.value() or "(PREFECT_API_URL unset)"),
                                 f"{type(exc).__name__}: {exc}".splitlines()[0][:200]) from None


def _report(name: str, settings: Settings) -> int:
    from core.cutover.check import check as run_check

    findings = run_check(settings)
    for f in findings:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[f.ok]
        print(f"  {mark} {f.what}: {f.detail}")
    failed = [f.what for f in findings if f.ok is False]
    if failed:
        print(f"Not ready: fix {', '.join(failed)} above, then run `stackshift check -e {name}` again.")
        return NOT_READY
    print(f"Ready: `stackshift plan -e {name} -t <release>` shows what an upgrade would do.")
    return 0


def read_stack(args: argparse.Namespace) -> tuple[ReadStack, docker.DockerClient]:
    """The stack in `args.compose_dir` as compose and the engine see it: project, files, config, running services."""
    from core.discovery import ReadStack
    from core.errors import CommandFailed, ComposeConfigUnreadable, ComposeFilesMissing, ProjectNotFound
    from core.io import commands as c
    from core.io.compose import ResolvedConfig, parse_ps
    from core.io.executor import run
    from core.stackio import LOCAL_ENGINE, DockerEndpoint

    compose_dir = Path(args.compose_dir).resolve()
    endpoint = DockerEndpoint(os.environ.get("DOCKER_HOST") or LOCAL_ENGINE)
    client = endpoint.client()
    labels = _project_labels(client, compose_dir, args.project)
    if args.project is None and len(labels) != 1:
        raise ProjectNotFound(str(compose_dir), sorted(labels))
    project = args.project or next(iter(labels))
    files = _compose_files(compose_dir, labels.get(project))
    if not files:
        raise ComposeFilesMissing(str(compose_dir))
    env_file = compose_dir / ".env"
    where = c.ComposeProject(compose_dir, tuple(compose_dir / f for f in files),
                             env_file if env_file.exists() else None, project)
    try:
        config = ResolvedConfig.parse(run(c.Command(c.compose_config_json(where), env=endpoint.env)).stdout)
        statuses = parse_ps(run(c.Command(c.compose_ps_json(where), env=endpoint.env)).stdout)
    except CommandFailed as exc:
        raise ComposeConfigUnreadable(str(compose_dir), exc.stderr.strip().splitlines()[-1] if exc.stderr.strip()
                                      else str(exc)) from None
    running = frozenset(s.service for s in statuses if s.state == "running")
    if not running:
        raise ProjectNotFound(str(compose_dir), [])
    backup = Path(args.backup_dir) if args.backup_dir else Path("/var/backups/stackshift")
    return ReadStack(
        compose_dir, project, files, config, backup.resolve(), running,
        docker_host=os.environ.get("DOCKER_HOST"),
        why_project="given" if args.project else f"the compose project running from this folder: {len(running)} "
                                                  f"services",
        why_backup="given" if args.backup_dir else "the usual place; --backup-dir sets another"), client


def _project_labels(client: docker.DockerClient, compose_dir: Path, project: str | None) -> dict[str, dict]:
    """Project name → one container's labels, of the compose projects started from `compose_dir` (or `project`)."""
    found: dict[str, dict] = {}
    label = f"com.docker.compose.project={project}" if project else f"{WORKING_DIR}={compose_dir}"
    for ctr in client.containers.list(all=True, filters={"label": label}):
        found.setdefault(ctr.labels.get("com.docker.compose.project", ""), ctr.labels)
    return found


def _compose_files(compose_dir: Path, labels: dict | None) -> tuple[str, ...]:
    """The compose files the running project was started with (relative to its folder), else the first file of the
    usual names there."""
    started = [Path(f) for f in (labels or {}).get(CONFIG_FILES, "").split(",") if f]
    if started and all(f.is_relative_to(compose_dir) for f in started):
        return tuple(str(f.relative_to(compose_dir)) for f in started)
    return tuple(n for n in COMPOSE_NAMES if (compose_dir / n).is_file())[:1]


def propose(stack: ReadStack, client: docker.DockerClient) -> Proposal:
    """The discovery, with the live stack's probes: its URLs answered now, Python packages inside its images."""
    from core.discovery import Probes, discover
    from core.io import commands as c
    from core.io.executor import run

    def package_dir(image: str, package: str) -> str | None:
        done = run(c.Command(c.python_package_dir(image, package, stack.project), timeout=120,
                             env={"DOCKER_HOST": stack.docker_host} if stack.docker_host else {}), check=False)
        return done.stdout.strip() or None if done.returncode == 0 else None

    return discover(stack, Probes(http=_get, package_dir=package_dir))


def _get(url: str) -> tuple[int, str] | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, resp.read(4096).decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return None


def _print_proposal(stack: ReadStack, p: Proposal, name: str) -> None:
    print(f"stackshift init: {stack.compose_dir}: {p.app} (compose project {stack.project}, running: "
          f"{', '.join(sorted(stack.running))})")
    print(f"Proposed block stack-environment/{name}, what was guessed and why:")
    for g in p.guesses:
        print(f"  {g.line()}")
    if p.gaps:
        print("Could not tell:")
        for gap in p.gaps:
            print(f"  {gap.line()}")


def _settings(p: Proposal) -> Settings:
    """The proposal with the database password, validated as the settings a run would read."""
    from pydantic import SecretStr

    from core.errors import DiscoveryIncomplete, PasswordMissing
    from core.settings import Settings

    if p.gaps:
        raise DiscoveryIncomplete([gap.line() for gap in p.gaps])
    user = p.value("database", "user")
    if os.environ.get(PASSWORD_VARIABLE):
        password, source = SecretStr(os.environ[PASSWORD_VARIABLE]), PASSWORD_VARIABLE
    elif p.password is not None:
        password, source = p.password, p.password_from
    elif sys.stdin.isatty():
        import getpass
        password, source = SecretStr(getpass.getpass(f"Password of the database role {user}: ")), "typed"
    else:
        raise PasswordMissing(user)
    print(f"  database.password = ********  ({source}; stored as a secret in the block)")
    fields: dict[str, Any] = {**p.fields, "database": {**p.fields["database"], "password": password}}
    return Settings.model_validate(fields)


def _save(settings: Settings, name: str, args: argparse.Namespace) -> None:
    from blocks.stack_environment import StackEnvironment
    from core.errors import EnvironmentExists, NotConfirmed

    with _prefect():
        try:
            StackEnvironment.load(name)
            exists = True
        except ValueError:
            exists = False
    if exists and not args.force:
        raise EnvironmentExists(name)
    if not args.yes:
        asked = sys.stdin.isatty()
        if not asked or input(f"Save it as stack-environment/{name}? [y/N] ").strip().lower() not in ("y", "yes"):
            raise NotConfirmed(name, asked)
    block = StackEnvironment(**{group: getattr(settings, group) for group in type(settings).model_fields})
    with _prefect():
        block.save(name, overwrite=exists)
