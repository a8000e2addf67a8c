"""Bad input for `test_bad_input`, beyond pre-flight's readers: env-sync (`cli.main.env_sync_run`, what the command
runs before it prints), analyze-migrations (`cli.migrations._analyse`), init (`cli.init.read_stack`, `_settings` over
`core.discovery`), the target ref and the checkout, the revision files and the run journals.

Each maker takes the test's folder, sets the bad input up there and returns the call that must refuse it."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import DIFY
from tests.unit.test_env_split_layout import SPLIT
from tests.unit.test_env_split_sync import REQUIRED_SECRET  # what `requiring_a_secret` makes the target require

Make = Callable[[Path], Callable[[], object]]


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """os.environ with `values` set (None: unset) for the duration."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


# --- env-sync ------------------------------------------------------------------------------------------------------
def fake_compose_version(folder: Path, answer: str) -> Path:
    """FAKE_COMPOSE_VERSION: a `docker` that answers `compose version` with `answer` and passes everything else to
    the real one. A mock, because no Compose older than 2.24 can be installed in the test run."""
    fake = folder / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nif [ \"$1 $2\" = \"compose version\" ]; then echo '{answer}'; exit 0; fi\n"
                    f"exec {shutil.which('docker')} \"$@\"\n")
    fake.chmod(0o755)
    return fake.parent


def env_sync_argv(tmp_path: Path, setup: Callable[[Path], None] = lambda docker: None, *,  # noqa: PLR0913
                  compose_version: str | None = None, old: Path = DIFY / "env.example.1.12.1",
                  new: str = ".env.example", compose: bool = True) -> tuple[list[str], str]:
    """`env-sync` of an operator's .env (made from Dify 1.12.1's template) onto a copy of the split 1.15.0 target,
    which `setup(docker)` breaks: its argv, and the PATH to run it with (the real `docker compose`, or one that
    reports `compose_version`)."""
    docker = tmp_path / "docker"
    shutil.copytree(SPLIT, docker)
    env = docker / ".env"
    env.write_text(re.sub(r"(?m)^SECRET_KEY=.*$", "SECRET_KEY=sk-bad-input-K1",
                          (DIFY / "env.example.1.12.1").read_text()))
    setup(docker)
    path = os.environ["PATH"]
    if compose_version:
        path = f"{fake_compose_version(tmp_path, compose_version)}{os.pathsep}{path}"
    argv = ["env-sync", "--env-file", str(env), "--old-template", str(old), "--new-template", str(docker / new)]
    return argv + (["--compose-file", str(docker / "docker-compose.yaml")] if compose else []), path


def env_sync(setup: Callable[[Path], None] = lambda docker: None, **kw) -> Make:
    """What `env-sync` runs before it prints (`cli.main.env_sync_run`), over `env_sync_argv`."""
    def make(tmp_path: Path):
        from cli.main import env_sync_run, parser
        argv, path = env_sync_argv(tmp_path, setup, **kw)
        args = parser().parse_args(argv)

        def call():
            with environ(PATH=path, **{REQUIRED_SECRET: None}):
                return env_sync_run(args, frozenset())
        return call
    return make


def write(rel: str, text: str) -> Callable[[Path], None]:
    def setup(docker: Path):
        (docker / rel).write_text(text)
    return setup


def remove(rel: str) -> Callable[[Path], None]:
    def setup(docker: Path):
        (docker / rel).unlink()
    return setup


def foreign_template(docker: Path):
    (docker / ".env.example").write_text("".join(f"OTHER_APP_KEY_{i}=v{i}\n" for i in range(40)))


# --- analyze-migrations ------------------------------------------------------------------------------------------
def analyze_argv(tmp_path: Path, setup: Callable[[Path], Path], *extra: str) -> list[str]:
    return ["analyze-migrations", "--sql", str(setup(tmp_path)), *extra]


def analyze(setup: Callable[[Path], Path], *extra: str) -> Make:
    """analyze-migrations' reading and connecting (`_analyse`, before any statement is analysed)."""
    def make(tmp_path: Path):
        from cli.live import Phases
        from cli.main import parser
        from cli.migrations import _analyse
        args = parser().parse_args(analyze_argv(tmp_path, setup, *extra))
        return lambda: _analyse(args, Phases(io.StringIO(), False))
    return make


def sql_file(data: bytes) -> Callable[[Path], Path]:
    def setup(tmp_path: Path) -> Path:
        (tmp_path / "upgrade.sql").write_bytes(data)
        return tmp_path / "upgrade.sql"
    return setup


def no_sql_file(tmp_path: Path) -> Path:
    return tmp_path / "upgrade.sql"


# --- init ----------------------------------------------------------------------------------------------------------
class FakeEngine:
    """A stand-in for the Docker engine, which the fast tier has none of: one container of project `stack`."""

    class containers:  # noqa: N801 (the SDK's attribute)
        @staticmethod
        def list(**kw):
            from types import SimpleNamespace
            return [SimpleNamespace(labels={"com.docker.compose.project": "stack"})]


def init_reads(files: dict[str, str], *, engine: bool = True) -> Make:
    """`init --project stack` reading a folder holding `files`; the engine faked (FakeEngine) unless `engine` is
    False, when DOCKER_HOST names a socket nobody listens on."""
    def make(tmp_path: Path):
        from cli.init import read_stack
        from cli.main import parser
        from core.stackio import DockerEndpoint
        folder = tmp_path / "stack"
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
        args = parser().parse_args(["init", str(folder), "--project", "stack"])

        def call():
            real = DockerEndpoint.client
            if engine:
                DockerEndpoint.client = lambda self: FakeEngine()  # type: ignore[method-assign,assignment]
            try:
                with environ(DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock"):
                    return read_stack(args)
            finally:
                DockerEndpoint.client = real  # type: ignore[method-assign]
        return call
    return make


def init_proposes(compose: str, env: str) -> Make:
    """init's proposal (`core.discovery` over the real `docker compose config`) turned into the block's settings."""
    def make(tmp_path: Path):
        from cli import init
        from core.discovery import ReadStack, discover
        from core.io import commands as c
        from core.io.compose import ResolvedConfig
        from core.io.executor import run
        folder = tmp_path / "stack"
        folder.mkdir()
        (folder / "docker-compose.yaml").write_text(compose)
        (folder / ".env").write_text(env)
        where = c.ComposeProject(folder, (folder / "docker-compose.yaml",), folder / ".env", "stack")
        config = ResolvedConfig.parse(run(c.compose_config_json(where)).stdout)
        proposal = discover(ReadStack(folder, "stack", ("docker-compose.yaml",), config, tmp_path / "backups",
                                      frozenset(config.services)))

        def call():
            with environ(**{init.PASSWORD_VARIABLE: None}), contextlib.redirect_stdout(io.StringIO()):
                return init._settings(proposal)
        return call
    return make


def demo_without_password() -> tuple[str, str]:
    """The lab's demo stack with trust authentication: its configuration holds no database password."""
    from lab.demo import releases as demo
    r = demo.RELEASES[0]
    compose = demo.compose_yaml(r).replace("POSTGRES_PASSWORD: ${DB_PASSWORD:-app-password}",
                                           "POSTGRES_HOST_AUTH_METHOD: trust")
    return compose, r.env_example


# --- the checkout, the revision files, the journals ----------------------------------------------------------------
def git_checkout(tmp_path: Path) -> Path:
    """A checkout with one commit tagged v1.0.0: a compose file and a .gitignore'd .env."""
    repo = tmp_path / "stack"
    repo.mkdir()
    (repo / "docker-compose.yaml").write_text("services:\n  api:\n    image: demo/app:1.0.0\n")
    (repo / ".gitignore").write_text(".env\n")
    (repo / ".env").write_text("LOG_LEVEL=INFO\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    subprocess.run([*git, "tag", "v1.0.0"], check=True)
    return repo


def checkout_read(target: str, setup: Callable[[Path], None] = lambda repo: None) -> Make:
    """Pre-flight's `read_deployed` of release `target` over a real checkout that `setup(repo)` breaks."""
    def make(tmp_path: Path):
        from core.cutover import preflight
        from tests.unit._settings import settings
        from tests.unit.test_preflight_readers import CONFIG, FakeIO
        repo = git_checkout(tmp_path)
        setup(repo)
        fake = FakeIO([], CONFIG)

        def call():
            try:
                return preflight.read_deployed(fake, settings(compose_dir=repo), target)
            finally:
                assert fake.argvs == [], "compose ran before the bad input was found"
        return call
    return make


def edit_compose_file(repo: Path):
    (repo / "docker-compose.yaml").write_text("services:\n  api:\n    image: demo/app:1.0.0-hotfix\n")


def revision_files(files: dict[str, str], db_revisions: list[str] | None = None) -> Make:
    """The target's versions folder (real files, read as pre-flight reads them) and, if given, the database's
    alembic_version rows against it."""
    def make(tmp_path: Path):
        from core.migrations.revgraph import RevisionGraph, read_sources, state
        versions = tmp_path / "versions"
        versions.mkdir()
        for name, text in files.items():
            (versions / name).write_text(text)

        def call():
            graph = RevisionGraph.from_sources(read_sources(versions))
            return state(graph, db_revisions) if db_revisions is not None else graph
        return call
    return make


def journal_reads(text: str) -> Make:
    """The open runs of a project (what pre-flight and recover read first) with one journal holding `text`."""
    def make(tmp_path: Path):
        from core.cutover.journal import JOURNAL, Journal
        run = tmp_path / "stack" / "20260101T000000Z-r1"
        run.mkdir(parents=True)
        (run / JOURNAL).write_text(text)
        return lambda: Journal.open_runs(tmp_path / "stack")
    return make
