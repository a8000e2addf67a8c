"""A run folder written before the restructuring (stackshift a3b4336: a flat plan.json, that journal format) still
loads and is recovered: the facts come back in parts with the settings the run recorded, the plan rebuilt from them
has the same steps, and the recovery's decision reads the old journal as it did."""
from __future__ import annotations

import json

from core.cutover import recovery
from core.cutover import steps as st
from core.cutover.facts import Facts
from core.cutover.journal import Journal
from core.cutover.plan import build_plan
from tests.unit._settings import settings

# plan.json's "facts" exactly as a3b4336 wrote them (Facts.to_dict of that release), a PITR run killed mid-migration
OLD_FACTS = {
    "environment": "prod", "project": "dify", "compose_dir": "/srv/dify", "compose_files": ["docker-compose.yaml"],
    "env_file": ".env", "env_template": ".env.example", "current_commit": "a" * 40, "target_ref": "v2.0.0",
    "target_commit": "b" * 40, "current_services": ["api", "db", "worker"],
    "running_services": ["api", "db", "worker"], "target_services": ["api", "db_postgres", "worker"],
    "current_images": {"api": {"image": "r/app:1", "id": "sha256:1", "repo_digest": "r/app@sha256:1",
                               "repo_digests": ["r/app@sha256:1"]}},
    "target_images": {"api": "r/app:2", "worker": "r/app:2", "db_postgres": "r/pg:15"},
    "db_name": "dify", "databases": ["dify", "dify_plugin"], "db_host": "10.0.0.5", "db_port": 5433,
    "db_user": "stackshift", "db_revision": ["r1"], "target_heads": ["r2"], "pending_revisions": ["r2"],
    "noop_downgrades": [], "render_sql_command": ["flask", "db", "upgrade", "r1:r2", "--sql"],
    "db_services": ["db", "db_postgres"], "writer_services": ["api", "worker"], "migrate_service": "api",
    "migrate_command": ["flask", "upgrade-db"], "migration_switch": "MIGRATION_ENABLED", "health_timeout": 90,
    "run_dir": "/var/backups/stackshift/dify/20261201T100000Z-run9", "volume_excludes": ["./db/data"],
    "env_report": [{"key": "DB_HOST", "category": "default_moved", "before": "db", "after": "db_postgres",
                    "new_default": "db_postgres", "secret": False, "note": ""}],
    "env_counts": {"default_moved": 1, "unchanged": 40}, "warnings": [], "run_id": "run9",
    "migration_timeout": 7200, "keep_failed_database": True, "rollback_method": "pitr",
    "data_dir": {"service": "db", "host": "/srv/dify/volumes/db/data/pgdata",
                 "container": "/var/lib/postgresql/data/pgdata"},
    "snapshot_command": [], "snapshot_restore_command": [], "rollback_forecast": {"method": "pitr"}, "dump_jobs": 2,
    "stop_timeouts": {"worker": 30}, "version_command": [], "rehearsal_command": [],
}
OLD_JOURNAL = {
    "run": "run9", "environment": "prod", "project": "dify",
    "target": {"ref": "v2.0.0", "commit": "b" * 40, "heads": ["r2"], "images": {}},
    "previous": {"commit": "a" * 40, "images": {}, "revision": ["r1"]}, "rollback_points": {"restore_point": "x"},
    "flow_run_id": None, "host": "prod", "pid": 4242, "phase": "cutover", "status": "running", "outcome": "",
    "steps": [{"id": "stop-writers", "phase": "cutover", "state": "done", "started": 1.0, "ended": 2.0,
               "detail": "", "kind": "StopContainers"},
              {"id": "rollback-point", "phase": "cutover", "state": "done", "started": 2.0, "ended": 2.1,
               "detail": "", "kind": "TakeRestorePoint"},
              {"id": "migrate", "phase": "cutover", "state": "started", "started": 3.0, "ended": None,
               "detail": "", "kind": "Migrate"}],
}


def test_an_old_plan_json_loads_with_the_settings_the_run_recorded(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(OLD_FACTS))
    f = Facts.load(tmp_path / "plan.json", settings(db_password="pw-now"))
    s = f.settings
    assert (s.stack.project_name, s.database.name, s.database.host, s.database.port, s.database.user) == (
        "dify", "dify", "10.0.0.5", 5433, "stackshift"), "what the run recorded, not today's block"
    assert (s.migration.command, s.migration.timeout_seconds, s.health.timeout_seconds) == (
        ("flask", "upgrade-db"), 7200, 90)
    assert s.rollback_point.keep_failed_database and s.writers.stop_timeouts == {"worker": 30}
    assert s.database.password.get_secret_value() == "pw-now", "the secret, never recorded, is the block's"
    assert (f.run.id, f.run.environment, f.run.dump_jobs, f.rollback.method) == ("run9", "prod", 2, "pitr")
    assert f.database.names == ["dify", "dify_plugin"] and f.env_sync.rows[0]["key"] == "DB_HOST"


def test_an_old_run_killed_mid_migration_is_rolled_back_through_the_same_plan(tmp_path):
    run_dir = tmp_path / "run9"
    run_dir.mkdir()
    (run_dir / "plan.json").write_text(json.dumps(OLD_FACTS | {"run_dir": str(run_dir)}))
    (run_dir / "journal.json").write_text(json.dumps(OLD_JOURNAL))
    f = Facts.load(run_dir / "plan.json", settings())
    journal = Journal.load(run_dir / "journal.json")
    decision = recovery.decide(journal, ["r1"], f.target.heads)
    assert decision.action == recovery.ROLLBACK
    plan = build_plan(f, f.run.id)
    ids = [s.id for s in plan.rollback]
    assert ids[:2] == ["stop-one-offs", "stop-target"] and "restore-db" in ids and ids[-1] == "cleanup"
    restore = next(s for s in plan.rollback if s.id == "restore-db")
    assert isinstance(restore, st.RestoreBaseBackup) and restore.host == OLD_FACTS["data_dir"]["host"]
    again = json.loads(json.dumps(f.to_dict()))
    assert Facts.from_dict(again, settings()) == f, "saved again in the new form, it loads the same"
