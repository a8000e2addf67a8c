"""The fault matrix: real upgrades v1 → v2 through `./stackshift upgrade` (a process of its own), each hit by one fault:
an injected failure at every cutover step and at two rollback steps, SIGKILL of the runner during five steps (then
`./stackshift recover`), a SIGTERM (what a cancel from Prefect sends) during the migration, and the Prefect server
stopped during the cutover. After each the stack is fully v1 or fully v2, healthy, every seeded row identical, a
write made after the online dump still there, no leftover database or container, and the run's state says what
happened.

The faults are injected with `STACKSHIFT_INJECT_FAULT` (core/cutover/faults.py: a step hook that the CLI and the flows
install only when it is set): a real step raises, or the real runner stalls right after a step's effect, before the
journal records it done, which is where it is killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from core.cutover.journal import Journal
from core.cutover.lock import lock_path, read_holder
from lab import stack
from lab.demo.releases import HEADS
from lab.paths import LAB_HOME
from tests.e2e.conftest import save_block
from tests.e2e.helpers import OwnPrefectServer, databases, head, revision, services

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
REPORT = LAB_HOME / "logs" / "fault-matrix.tsv"
DUMPED = "backup:manifest:hold-after"  # the online dump is done: the test writes through the app here


def cli(*args: str, fault: str = "", marker: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    env = os.environ | {"STACKSHIFT_INJECT_FAULT": fault, "STACKSHIFT_INJECT_FAULT_MARKER": str(marker or "")} | \
        (env or {})
    return subprocess.Popen([str(ROOT / "stackshift"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_marker(marker: Path, spec: str, proc: subprocess.Popen | None, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if marker.exists() and marker.read_text() == spec:
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the runner ended (exit {proc.returncode}) before reaching {spec}: {err[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"the runner never reached {spec}")


def write_through_the_app(dep) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{dep.api_port}/items", data=json.dumps({"name": "late"}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["id"]


def journal_of(dep) -> Journal:
    (path,) = sorted((dep.backup_dir / dep.name).glob("*/journal.json"))[-1:]
    return Journal.load(path)


def flow_run_state(flow_run_id: str):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def leftover_containers(dep) -> list[str]:
    return subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.stackshift.stack={dep.name}"],
                          capture_output=True, text=True, check=True).stdout.split()


def assert_whole(dep, before: dict, late_id: int | None, v1_commit: str, v2_commit: str) -> str:
    """The stack is fully on one version, healthy, with every row; returns which version."""
    svc = services(dep)
    version = (dep.api_health() or {}).get("version")
    assert all(s.ok for s in svc.values()), {k: (v.state, v.health) for k, v in svc.items()}
    if version == "1.0.0":
        assert set(svc) == {"api", "worker", "db"} and head(dep) == v1_commit and revision(dep) == [HEADS["1.0.0"]]
        assert "DB_HOST=db\n" in (dep.compose_dir / ".env").read_text()
    else:
        assert version == "2.0.0", f"api reports {version!r}"
        assert set(svc) == {"api", "worker", "db_postgres"} and head(dep) == v2_commit
        assert revision(dep) == [HEADS["2.0.0"]]
        assert "DB_HOST=db_postgres\n" in (dep.compose_dir / ".env").read_text()
    assert stack.checksums(dep) == before, "every row identical, the late one included"
    if late_id is not None:
        with dep.connect() as conn:
            assert conn.execute("SELECT name FROM accounts WHERE id = %s", (late_id,)).fetchone() == ("late",), \
                "a write made after the online dump survives"
    assert databases(dep) == {"postgres", "app"}, "no rollback point or failed state left behind"
    assert leftover_containers(dep) == [], "no one-off container left behind"
    assert not list((dep.backup_dir / dep.name).glob(".scratch-*")), "no scratch folder left behind"
    assert Journal.open_runs(dep.backup_dir / dep.name) == [], "every journal closed"
    return version


def record(fault: str, end: str, seconds: float | None, state: str) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as f:
        f.write(f"{fault}\t{end}\t{'' if seconds is None else f'{seconds:.1f}'}\t{state}\n")


def start_upgrade(dep, tmp_path: Path, fault: str, env: dict | None = None):
    """Starts the upgrade with `fault`, makes a write through the app once the online dump is done, lets it go on."""
    marker = tmp_path / "marker"
    proc = cli("upgrade", "--environment", dep.name, "--target", "v2.0.0", fault=f"{DUMPED},{fault}", marker=marker,
               env=env)
    wait_for_marker(marker, DUMPED, proc)
    late_id = write_through_the_app(dep)
    rows = stack.checksums(dep)  # the seeded rows and the late one: what every end state must hold
    marker.unlink()
    return proc, marker, late_id, rows


def recover(dep, env: dict | None = None) -> tuple[str, float]:
    t0 = time.monotonic()
    done = subprocess.run([str(ROOT / "stackshift"), "recover", "--environment", dep.name], capture_output=True,
                          check=False, text=True, timeout=600, env=os.environ | (env or {}))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, time.monotonic() - t0


@pytest.fixture
def v1(make_deployment):
    # the faults hit the cutover; the forecast's probe (CPU-heavy, ~5-15 s a run) is the migration tests' subject
    dep = make_deployment(rows=20_000, migration_probe=False)
    v1_commit = head(dep)
    v2_commit = subprocess.run(["git", "-C", str(dep.compose_dir), "rev-parse", "v2.0.0^{commit}"],
                               capture_output=True, text=True, check=True).stdout.strip()
    return dep, stack.checksums(dep), v1_commit, v2_commit


CUTOVER_FAULTS = [("cutover", s) for s in ("stop-writers", "rollback-point", "checkout-target", "install-env",
                                            "stop-retired", "start-db", "migrate", "start-target")] + \
    [("verify", "remove-retired"), ("verify", "verify")]


@pytest.mark.parametrize("phase, step", CUTOVER_FAULTS, ids=[s for _, s in CUTOVER_FAULTS])
def test_a_failure_at_each_cutover_step_rolls_back_to_v1(v1, tmp_path, phase, step):
    dep, before, v1_commit, v2_commit = v1
    proc, _, late_id, before = start_upgrade(dep, tmp_path, f"{phase}:{step}:fail-before")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-3000:]
    assert f"{step}: unexpected RuntimeError: injected fault" in err
    assert assert_whole(dep, before, late_id, v1_commit, v2_commit) == "1.0.0"
    j = journal_of(dep)
    assert j.status == "rolled-back" and j.ever_done("cleanup", "rollback")
    state = flow_run_state(j.flow_run_id)
    assert state.is_failed() and "injected fault" in state.message
    record(f"failure at {step}", "v1 (rolled back)", None, f"{state.name}: {state.message[:80]}")


@pytest.mark.parametrize("cutover_step, rollback_step", [("migrate", "restore-db"), ("start-target", "start-previous")])
def test_a_failure_during_the_rollback_is_finished_by_recover(v1, tmp_path, cutover_step, rollback_step):
    dep, before, v1_commit, v2_commit = v1
    proc, _, late_id, before = start_upgrade(dep, tmp_path, f"cutover:{cutover_step}:fail-before,"
                                                    f"rollback:{rollback_step}:fail-before")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1 and "RollbackFailed" in err and "stackshift recover --environment" in err
    assert journal_of(dep).status == "rollback-failed"
    said, seconds = recover(dep)
    assert "rollback" in said and "rolled back" in said
    assert assert_whole(dep, before, late_id, v1_commit, v2_commit) == "1.0.0"
    state = flow_run_state(journal_of(dep).flow_run_id)
    assert state.is_failed() and "Rollback failed" in state.message
    record(f"failure at {cutover_step}, then at rollback {rollback_step}", "v1 (after recover)", seconds,
           f"{state.name}: RollbackFailed, then recover")


KILLS = [("stop-writers", "1.0.0"), ("rollback-point", "1.0.0"), ("start-db", "1.0.0"),
         ("start-target", "2.0.0")]  # during `migrate`: test_sigkill_of_recover_at_every_rollback_step


@pytest.mark.parametrize("step, ends_on", KILLS, ids=[s for s, _ in KILLS])
def test_sigkill_of_the_runner_then_recover(v1, tmp_path, step, ends_on):
    dep, before, v1_commit, v2_commit = v1
    spec = f"cutover:{step}:hold-after"
    proc, marker, late_id, before = start_upgrade(dep, tmp_path, spec)
    wait_for_marker(marker, spec, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert journal_of(dep).status == "running", "the dead runner left its journal open"
    said, seconds = recover(dep)
    assert ("finished the upgrade" if ends_on == "2.0.0" else "rolled back") in said
    assert assert_whole(dep, before, late_id, v1_commit, v2_commit) == ends_on
    state = flow_run_state(journal_of(dep).flow_run_id)
    assert state.is_crashed() and "recovered by recover run" in state.message
    record(f"SIGKILL during {step}", f"v{ends_on[0]} ({'finished' if ends_on == '2.0.0' else 'rolled back'} by "
                                     f"recover)", seconds, f"{state.name}: {state.message[:80]}")


def rollback_steps(dep) -> list[str]:
    """The open run's rollback steps in order, as its plan has them."""
    from core.cutover.facts import Facts
    from core.cutover.plan import build_plan
    from flows.upgrade import load_environment

    j = journal_of(dep)
    facts = Facts.load(j.path.parent / "plan.json", load_environment(dep.name))
    return [s.id for s in build_plan(facts, j.run).rollback]


def kill_recover_at_every_rollback_step(dep, tmp_path: Path) -> tuple[list[str], list[str]]:
    """SIGKILL of `recover` right after each rollback step's change, before the journal records it done, one step
    further each time: every `recover` re-walks the steps before the one it is killed at, over what the killed ones
    left (a restored database, a promoted cluster, the previous version serving). Returns the steps and the killed
    runs' flow runs (the lock file names each)."""
    steps, killed = rollback_steps(dep), []
    for step in steps:
        spec = f"rollback:{step}:hold-after"
        marker = tmp_path / f"recover-{step}"
        proc = cli("recover", "--environment", dep.name, fault=spec, marker=marker)
        wait_for_marker(marker, spec, proc, timeout=300)
        killed.append(read_holder(lock_path(dep.backup_dir, dep.name))["flow_run"])
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert journal_of(dep).status == "running", f"the journal stays open after recover was killed at {step}"
    return steps, killed


def sigkill_during_migrate_then_at_every_rollback_step(dep, tmp_path: Path, v1_commit: str, v2_commit: str) -> list:
    """The runner killed during the migration, then `recover` killed at each rollback step in turn, then `recover`
    once more: the stack ends whole on v1. Returns the rollback steps."""
    spec = "cutover:migrate:hold-after"
    proc, marker, late_id, before = start_upgrade(dep, tmp_path, spec)
    wait_for_marker(marker, spec, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    t0 = time.monotonic()
    steps, killed = kill_recover_at_every_rollback_step(dep, tmp_path)
    said, seconds = recover(dep)
    assert "rolled back" in said, said
    assert assert_whole(dep, before, late_id, v1_commit, v2_commit) == "1.0.0"
    j = journal_of(dep)
    assert j.status == "rolled-back" and all(j.ever_done(step, "rollback") for step in steps)
    state = flow_run_state(j.flow_run_id)
    assert state.is_crashed() and "recovered by recover run" in state.message
    for run in killed:  # each found by the next run that took the lock
        assert flow_run_state(run).is_crashed() and "died holding the lock" in flow_run_state(run).message
    record(f"SIGKILL during migrate, then of recover at each of {len(steps)} rollback steps ({j.rollback_points})",
           "v1 (rolled back by the last recover)", time.monotonic() - t0, f"{state.name}: {state.message[:80]}")
    return steps


def test_sigkill_of_recover_at_every_rollback_step(v1, tmp_path):
    """FILE_COPY (the PITR twin: test_rollback_point.py)."""
    dep, _, v1_commit, v2_commit = v1
    steps = sigkill_during_migrate_then_at_every_rollback_step(dep, tmp_path, v1_commit, v2_commit)
    assert steps.index("start-previous-db") < steps.index("restore-db") < steps.index("start-previous")


def test_sigterm_during_the_migration_rolls_back_before_exiting(v1, tmp_path):
    dep, before, v1_commit, v2_commit = v1
    spec = "cutover:migrate:hold-after"
    proc, marker, late_id, before = start_upgrade(dep, tmp_path, spec)
    wait_for_marker(marker, spec, proc)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=600)
    seconds = time.monotonic() - t0
    assert proc.returncode != 0
    assert assert_whole(dep, before, late_id, v1_commit, v2_commit) == "1.0.0"
    j = journal_of(dep)
    assert j.status == "rolled-back" and "TerminationSignal" in j.outcome
    state = flow_run_state(j.flow_run_id)
    assert state.is_failed() and "UpgradeInterrupted" in state.message and "rolled back" in state.message
    record("SIGTERM (a cancel) during migrate", "v1 (rolled back by the runner)", seconds,
           f"{state.name}: {state.message[:80]}")


@pytest.fixture
def own_prefect(tmp_path_factory):
    """A Prefect server of the test's own, started before the deployment is made (both take seconds)."""
    server = OwnPrefectServer(tmp_path_factory.mktemp("prefect"))
    server.start()
    yield server
    server.stop()


def test_prefect_server_stopped_during_the_cutover(own_prefect, v1, tmp_path):
    """The run's Prefect server is its own (stopping the lab's would fail every test running beside this one)."""
    dep, before, v1_commit, v2_commit = v1
    server = own_prefect
    server.wait_up()
    with server.as_api():
        save_block(dep)
    spec = "cutover:stop-writers:hold-after"
    # The Prefect client retries a dead server for ~70 s per call by default (5 retries, each connect itself tried 3
    # times); one retry (~5 s a call) keeps the runner's calls after the stop short, and still rides out one 503.
    env = {"PREFECT_API_URL": server.url, "PREFECT_CLIENT_MAX_RETRIES": "1"}
    proc, marker, late_id, before = start_upgrade(dep, tmp_path, spec, env=env)
    wait_for_marker(marker, spec, proc)
    server.stop()
    assert not server.up()
    marker.unlink()
    try:
        proc.communicate(timeout=600)
    finally:
        server.start()
        server.wait_up()
    j = journal_of(dep)
    assert j.status in ("completed", "rolled-back"), j.status
    said, seconds = recover(dep, env)  # gives the run the final state its journal records
    version = assert_whole(dep, before, late_id, v1_commit, v2_commit)
    with server.as_api():
        state = flow_run_state(j.flow_run_id)
    assert state.is_final() and (state.is_completed() == (j.status == "completed"))
    record("Prefect server stopped during the cutover", f"v{version[0]} ({j.status}, without the server)", None,
           f"{state.name}: {(state.message or '')[:80]}")
