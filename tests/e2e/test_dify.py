"""Dify's real compose files, end to end: the lab's Dify-faithful stack (lab/dify: Dify 1.12.1's compose file and
`.env.example`, then the split layout of 1.15.0, stand-in images under Dify's names) deployed from the `docker/`
folder of a checkout with Dify's tags, its block written by `stackshift init`, then planned, failed and rolled back,
killed mid-cutover and recovered, and upgraded.

One stack serves the module, in order: the plan; a target whose migration fails, then one whose one-shot job fails
(each rolled back); a runner killed during the cutover (recover rolls back); the upgrade to 1.15.0, whose
verification passes with `init_permissions` exited 0.
"""
import os
import secrets
import shutil
import signal
import subprocess
import time

import pytest

from blocks.stack_environment import StackEnvironment
from core.errors import MigrationFailed, StepFailed
from flows.upgrade import upgrade
from lab.dify import build
from lab.dify import stack as dify
from lab.dify.releases import HEADS
from tests.e2e import server
from tests.e2e.test_fault_matrix import ROOT, cli, flow_run_state, journal_of, leftover_containers, recover, \
    wait_for_marker

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("dify")]
ROWS = 300
DATABASES = {"postgres", "dify", "dify_plugin"}  # the plugin daemon creates its own, like the real one


def stackshift(*args: str, docker_host: str | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("STACKSHIFT_DB_PASSWORD", "DOCKER_HOST")}
    env = clean | ({"DOCKER_HOST": docker_host} if docker_host else {})
    return subprocess.run([str(ROOT / "stackshift"), *args], capture_output=True, text=True, check=False, env=env,
                          stdin=subprocess.DEVNULL, timeout=600)


def init_block(dep, host: str | None = None) -> None:
    """The block `stackshift init` proposes for the deployment (run with its engine as DOCKER_HOST), saved with the
    forecast's probe off and FILE_COPY, as in the other e2e tests (the probe is bench/dify_plan.py's subject);
    `host` names the lab host whose worker may run it (a promotion's environments)."""
    done = stackshift("init", str(dep.compose_dir), "--name", dep.name, "--backup-dir", str(dep.backup_dir), "--yes",
                      docker_host=dep.docker_host)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "migration.replace_entrypoint = True" in done.stdout and dep.db_password not in done.stdout
    block = StackEnvironment.load(dep.name)
    assert block.stack.compose_files == ("docker-compose.yaml", "docker-compose.override.yaml")
    assert block.stack.docker_host == dep.docker_host
    assert block.database.extra_databases == ("dify_plugin",)
    block.migration = block.migration.model_copy(update={"probe": False})
    block.rollback_point = block.rollback_point.model_copy(update={"method": "file-copy"})
    block.stack = block.stack.model_copy(update={"host": host})
    block.save(dep.name, overwrite=True)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The stack at 1.12.1 with its seeded rows, and the block `stackshift init` proposed for it."""
    build.ensure()
    name = "e2e-dify-" + secrets.token_hex(3)
    server.SESSION.add(name)
    root = tmp_path_factory.mktemp(name)
    dep = dify.create(root, name, "1.12.1", rows=ROWS)
    try:
        init_block(dep)
        yield dep, dify.fingerprint(dep)
    finally:
        dep.down()
        shutil.rmtree(root, ignore_errors=True)
        server.remove(name)


def databases(dep) -> set[str]:
    with dep.connect("postgres") as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")}


def assert_on_1_12_1(dep, rows) -> None:
    assert dep.revision() == [HEADS["1.12.1"]]
    assert (dep.health() or {}).get("version") == "1.12.1", "the api answers through nginx"
    states = dep.states()
    assert states.pop("init_permissions") == ("exited", 0)
    assert all(state == "running" for state, _ in states.values()), states
    assert dify.fingerprint(dep) == rows
    assert databases(dep) == DATABASES, "no rollback point or failed state left"
    assert leftover_containers(dep) == []


def test_plan_with_the_block_init_proposed(deployed):
    dep, _ = deployed
    t0 = time.monotonic()
    done = stackshift("plan", "-e", dep.name, "-t", "1.15.0")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert f"database {HEADS['1.12.1']} → {HEADS['1.15.0']} (1 pending revision(s))" in out
    assert "--entrypoint flask" not in out and dep.db_password not in out
    print(f"plan wall time: {time.monotonic() - t0:.1f} s")
    same = stackshift("plan", "-e", dep.name, "-t", "1.12.1")
    assert same.returncode == 0 and "Already at 1.12.1: nothing to do" in same.stdout, \
        same.stdout + same.stderr  # init_permissions exited 0 is up as it should be, not "does not run"


def test_a_failing_migration_fails_the_upgrade_with_its_exit_code_and_rolls_back(deployed):
    dep, rows = deployed
    state = upgrade(environment=dep.name, target="1.15.0-broken", return_state=True)
    assert state.is_failed()
    with pytest.raises(MigrationFailed) as raised:
        state.result()
    assert "CheckViolation" in str(raised.value), "the migration's own error, read from its output"
    assert "exited 1" in str(raised.value.__cause__), "and its exit code"
    j = journal_of(dep)
    assert j.status == "rolled-back", j.status  # not rollback-failed: verify-previous accepts the exited job
    assert_on_1_12_1(dep, rows)


def test_a_failing_one_shot_job_fails_the_upgrade_with_its_exit_code_and_rolls_back(deployed):
    dep, rows = deployed
    state = upgrade(environment=dep.name, target="1.15.0-badjob", return_state=True)
    assert state.is_failed()
    with pytest.raises(StepFailed) as raised:
        state.result()
    said = str(raised.value)
    assert "init_permissions" in said and "exit" in said and "3" in said, said
    assert "init_permissions is exited, exit code 3" in said  # by compose's depends_on check or the wait
    assert "the one-shot job cannot run" in said, "with its last log lines"
    assert journal_of(dep).status == "rolled-back"
    assert_on_1_12_1(dep, rows)


def test_sigkill_of_the_runner_after_the_migration_then_recover(deployed, tmp_path):
    dep, rows = deployed
    spec = "cutover:migrate:hold-after"
    marker = tmp_path / "marker"
    proc = cli("upgrade", "--environment", dep.name, "--target", "1.15.0", fault=spec, marker=marker)
    wait_for_marker(marker, spec, proc, timeout=300)
    assert dep.revision() == [HEADS["1.15.0"]], "killed after the migration committed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert journal_of(dep).status == "running", "the dead runner left its journal open"
    said, _ = recover(dep)
    assert "rolled back" in said, said
    assert_on_1_12_1(dep, rows)
    assert flow_run_state(journal_of(dep).flow_run_id).is_crashed()


def test_upgrade_1_12_1_to_the_split_release(deployed):
    dep, rows = deployed
    result = upgrade(environment=dep.name, target="1.15.0")
    assert dep.revision() == [HEADS["1.15.0"]]
    assert (dep.health() or {}).get("version") == "1.15.0"
    states = dep.states()
    assert states.pop("init_permissions") == ("exited", 0), "the one-shot job ran and passed the verification"
    assert states.pop("db_postgres") == ("running", 0), "the database starts with the merged env"
    assert {"agent_backend", "local_sandbox", "api_websocket"} <= set(states), "1.15.0's new services"
    assert all(state == "running" for state, _ in states.values()), states
    assert dify.fingerprint(dep) == rows
    assert databases(dep) == DATABASES
    env = (dep.compose_dir / ".env").read_text()
    assert f"DB_PASSWORD={dep.db_password}\n" in env and f"EXPOSE_NGINX_PORT=127.0.0.1:{dep.nginx_port}\n" in env
    assert result["downtime"]["total"] > 0
