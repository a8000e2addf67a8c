"""End-to-end fixtures: the real lab (Docker engine, registry, PostgreSQL in containers, Prefect server).

A missing lab is a test failure, never a skip: run `lab/setup` (the README's test command does).
"""
import secrets
import shutil
import subprocess
import urllib.request
from contextlib import contextmanager

import pytest

from lab import stack


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def lab_ready():
    problems = []
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        problems.append("no Docker engine")
    if not _reachable("http://127.0.0.1:5000/v2/"):
        problems.append("no registry on 127.0.0.1:5000")
    if not _reachable("http://127.0.0.1:4200/api/health"):
        problems.append("no Prefect server on 127.0.0.1:4200")
    if subprocess.run(["docker", "-H", stack.PROD_ENGINE, "info"], capture_output=True).returncode != 0:
        problems.append(f"no prod engine at {stack.PROD_ENGINE}")
    if not stack.DEMO_REPO.exists():
        problems.append(f"no demo repository at {stack.DEMO_REPO}")
    if problems:
        pytest.fail("The lab is not up (" + ", ".join(problems) + "): run lab/setup", pytrace=False)


@contextmanager
def _deployments(tmp_path_factory):
    """A factory of demo-stack deployments (each with a saved stack-environment block of the same name); on exit
    every one is stopped and removed with its folder and block."""
    from blocks.stack_environment import StackEnvironment

    made = []

    def make(release: str = "v1.0.0", rows: int = 200_000, docker_host: str | None = None, **block_overrides):
        name = "e2e-" + secrets.token_hex(4)
        root = tmp_path_factory.mktemp(name)
        dep = stack.create(root, name, release, rows, docker_host=docker_host)
        made.append((dep, root))
        # FILE_COPY unless a test asks: `auto` would pick by the copy rate measured on a busy host, and a test's path
        # must not depend on the machine's load (tests/e2e/test_rollback_point.py covers PITR and `auto`)
        fields = dep.block_fields() | {"rollback_point": "file-copy"} | block_overrides
        StackEnvironment(**fields).save(name, overwrite=True)
        return dep

    try:
        yield make
    finally:
        for dep, root in made:
            dep.down()
            shutil.rmtree(root, ignore_errors=True)
            _delete_block(dep.name)


@pytest.fixture
def make_deployment(tmp_path_factory):
    with _deployments(tmp_path_factory) as make:
        yield make


@pytest.fixture(scope="module")
def make_module_deployment(tmp_path_factory):
    """Like make_deployment, for deployments shared by a module's tests."""
    with _deployments(tmp_path_factory) as make:
        yield make


def _delete_block(name: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            client.delete_block_document(client.read_block_document_by_name(name, "stack-environment").id)
        except Exception:
            pass
