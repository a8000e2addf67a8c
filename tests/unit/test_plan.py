import json
from dataclasses import asdict, is_dataclass
from pathlib import Path

from core.cutover import steps as st
from core.cutover.facts import Facts
from tests.unit._settings import settings
from core.cutover.plan import build_plan
from core.report import plan_commands, plan_markdown


def flat_facts(**over) -> dict:
    """Facts in the flat form plan.json had before the parts (and tests' keyword arguments still use)."""
    base = dict(
        environment="staging", project="dify", compose_dir=Path("/srv/dify"), compose_files=["docker-compose.yaml"],
        env_file=".env", env_template=".env.example", current_commit="a" * 40, target_ref="v2", target_commit="b" * 40,
        current_services=["api", "db", "worker"], running_services=["api", "db", "worker"],
        target_services=["api", "db_postgres", "worker"],
        current_images={"api": {"image": "r/app:1", "id": "sha256:1", "repo_digest": "r/app@sha256:1"}},
        target_images={"api": "r/app:2", "worker": "r/app:2", "db_postgres": "r/pg:15"},
        db_name="app", databases=["app", "plugin"], db_host="127.0.0.1", db_port=5432, db_user="app",
        db_revision=["r1"], target_heads=["r2"], pending_revisions=["r2"], noop_downgrades=[],
        render_sql_command=["alembic", "upgrade", "r1:r2", "--sql"], db_services=["db", "db_postgres"],
        writer_services=["api", "worker"], migrate_service="api", migrate_command=["alembic", "upgrade", "head"],
        migration_switch="MIGRATION_ENABLED", health_timeout=60, run_dir=Path("/b/dify/run1"),
        volume_excludes=["./db/data"],
    )
    return {k: str(v) if isinstance(v, Path) else asdict(v) if is_dataclass(v) else v for k, v in (base | over).items()}


def facts(**over) -> Facts:
    """Facts from the flat form (`flat_facts`); the settings it names override the unit tests'
    (tests.unit._settings)."""
    return Facts.from_dict(flat_facts(**over), settings())


def test_cutover_order_stops_writers_first_and_migrates_once_before_starting():
    plan = build_plan(facts(), "run1")
    ids = [s.id for s in plan.cutover]
    assert ids == ["stop-and-check-out", "rollback-point", "install-env", "stop-retired", "start-db", "migrate",
                   "start-target"]
    assert [s.id for s in st.flat(plan.cutover)][:3] == ["stop-writers", "checkout-target", "rollback-point"]
    assert [s.id for s in plan.verify] == ["remove-retired", "verify"]
    assert [type(s) for s in st.flat(plan.cutover)] == [st.StopContainers, st.Checkout, st.TakeRollbackPoint,
                                                        st.InstallEnv, st.StopContainers, st.StartDatabase, st.Migrate,
                                                        st.StartApp]
    stop = plan.cutover[0].steps[0]
    assert stop.services == ("api", "worker") and stop.project_name == "dify"
    assert plan.cutover[3].services == ("db",), "the renamed db must stop before db_postgres"
    assert plan.cutover[4].argv[-1] == "db_postgres"
    retired = plan.verify[0]
    assert retired.id == "remove-retired" and list(retired.argv[-4:]) == ["rm", "--stop", "--force", "db"], \
        "the stopped container of the renamed service goes after the downtime"
    for step in ("start-db", "start-target"):
        assert dict(next(s for s in plan.cutover if s.id == step).env) == {"MIGRATION_ENABLED": "false"}
    assert plan.cutover[1].databases == (("app", "app__ss_rb_run1"), ("plugin", "plugin__ss_rb_run1"))


def test_task_names_are_the_ones_the_product_promises():
    plan = build_plan(facts(), "run1")
    names = [s.task_name for s in plan.cutover + plan.verify]
    assert names == ["stop-and-check-out", "rollback-point", "install-env", "stop-retired", "compose-up db_postgres",
                     "migrate", "compose-up every service", "remove-retired", "verify-health"], \
        "the two compose-up task runs are named by what they start"
    assert all(s.task_name == "rollback-" + s.id for s in plan.rollback)


def test_backup_covers_every_database_and_leaves_out_the_live_data_dir():
    plan = build_plan(facts(), "run1")
    assert [s.id for s in plan.backup] == ["save-config", "dump-and-config", "pg-dump-plugin", "archive-and-check",
                                           "write-state", "manifest"]
    ids = [s.id for s in st.flat(plan.backup)]
    assert ids == ["save-config", "pg-dump-app", "resolved-config", "pg-dump-plugin", "archive-volumes",
                   "verify-dump-app", "verify-dump-plugin", "write-state", "manifest"], \
        "the dumps and the archive one after the other; the light records and checks beside them"
    tar = next(s for s in st.flat(plan.backup) if s.id == "archive-volumes")
    argv = list(tar.argv)
    assert argv[argv.index("--exclude"):argv.index("--exclude") + 2] == ["--exclude", "./db/data"]
    assert all(s.needs_db_password for s in st.flat(plan.backup) if s.id.startswith("pg-dump"))


def test_rollback_restores_files_digests_and_database_then_verifies_and_cleans_up():
    plan = build_plan(facts(), "run1")
    assert [s.id for s in plan.rollback] == ["stop-one-offs", "stop-target", "checkout-previous", "restore-env",
                                             "pin-images",
                                             "start-previous-db", "restore-db", "start-previous", "verify-previous",
                                             "cleanup"]
    start = next(s for s in plan.rollback if s.id == "start-previous")
    assert "/b/dify/run1/rollback-pins.yaml" in start.argv and "/b/dify/run1/compose/docker-compose.yaml" in start.argv
    verify = next(s for s in plan.rollback if s.id == "verify-previous")
    assert verify.heads == ("r1",)
    cleanup = plan.rollback[-1]
    assert cleanup.drop == ("app__ss_rb_run1", "plugin__ss_rb_run1")
    assert cleanup.failed == ("app__ss_failed_run1", "plugin__ss_failed_run1")


def test_the_plan_renders_the_sql_of_the_rollback_point_and_of_the_restore():
    plan = build_plan(facts(), "run1")
    logged, md = "\n".join(plan_commands(plan)), plan_markdown(plan)
    assert 'CREATE DATABASE "app__ss_rb_run1" TEMPLATE "app" STRATEGY FILE_COPY' in logged
    assert 'ALTER DATABASE "app__ss_rb_run1" RENAME TO "app"' in logged
    assert 'ALTER DATABASE "app" RENAME TO "app__ss_failed_run1"' in logged
    assert "`compose-up db_postgres`" in md and "`migrate`" in md and "`rollback-restore-db`" in md
    assert "CREATE DATABASE" not in md and "docker compose" not in md, "the artifact is in words; commands: logs"


def test_no_service_rename_means_no_removal_step():
    plan = build_plan(facts(target_services=["api", "db", "worker"]), "run1")
    assert "stop-retired" not in [s.id for s in plan.cutover] and "remove-retired" not in [s.id for s in plan.verify]


def test_plan_is_pure_and_carries_no_secret():
    a, b = build_plan(facts(), "run1"), build_plan(facts(), "run1")
    assert a.to_dict() == b.to_dict()
    assert all("PGPASSWORD" not in dict(getattr(s, "env", ())) for steps in a.lists().values() for s in steps), \
        "the password is added at the last call, never planned"
    logged = "\n".join(plan_commands(a))
    assert "pg_dump --host 127.0.0.1" in logged and "(env: PGPASSWORD)" in logged
    text = json.dumps(facts(run_id="run1").to_dict())
    assert "pw-unit" not in text and '"password": "**********"' in text, "plan.json holds the settings, never a secret"


def test_facts_survive_the_round_trip_through_plan_json(tmp_path):
    f = facts(run_id="run1")
    f.save(tmp_path / "plan.json")
    assert Facts.load(tmp_path / "plan.json", settings()) == f
    loaded = Facts.load(tmp_path / "plan.json", settings())
    assert build_plan(loaded, "run1").to_dict() == build_plan(f, "run1").to_dict()
