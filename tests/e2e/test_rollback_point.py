"""The PITR rollback point on real PostgreSQL, and the restore drill on real backups.

- A rollback through the PITR point (online base backup + replication slot + named restore point) brings back every
  seeded row and a row written through the app *after* the online backup, and leaves no slot, base backup or
  failed state behind.
- A successful PITR upgrade drops its slot and base backup (a forgotten slot keeps WAL forever).
- `./stackshift verify-backup` restores the bundle into a scratch database and compares row counts; a damaged
  bundle fails it with exit 3, and no scratch database is left.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from core.cutover.journal import Journal
from lab import stack
from lab.demo.releases import HEADS
from tests.e2e.helpers import databases, head, revision, services
from tests.e2e.test_fault_matrix import (ROOT, cli, journal_of, sigkill_during_migrate_then_at_every_rollback_step,
                                         wait_for_marker, write_through_the_app)

pytestmark = pytest.mark.e2e
BACKED_UP = "backup:base-backup:hold-after"  # the online base backup is done: the test writes through the app here


def slots(dep) -> list[str]:
    with dep.connect("postgres") as conn:
        return [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots")]


def leftovers(dep) -> list[str]:
    data = dep.compose_dir / "volumes" / "db" / "data"
    return sorted(p.name for p in data.iterdir() if p.name.startswith("ss-"))


def the_run(dep) -> Path:
    (run,) = [p for p in (dep.backup_dir / dep.name).iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run


def test_pitr_rollback_restores_writes_made_after_the_online_backup(make_deployment, tmp_path):
    # the forecast's probe (CPU-heavy, ~5-15 s a run) is the migration tests' subject, not this one's
    dep = make_deployment(rows=50_000, rollback_point="pitr", migration_probe=False)
    marker = tmp_path / "marker"
    proc = cli("upgrade", "-e", dep.name, "-t", "v3.0.0-unhealthy", fault=BACKED_UP, marker=marker)
    wait_for_marker(marker, BACKED_UP, proc)
    late = write_through_the_app(dep)  # after the base backup: only the WAL kept by the slot has it
    before = stack.checksums(dep)  # the seeded rows and the late one
    marker.unlink()
    out, err = proc.communicate(timeout=600)

    assert proc.returncode != 0 and "HealthCheckFailed" in err, err[-2000:]
    journal = Journal.load(the_run(dep) / "journal.json")
    assert journal.status == "rolled-back", journal.outcome
    kinds = {r.id: (r.kind, r.detail) for r in journal.steps if r.phase in ("cutover", "rollback")}
    assert kinds["rollback-point"][0] == "TakeRestorePoint"
    assert kinds["restore-db"][0] == "RestoreBaseBackup" and "base backup" in kinds["restore-db"][1]
    assert "promoted" in kinds["await-recovery"][1]

    assert revision(dep) == [HEADS["1.0.0"]]
    assert stack.checksums(dep) == before
    with dep.connect() as conn:
        assert conn.execute("SELECT name FROM accounts WHERE id = %s", (late,)).fetchone() == ("late",)
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    assert write_through_the_app(dep) > late, "the restored cluster takes writes (it was promoted)"
    assert dep.api_health()["version"] == "1.0.0"
    assert all(s.ok for s in services(dep).values())
    assert slots(dep) == [] and leftovers(dep) == [], "no slot, base backup or failed state is left"
    assert databases(dep) == {"postgres", "app"}


def test_pitr_upgrade_drops_its_slot_and_the_restore_drill_checks_the_bundle(make_deployment):
    # the forecast's probe (CPU-heavy, ~5-15 s a run) is the migration tests' subject, not this one's
    dep = make_deployment(rows=50_000, rollback_point="pitr", migration_probe=False)
    proc = cli("upgrade", "-e", dep.name, "-t", "v2.0.0", "--json")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    result = json.loads(out)["result"]  # the flow's own result, in the CLI's one JSON object
    assert result["rollback_point"]["method"] == "pitr"
    assert revision(dep) == [HEADS["2.0.0"]]
    assert slots(dep) == [] and leftovers(dep) == [], "a forgotten slot would keep WAL forever"
    run = the_run(dep)
    assert (run / "app.dump" / "toc.dat").exists() and (run / "volumes.tar.zst").exists()
    counts = json.loads((run / "app.counts.json").read_text())
    assert counts["public.accounts"] > 0

    drill = subprocess.run([str(ROOT / "stackshift"), "verify-backup", "-e", dep.name], check=False,
                           capture_output=True, text=True, timeout=600)
    assert drill.returncode == 0, drill.stderr[-2000:]
    report = json.loads(drill.stdout)
    assert report["databases"]["app"]["mismatches"] == 0
    assert report["databases"]["app"]["rows"] == sum(counts.values())

    data_file = next(p for p in sorted((run / "app.dump").iterdir()) if p.name.endswith(".dat.gz"))
    data_file.write_bytes(data_file.read_bytes()[:-20])  # a truncated table file
    drill = subprocess.run([str(ROOT / "stackshift"), "verify-backup", "-e", dep.name], check=False,
                           capture_output=True, text=True, timeout=600)
    assert drill.returncode == 3, drill.stdout + drill.stderr
    assert "checksum mismatch" in drill.stderr and data_file.name in drill.stderr
    assert "does not restore" in drill.stderr or "rows in the dump's snapshot" in drill.stderr
    assert not [d for d in databases(dep) if "__ss_drill_" in d], "the scratch database is dropped"


def test_pitr_sigkill_during_the_migration_then_of_recover_at_every_rollback_step(make_deployment, tmp_path):
    """The runner dies mid-migration; `recover` (another process) is killed right after each rollback step in turn,
    the restored cluster's promotion included, and the next one goes on from what it finds: the base backup swapped
    in once, the WAL replayed once, a promoted cluster never set to replay again."""
    # the forecast's probe (CPU-heavy, ~5-15 s a run) is the migration tests' subject, not this one's
    dep = make_deployment(rows=20_000, rollback_point="pitr", migration_probe=False)
    v1_commit = head(dep)
    v2_commit = subprocess.run(["git", "-C", str(dep.compose_dir), "rev-parse", "v2.0.0^{commit}"],
                               capture_output=True, text=True, check=True).stdout.strip()
    steps = sigkill_during_migrate_then_at_every_rollback_step(dep, tmp_path, v1_commit, v2_commit)
    assert steps.index("restore-db") < steps.index("await-recovery") < steps.index("verify-previous")
    kinds = {r.id: r.kind for r in journal_of(dep).steps if r.phase == "rollback"}
    assert kinds["restore-db"] == "RestoreBaseBackup" and kinds["await-recovery"] == "AwaitRecovery"
    assert "promoted: nothing to do" in journal_of(dep).record("restore-db", "rollback").detail
    assert slots(dep) == [] and leftovers(dep) == []
    with dep.connect() as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)


def test_auto_measures_the_copy_rate_and_says_which_point_it_takes(make_deployment):
    from flows.upgrade import upgrade

    dep = make_deployment(rows=5_000, rollback_point="auto")
    result = upgrade(environment=dep.name, target="v2.0.0", dry_run=True)
    point = result["rollback_point"]
    assert point["copy_measured"] and point["copy_mb_s"] > 0 and point["database_bytes"] > 0
    assert point["method"] in ("file-copy", "pitr") and point["pitr_unavailable"] == ""
    assert not [d for d in databases(dep) if d.startswith("stackshift_probe_copy_")], "the probe databases are gone"
