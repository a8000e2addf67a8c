"""The online preparation inside a real upgrade of the demo stack (v1 → v2 widens events.total_tokens int → bigint):
the runner is SIGKILLed mid-backfill, the old version still serving; `./stackshift recover` then undoes the
preparation: no shadow column, trigger, function, shadow index or helper constraint is left, the rows are as they
were, v1 still runs and the run is closed as abandoned. The same upgrade then runs to its end: swapped before the
writers stop, no helper object left, the column bigint NOT NULL, every seeded row identical; the migration report
gives the preparation apart from the downtime, and the backfill has its progress artifact."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from core.cutover.journal import Journal
from lab import stack
from lab.demo.releases import HEADS
from tests.e2e.helpers import artifacts, revision
from tests.e2e.test_online_live import HELPERS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def journal_of(dep) -> Journal | None:
    paths = sorted((dep.backup_dir / dep.name).glob("*/journal.json"))
    return Journal.load(paths[-1]) if paths else None


def helpers(dep) -> int:
    with dep.connect() as conn:
        row = conn.execute(HELPERS).fetchone()
    assert row is not None
    return int(row[0])


def backfilling(dep, proc: subprocess.Popen, timeout: float = 300) -> Journal:
    """Waits until the runner's journal says the backfill began and a few batches are in."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"the upgrade ended before its backfill: {proc.communicate()[1][-3000:]}"
        j = journal_of(dep)
        if j is not None and j.last is not None and j.last.id.endswith(": backfill") and j.last.state == "started":
            time.sleep(1.0)  # a few batches of 200 rows, 0.1 s apart
            return j
        time.sleep(0.2)
    raise AssertionError("the backfill did not begin in time")


def test_a_runner_killed_mid_backfill_is_undone_by_recover(make_deployment):
    dep = make_deployment(rows=20_000, migration_probe=False, online_preparation="auto", online_batch_rows=200,
                          online_pause_seconds=0.1)
    before = stack.checksums(dep)
    t0 = time.monotonic()
    proc = subprocess.Popen([str(ROOT / "stackshift"), "upgrade", "-e", dep.name, "-t", "v2.0.0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        journal = backfilling(dep, proc)
        assert journal.phase == "backup" and not journal.cutover_started, "the old version still serves"
        assert helpers(dep) >= 3, "shadow column, sync trigger and its function exist mid-backfill"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and whatever it started
        proc.communicate(timeout=60)
    done = subprocess.run([str(ROOT / "stackshift"), "recover", "--environment", dep.name], capture_output=True,
                          text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert helpers(dep) == 0, "recover dropped every helper object of the preparation"
    with dep.connect() as conn:
        assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                            "'events'::regclass AND attname = 'total_tokens'").fetchone() == ("integer",)
    closed = journal_of(dep)
    assert closed is not None and closed.status == "abandoned", closed
    settle = closed.record("settle-online")
    assert settle is not None and settle.state == "done" and "undone" in settle.detail, settle
    assert stack.checksums(dep) == before, "every row as it was"
    assert revision(dep) == [HEADS["1.0.0"]], "v1's schema, v1 still serving"
    print(f"online SIGKILL + recover: {time.monotonic() - t0:.1f} s")

    # the same upgrade again, to its end: prepared online, swapped, the app's ALTER a catalog-only change
    t1 = time.monotonic()
    done = subprocess.run([str(ROOT / "stackshift"), "upgrade", "-e", dep.name, "-t", "v2.0.0"], capture_output=True,
                          text=True, check=False, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    upgraded = journal_of(dep)
    assert upgraded is not None and upgraded.status == "completed", upgraded
    swap = upgraded.record("prepare-online events.total_tokens: swap")
    assert swap is not None and swap.state == "done" and swap.phase == "backup", "swapped before the writers stopped"
    assert helpers(dep) == 0, "no helper object left after the upgrade"
    with dep.connect() as conn:
        assert conn.execute("SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute WHERE attrelid = "
                            "'events'::regclass AND attname = 'total_tokens'").fetchone() == ("bigint", True)
    assert revision(dep) == [HEADS["2.0.0"]]
    assert stack.checksums(dep) == before, "every seeded row identical after the swap and the migration"
    migrate = upgraded.record("migrate")
    assert migrate is not None and migrate.ended is not None
    made = artifacts(f"{dep.name}-")
    assert "Prepared online, while the old version serves" in made[f"{dep.name}-migrations"], \
        "the report gives the preparation apart from the downtime"
    assert float(made[f"{dep.name}-backfill"]) > 50, "the backfill's progress artifact (rows backfilled / total)"
    print(f"online upgrade: {time.monotonic() - t1:.1f} s; migrate {migrate.ended - migrate.started:.2f} s")
