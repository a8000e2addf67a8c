"""Real upgrades of the demo stack through the Prefect flow: v1→v2, and v1→v3 (broken) rolled back."""
import json
import stat

import pytest

from core.backup import bundle as bk
from core.errors import HealthCheckFailed, MigrationFailed
from flows.upgrade import upgrade
from lab import stack
from lab.demo.releases import HEADS
from tests.e2e.helpers import artifacts, databases, head, revision, services, snapshot, tables

pytestmark = pytest.mark.e2e


def test_upgrade_v1_to_v2_keeps_every_row_and_renames_the_db_service(make_deployment):
    dep = make_deployment()
    before = stack.checksums(dep)
    env_before = (dep.compose_dir / ".env").read_text()

    result = upgrade(environment=dep.name, target="v2.0.0")

    assert stack.checksums(dep) == before
    assert revision(dep) == [HEADS["2.0.0"]]
    assert {"api_keys", "accounts", "events"} <= tables(dep)
    svc = services(dep)
    assert set(svc) == {"api", "worker", "db_postgres"}, "the old db container must not be left as an orphan"
    assert all(s.ok for s in svc.values())
    assert svc["api"].image.endswith("/demo/app:2.0.0") and svc["worker"].image.endswith("/demo/app:2.0.0")
    assert dep.api_health()["version"] == "2.0.0"
    with dep.connect() as conn:  # the int->bigint rewrite really happened
        assert conn.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'events' "
                            "AND column_name = 'total_tokens'").fetchone()[0] == "bigint"

    env = (dep.compose_dir / ".env").read_text()
    assert "DB_HOST=db_postgres\n" in env, "a stale default must move"
    assert f"DB_PASSWORD={dep.db_password}\n" in env and "SUPPORT_EMAIL=ops@example.com\n" in env
    assert "LEGACY_MODE" not in env and "WORKER_CONCURRENCY=2\n" in env
    assert stat.S_IMODE((dep.compose_dir / ".env").stat().st_mode) == 0o600
    assert [p.read_text() for p in (dep.compose_dir / "env-backup").iterdir()] == [env_before]

    run_dir = dep.backup_dir / dep.name
    (backup,) = [p for p in run_dir.iterdir() if not p.name.startswith(".")]
    assert str(backup) == result["backup"]
    assert bk.verify_manifest(backup) == []
    manifest = json.loads((backup / "manifest.json").read_text())
    assert {"app.dump/toc.dat", "app.counts.json", "volumes.tar.zst", "state.json", "compose/.env",
            "compose/docker-compose.yaml", "compose-config.json"} <= set(manifest["files"])
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in backup.rglob("*") if p.is_file())
    assert json.loads((backup / "state.json").read_text())["alembic_revision"] == [HEADS["1.0.0"]]
    assert databases(dep) == {"postgres", "app"}, "the rollback point is dropped after success"

    downtime = result["downtime"]
    assert downtime["total"] > 0 and {"stop-writers", "rollback-point", "migrate", "start-target"} <= set(downtime)
    arts = artifacts(f"{dep.name}-%")
    assert {f"{dep.name}-plan", f"{dep.name}-env-diff", f"{dep.name}-env-diff-table", f"{dep.name}-backup",
            f"{dep.name}-timeline", f"{dep.name}-verification"} <= set(arts)
    assert "Downtime" in arts[f"{dep.name}-timeline"]
    diff = arts[f"{dep.name}-env-diff"]  # the changes first, marked, with the reason in words (no category names)
    assert "| **~** | `DB_HOST` | db | db_postgres | you had the old default: set to the new one |" in diff, diff
    assert "default_moved" not in diff
    for text in arts.values():
        assert dep.db_password not in text


@pytest.mark.parametrize("target, error, needle", [
    ("v3.0.0", MigrationFailed, "ck_events_tokens_negative"),
    ("v3.0.0-unhealthy", HealthCheckFailed, "unhealthy"),
])
def test_failed_upgrade_rolls_back_to_v1_with_identical_data(make_deployment, target, error, needle):
    dep = make_deployment()
    before = snapshot(dep)
    v1_commit = head(dep)

    state = upgrade(environment=dep.name, target=target, return_state=True)

    assert state.is_failed()
    with pytest.raises(error) as raised:
        state.result()
    assert needle in str(raised.value)
    assert head(dep) == v1_commit
    assert (dep.compose_dir / ".env").read_bytes() == before["env"]
    assert revision(dep) == [HEADS["1.0.0"]]
    assert tables(dep) == before["tables"], "the half-applied schema must be gone"
    assert stack.checksums(dep) == before["data"]
    svc = services(dep)
    assert set(svc) == {"api", "worker", "db"} and all(s.ok for s in svc.values())
    assert dep.api_health()["version"] == "1.0.0"
    assert databases(dep) == {"postgres", "app"}, "no rollback point nor failed state is left behind"
    timeline = artifacts(f"{dep.name}-timeline")[f"{dep.name}-timeline"]
    assert "FAILED and rolled back" in timeline and "verify-previous" in timeline
