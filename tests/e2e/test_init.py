"""`stackshift init` on a running lab stack: the block it saves lets `check` and `plan` pass, and equals the block
the tests write by hand wherever an upgrade depends on it; it never prints the password, never replaces a block
without --force, and `check` changes nothing."""
import os
import subprocess
from contextlib import suppress

import pytest

from flows.upgrade import load_environment
from tests.conftest import ROOT
from tests.e2e.helpers import snapshot
from tests.unit.test_discovery import assert_same_where_it_matters

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("init")]


def stackshift(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "STACKSHIFT_DB_PASSWORD"}
    return subprocess.run([str(ROOT / "stackshift"), *args], capture_output=True, text=True, check=False,
                          env=clean | (env or {}), stdin=subprocess.DEVNULL, timeout=600)


@pytest.fixture
def init_name(make_deployment):
    """A deployment with its hand-made block, and the name init saves its own block under (deleted afterwards)."""
    dep = make_deployment(rows=2_000)
    name = f"{dep.name}-init"
    yield dep, name
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client, suppress(Exception):
        client.delete_block_document(client.read_block_document_by_name(name, "stack-environment").id)


def test_init_then_check_and_plan_pass(init_name):
    dep, name = init_name
    done = stackshift("init", str(dep.compose_dir), "--name", name, "--backup-dir", str(dep.backup_dir), "--yes")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert dep.db_password not in out
    assert f"database.port = {dep.db_port}  (db's published port for 5432)" in out
    assert "database.password = ********  (POSTGRES_PASSWORD of db" in out
    assert "Ready: `stackshift plan" in out
    found, hand = load_environment(name), load_environment(dep.name)
    assert_same_where_it_matters(found, hand)
    assert found.backup.dir == hand.backup.dir

    before = snapshot(dep)
    checked = stackshift("check", "-e", name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert snapshot(dep) == before, "check changes nothing"
    assert [line.split()[0] for line in checked.stdout.splitlines()[:-1]] == ["ok"] * 6, checked.stdout

    planned = stackshift("plan", "-e", name, "-t", "v2.0.0")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert dep.db_password not in planned.stdout + planned.stderr


def test_init_refuses_to_replace_a_block_and_a_wrong_password_fails_check(init_name):
    dep, name = init_name
    first = stackshift("init", str(dep.compose_dir), "--name", name, "--backup-dir", str(dep.backup_dir), "--yes",
                       env={"STACKSHIFT_DB_PASSWORD": "not-the-password"})
    assert first.returncode == 3, first.stdout + first.stderr  # saved, but check fails: the role cannot connect
    assert "FAIL database:" in first.stdout and "not-the-password" not in first.stdout + first.stderr
    again = stackshift("init", str(dep.compose_dir), "--name", name, "--yes")
    assert again.returncode == 2 and "EnvironmentExists" in again.stderr and "--force" in again.stderr
    assert load_environment(name).database.password.get_secret_value() == "not-the-password"  # unchanged
    forced = stackshift("init", str(dep.compose_dir), "--name", name, "--backup-dir", str(dep.backup_dir), "--yes",
                        "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert load_environment(name).database.password.get_secret_value() == dep.db_password


def test_init_on_a_folder_where_nothing_runs(tmp_path):
    (tmp_path / "docker-compose.yaml").write_text("services:\n  web:\n    image: nginx\n")
    done = stackshift("init", str(tmp_path), "--yes")
    assert done.returncode == 2
    assert "ProjectNotFound" in done.stderr and "docker compose up -d --wait" in done.stderr


def test_init_on_the_mlflow_stack(tmp_path_factory):
    """MLflow, shaped unlike Dify: no switch, a backend URI, its package's revision files found inside the image."""
    import secrets
    import shutil

    from lab.mlflow import build
    from lab.mlflow import stack as mlstack
    from tests.e2e import server

    build.ensure()
    name = "e2e-mlflow-init-" + secrets.token_hex(3)
    root = tmp_path_factory.mktemp(name)
    dep = mlstack.create(root, name, "3.6.0", metric_rows=0)
    try:
        done = stackshift("init", str(dep.compose_dir), "--backup-dir", str(dep.backup_dir), "--yes")
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert dep.db_password not in out
        assert "MLflow (compose project" in out and "migration.switch = (none)" in out
        hand = by_hand_mlflow(dep)
        assert_same_where_it_matters(load_environment(name), hand)
        planned = stackshift("plan", "-e", name, "-t", "3.17.2")
        assert planned.returncode == 0, planned.stdout + planned.stderr
    finally:
        dep.down()
        shutil.rmtree(root, ignore_errors=True)
        server.remove(name)  # the block init saved, the plan's flow run and its artifacts


def by_hand_mlflow(dep):
    from tests.unit.test_discovery import by_hand

    return by_hand(dep.block_fields())
