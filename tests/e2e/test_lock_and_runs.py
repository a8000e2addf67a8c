"""One lock per environment, whoever starts the run; the flow as task runs a person can watch; the crash automation;
pre-flight's new refusals (privilege, disk, Docker host)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterId, LogFilter,
                                           LogFilterFlowRunId)
from prefect.client.schemas.sorting import TaskRunSort

from blocks.stack_environment import StackEnvironment
from core.errors import DockerHostUnreachable, InsufficientDisk, MissingPrivilege
from core.cutover.journal import Journal
from core.cutover.lock import LOCK_FILE
from deployments.serve import automation_name
from flows.upgrade import upgrade
from lab import stack
from tests.e2e.conftest import _delete_block
from tests.e2e.helpers import final, snapshot
from tests.e2e.test_fault_matrix import ROOT, assert_whole, cli, flow_run_state, journal_of, wait_for_marker

pytestmark = pytest.mark.e2e
HOLD = "backup:manifest:hold-after"


def unchanged(snap: dict) -> dict:
    """A snapshot without the backup folder listing (the winner of a race writes its own run folder)."""
    return {k: v for k, v in snap.items() if k not in ("backups",)}


def run_folders(dep) -> list[Path]:
    root = dep.backup_dir / dep.name
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.exists() else []


def stop_winner(dep) -> None:
    """SIGTERM to the process holding the lock (the journal names it): it stops before the cutover, changing nothing."""
    j = journal_of(dep)
    os.kill(j.pid, signal.SIGTERM)
    for _ in range(300):
        if Journal.load(j.path).status != "running":
            return
        time.sleep(0.1)
    pytest.fail("the lock holder did not stop")


@contextlib.contextmanager
def reaped(*procs: subprocess.Popen):
    """The CLI processes a trial started end with it, whatever happens in it: a failed trial must not leave a winner
    holding the lock of the module's stack (the refusal tests that share it would then all be refused)."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()


# The refusals share the module's deployment on one worker (lab/test runs tests in parallel; the two ten-trial races,
# long, may run on others, each with a deployment of its own).
REFUSALS = pytest.mark.xdist_group("lock-and-runs-refusals")


@pytest.fixture(scope="module")
def v1(make_module_deployment):
    dep = make_module_deployment(rows=5_000, migration_probe=False)  # the races need the lock, not the forecast
    yield dep
    for suffix in ("-weak", "-tiny", "-nodocker"):
        _delete_block(dep.name + suffix)


def test_two_cli_runs_at_once_exactly_one_proceeds_ten_trials(v1, tmp_path):
    dep = v1
    for trial in range(10):
        before = snapshot(dep)
        folders = run_folders(dep)
        marker = tmp_path / f"marker{trial}"
        a, b = (cli("upgrade", "-e", dep.name, "-t", "v2.0.0", fault=HOLD, marker=marker) for _ in range(2))
        with reaped(a, b):
            refused = None
            deadline = time.monotonic() + 120
            while refused is None and time.monotonic() < deadline:
                refused = next((p for p in (a, b) if p.poll() is not None), None)
                time.sleep(0.05)
            assert refused is not None, "neither run was refused"
            err = refused.communicate()[1]
            assert refused.returncode == 1 and "StackLocked" in err, err[-2000:]
            winner = b if refused is a else a
            wait_for_marker(marker, HOLD, winner)
            holder = journal_of(dep)
            assert f"run {holder.run}" in err and f"pid {holder.pid}" in err and "since" in err, "the holder is named"
            assert unchanged(snapshot(dep)) == unchanged(before), "the refused run changed nothing"
            assert len(run_folders(dep)) == len(folders) + 1, "only the winner made a run folder"
            stop_winner(dep)
            winner.communicate(timeout=120)
        assert unchanged(snapshot(dep)) == unchanged(before)


def start_serving(name: str, fault: str = "", marker: Path | None = None, others: tuple[str, ...] = (),
                  env: dict | None = None) -> subprocess.Popen:
    """`deployments.serve` for an environment (and `others`), as a process (its runs inherit the fault injection
    given, and `env`); returns once its deployments exist."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "PREFECT_RUNNER_POLL_FREQUENCY": "1",
                        "STACKSHIFT_INJECT_FAULT": fault, "STACKSHIFT_INJECT_FAULT_MARKER": str(marker or "")} | \
        (env or {})
    # its own host name: each serving process has its own internal `promotion-<host>` deployment
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "python"), "-m", "deployments.serve", "--host",
                             f"local-{name}", name, *others],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    with get_client(sync_client=True) as client:
        for _ in range(200):
            try:
                client.read_deployment_by_name(f"recover/recover-{(name, *others)[-1]}")
                break
            except Exception:
                time.sleep(0.2)
    time.sleep(2)
    return proc


@pytest.fixture
def served():
    """Serving processes; on exit stopped, and what they registered (deployments, automations) removed from the
    server, environments that are no stack of the tests' own (`others`) included."""
    from tests.e2e import server

    procs, names = [], set()

    def serve(name: str, *args, **kwargs):
        names.update((name, *kwargs.get("others", ())))
        procs.append(start_serving(name, *args, **kwargs))

    yield serve
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    server.remove(*names, kinds=server.SERVED)  # the stacks' blocks stay: the module's stack is shared


def test_cli_and_deployment_runs_at_once_exactly_one_proceeds_ten_trials(v1, served, tmp_path):
    from prefect.deployments import run_deployment

    dep = v1
    marker = tmp_path / "marker"
    served(dep.name, HOLD, marker)
    # A deployment run stopped by `stop_winner` ends Crashed, and the environment's crash automation then starts a
    # recovery (it finds nothing to do) 10-20 s later: in a later trial, holding the lock for its second, it refused
    # both of that trial's runs (seen in a CI). Recovery after a crash is another test's subject: paused here.
    with get_client(sync_client=True) as client:
        for _ in range(150):  # made by the serving process right after the deployments the fixture waited for
            if automations := client.read_automations_by_name(automation_name(dep.name)):
                break
            time.sleep(0.2)
        assert automations, "serving the environment made its crash automation"
        for automation in automations:
            client.pause_automation(automation.id)
    outcomes = []
    for _ in range(10):
        before = snapshot(dep)
        folders = run_folders(dep)
        run = run_deployment(f"upgrade/upgrade-{dep.name}", parameters={"target": "v2.0.0"}, timeout=0)
        proc = cli("upgrade", "-e", dep.name, "-t", "v2.0.0", fault=HOLD, marker=marker)
        with reaped(proc):
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                state = flow_run_state(run.id)
                if proc.poll() is not None or (state.is_final() and state.is_failed()):
                    break
                time.sleep(0.2)
            if proc.poll() is not None:  # the CLI was refused: the deployment run holds the lock
                err = proc.communicate()[1]
                assert proc.returncode == 1 and "StackLocked" in err and str(run.id) in err, err[-2000:]
                wait_for_marker(marker, HOLD, None)
                outcomes.append("deployment won")
            else:
                state = flow_run_state(run.id)
                assert state.is_failed() and "StackLocked" in state.message, state.message
                wait_for_marker(marker, HOLD, proc)
                outcomes.append("cli won")
            assert unchanged(snapshot(dep)) == unchanged(before), "the refused run changed nothing"
            assert len(run_folders(dep)) == len(folders) + 1, "only the winner made a run folder"
            stop_winner(dep)
            if proc.poll() is None:
                proc.communicate(timeout=120)
            # the stopped holder lets go of the lock when its flow ends, after its journal says it stopped: the next
            # trial starting before that saw both of its runs refused by this one (seen in a CI under load)
            final(run.id, 180)
        marker.unlink(missing_ok=True)
    print("CLI vs deployment:", outcomes)


def test_a_crashed_run_is_recovered_by_the_automation_for_the_environment_it_named(make_deployment, served,
                                                                                    tmp_path):
    """A run of the host's internal upgrade deployment, `promotion-<host>` (the one a promotion starts; its runs name
    their environment), given `environment=<this one>`, is killed mid-migration: `<other>`'s automation, watching
    that deployment, recovers the environment the run named, not its own."""
    from prefect.deployments import run_deployment

    # the forecast's probe (CPU-heavy, ~5-15 s a run) is the migration tests' subject, not this one's
    dep = make_deployment(rows=20_000, migration_probe=False)
    other = f"e2e-other-{uuid.uuid4().hex[:8]}"  # deployments and their automation only: no stack, no block
    before = stack.checksums(dep)
    v1_commit = subprocess.run(["git", "-C", str(dep.compose_dir), "rev-parse", "HEAD"], check=False,
                               capture_output=True, text=True).stdout.strip()
    marker = tmp_path / "marker"
    served(other, "cutover:migrate:hold-after", marker)  # only <other>'s automation watches promotion-local-<other>
    run = run_deployment(f"upgrade/promotion-local-{other}", parameters={"target": "v2.0.0", "environment": dep.name},
                         timeout=0)
    wait_for_marker(marker, "cutover:migrate:hold-after", None, timeout=300)
    t0 = time.monotonic()
    os.kill(journal_of(dep).pid, signal.SIGKILL)  # the flow's own process dies mid-cutover
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and journal_of(dep).status == "running":
        time.sleep(0.5)
    seconds = time.monotonic() - t0
    assert journal_of(dep).status == "rolled-back", journal_of(dep).status
    assert assert_whole(dep, before, None, v1_commit, "") == "1.0.0"
    assert "recovery:" in journal_of(dep).outcome
    assert flow_run_state(run.id).is_crashed(), "the killed run keeps the state its runner gave it"
    with get_client(sync_client=True) as client:
        recover_id = client.read_deployment_by_name(f"recover/recover-{other}").id
        recovery_runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[recover_id])))
    # one crash, usually one run; a busy server can emit the Crashed event twice (a retried state proposal), and the
    # second recovery then waits for the first and finds nothing left to do: each must end Completed
    assert recovery_runs, "the automation started a recovery"
    for recovery_run in recovery_runs:
        assert recovery_run.parameters == {"environment": dep.name}, "the automation passed the run's environment"
        assert final(recovery_run.id, 100).state.is_completed(), "the automation's recover run did the work"
    print(f"automation recovery: {seconds:.1f} s from SIGKILL to the journal closed")


def test_a_run_whose_worker_died_is_marked_crashed_by_its_silence_and_recovered(make_deployment, served, tmp_path):
    """The worker itself (the serving process) and the run's process are killed at once mid-migration: nobody reports
    the run, which stays Running until its missing heartbeats mark it Crashed (zombie detection, 30 s heartbeats
    here, so 90 s of silence); the crash automation then starts the recovery, which a worker back on the host runs."""
    from prefect.deployments import run_deployment

    dep = make_deployment(rows=5_000, migration_probe=False)
    before = stack.checksums(dep)
    v1_commit = subprocess.run(["git", "-C", str(dep.compose_dir), "rev-parse", "HEAD"], check=False,
                               capture_output=True, text=True).stdout.strip()
    marker, heartbeat = tmp_path / "marker", {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    worker = start_serving(dep.name, "cutover:migrate:hold-after", marker, env=heartbeat)
    run = run_deployment(f"upgrade/upgrade-{dep.name}", parameters={"target": "v2.0.0"}, timeout=0)
    wait_for_marker(marker, "cutover:migrate:hold-after", None, timeout=300)
    runner = journal_of(dep).pid
    os.killpg(worker.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(runner, signal.SIGKILL)  # in case the runner put the run's process in a group of its own
    worker.wait(timeout=30)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300 and not flow_run_state(run.id).is_final():
        time.sleep(0.5)
    silent = time.monotonic() - t0
    state = flow_run_state(run.id)
    assert state.is_crashed() and "No heartbeat" in state.message, (state.name, state.message)
    assert journal_of(dep).status == "running", "nothing recovered it yet: its worker is gone"
    served(dep.name, env=heartbeat)  # the worker back: it takes the recover run the crash automation made
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and journal_of(dep).status == "running":
        time.sleep(0.5)
    assert journal_of(dep).status == "rolled-back", journal_of(dep).status
    assert assert_whole(dep, before, None, v1_commit, "") == "1.0.0"
    print(f"zombie detection: Crashed {silent:.0f} s after the worker died; recovered "
          f"{time.monotonic() - t0:.0f} s after it")


def test_a_finished_run_shows_its_steps_as_task_runs_in_order_with_their_log_lines(make_deployment):
    # the forecast's probe (CPU-heavy, ~5-15 s a run) is the migration tests' subject, not this one's
    dep = make_deployment(rows=5_000, migration_probe=False)
    state = upgrade(environment=dep.name, target="v2.0.0", return_state=True)
    assert state.is_completed()
    flow_run_id = state.state_details.flow_run_id
    deadline = time.monotonic() + 30  # task-run events and logs reach the server asynchronously: read until all came
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                         sort=TaskRunSort.EXPECTED_START_TIME_ASC)
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        arrived = "\n".join(entry.message for entry in logs)
        came = {"verify-health", "backup"} <= {r.name for r in runs} and all(r.state and r.state.is_final()
                                                                             for r in runs)
        if time.monotonic() > deadline or (came and "migrate: Migrate once" in arrived and
                                           "stop-writers: Stop the" in arrived):
            break
        time.sleep(0.5)
    names = [r.name for r in sorted(runs, key=lambda r: r.start_time or r.expected_start_time)]
    ups = [n for n in names if n.startswith("compose-up ")]
    assert len(ups) == 2 and ups[1] == "compose-up every service" and ups[0] != ups[1], \
        "the database first, then every service, each task run named by what it starts"
    promised = ["backup", "env-sync", "pull", ups[0], "migrate", ups[1], "verify-health"]
    it = iter(names)
    assert all(any(n == p for n in it) for p in promised), names
    text = "\n".join(entry.message for entry in logs)
    assert "migrate: Migrate once" in text and "stop-writers: Stop the writers" in text, "step lines in the run's logs"
    assert dep.db_password not in text


@REFUSALS
def test_preflight_refuses_a_role_without_createdb_before_anything_changes(v1):
    dep = v1
    with dep.connect() as conn:
        conn.autocommit = True
        conn.execute("DROP ROLE IF EXISTS weak")
        conn.execute("CREATE ROLE weak LOGIN PASSWORD 'weak-pw'")
    name = f"{dep.name}-weak"
    StackEnvironment(**(dep.block_fields() | {"db_user": "weak", "db_password": "weak-pw"})).save(name, overwrite=True)
    before = snapshot(dep)
    with pytest.raises(MissingPrivilege, match="ALTER ROLE weak CREATEDB"):
        upgrade(environment=name, target="v2.0.0")
    assert snapshot(dep) == before


@REFUSALS
def test_preflight_refuses_too_little_disk_for_the_backup(v1, tmp_path):
    dep = v1
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)], check=True)
    try:
        name = f"{dep.name}-tiny"
        StackEnvironment(**(dep.block_fields() | {"backup_dir": tiny})).save(name, overwrite=True)
        before = snapshot(dep)
        with pytest.raises(InsufficientDisk, match="need up to"):
            upgrade(environment=name, target="v2.0.0")
        assert snapshot(dep) == before
        assert [p.name for p in (tiny / dep.name).iterdir()] == [LOCK_FILE], "only the lock file"
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


@REFUSALS
def test_preflight_refuses_an_unreachable_docker_host(v1):
    dep = v1
    name = f"{dep.name}-nodocker"
    StackEnvironment(**(dep.block_fields() | {"docker_host": f"unix:///run/no-such-{uuid.uuid4().hex[:6]}.sock"})
                     ).save(name, overwrite=True)
    before = snapshot(dep)
    with pytest.raises(DockerHostUnreachable, match="docker_host"):
        upgrade(environment=name, target="v2.0.0")
    assert snapshot(dep) == before
