"""End-to-end fixtures: the real lab (Docker engine, registry, PostgreSQL in containers, Prefect server).

A missing lab is a test failure, never a skip: run `lab/setup` (the README's test command does).
"""
import secrets
import shutil
import subprocess
import urllib.request
from contextlib import contextmanager, suppress

import pytest

from lab import stack
from lab.paths import DEMO_REPO
from tests.e2e import server


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def lab_ready():
    problems = []
    if subprocess.run(["docker", "info"], check=False, capture_output=True).returncode != 0:
        problems.append("no Docker engine")
    if not _reachable("http://127.0.0.1:5000/v2/"):
        problems.append("no registry on 127.0.0.1:5000")
    if not _reachable("http://127.0.0.1:4200/api/health"):
        problems.append("no Prefect server on 127.0.0.1:4200")
    if subprocess.run(["docker", "-H", stack.PROD_ENGINE, "info"], check=False, capture_output=True).returncode != 0:
        problems.append(f"no prod engine at {stack.PROD_ENGINE}")
    if not DEMO_REPO.exists():
        problems.append(f"no demo repository at {DEMO_REPO}")
    if problems:
        pytest.fail("The lab is not up (" + ", ".join(problems) + "): run lab/setup", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def server_left_clean(lab_ready):
    """After the session: nothing this session made is left on the Prefect server (deployments, automations,
    blocks, variables, concurrency limits named after its stacks, their flow runs and artifacts). Leftovers are
    removed, and the session fails."""
    yield
    left = server.found(server.SESSION)
    if left:
        server.remove(*server.SESSION)
        pytest.fail("The tests left on the Prefect server: " + ", ".join(f"{k} {n!r}" for k, n, _ in left),
                    pytrace=False)


@contextmanager
def _deployments(tmp_path_factory):
    """A factory of demo-stack deployments (each with a saved stack-environment block of the same name); on exit
    every one is stopped and removed with its folder and block."""
    made = []
    tmp_path_factory.getbasetemp()  # made once, before any thread asks for a folder in it

    def create(release: str = "v1.0.0", rows: int = 200_000, docker_host: str | None = None) -> stack.Deployment:
        """The stack only (no Prefect call: safe in a thread)."""
        name = "e2e-" + secrets.token_hex(4)
        server.SESSION.add(name)
        root = tmp_path_factory.mktemp(name)
        dep = stack.create(root, name, release, rows, docker_host=docker_host)
        made.append((dep, root))
        return dep

    def register(dep: stack.Deployment, **block_overrides) -> stack.Deployment:
        save_block(dep, **block_overrides)
        return dep

    def make(release: str = "v1.0.0", rows: int = 200_000, docker_host: str | None = None, **block_overrides):
        return register(create(release, rows, docker_host), **block_overrides)

    def make_many(*specs: dict) -> list[stack.Deployment]:
        """Several deployments at once (each spec: make's arguments): the stacks start side by side, their
        containers' start and health waits overlap; the blocks are then saved from this thread."""
        from concurrent.futures import ThreadPoolExecutor

        keys = ("release", "rows", "docker_host")
        with ThreadPoolExecutor(len(specs)) as pool:
            futures = [pool.submit(create, **{k: v for k, v in spec.items() if k in keys}) for spec in specs]
            deps = [f.result() for f in futures]
        return [register(dep, **{k: v for k, v in spec.items() if k not in keys})
                for dep, spec in zip(deps, specs, strict=True)]

    make.many = make_many
    try:
        yield make
    finally:
        for dep, root in made:
            dep.down()
            shutil.rmtree(root, ignore_errors=True)
            server.remove(dep.name)  # its blocks, concurrency limit, served deployments, automation


@pytest.fixture
def make_deployment(tmp_path_factory):
    with _deployments(tmp_path_factory) as make:
        yield make


@pytest.fixture(scope="module")
def make_module_deployment(tmp_path_factory):
    """Like make_deployment, for deployments shared by a module's tests."""
    with _deployments(tmp_path_factory) as make:
        yield make


def save_block(dep: stack.Deployment, **block_overrides) -> None:
    """The deployment's stack-environment block, saved under its name (on the server of the current settings)."""
    from blocks.stack_environment import StackEnvironment

    # FILE_COPY unless a test asks: `auto` would pick by the copy rate measured on a busy host, and a test's path
    # must not depend on the machine's load (tests/e2e/test_rollback_point.py covers PITR and `auto`)
    fields = dep.block_fields() | {"rollback_point": "file-copy"} | block_overrides
    StackEnvironment(**fields).save(dep.name, overwrite=True)


def _delete_block(name: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client, suppress(Exception):
        client.delete_block_document(client.read_block_document_by_name(name, "stack-environment").id)
