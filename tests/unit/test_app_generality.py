"""What the block can express for apps shaped unlike Dify (issue 11): an app that migrates at start with no switch,
plain-text health and version checks, a version from a command, and per-service stop timeouts."""
import http.server
import threading
from pathlib import Path

import pytest

from blocks.stack_environment import StackEnvironment
from core.cutover import steps as st
from core.cutover.plan import build_plan
from core.cutover.verify import version_output_check
from core.io.http import http_probe
from tests.unit.test_plan import facts


def test_an_app_without_a_migration_switch_is_migrated_once_before_any_service_starts():
    plan = build_plan(facts(migration_switch=None), "run1")
    steps = st.flat(plan.cutover)
    migrate = next(i for i, s in enumerate(steps) if isinstance(s, st.Migrate))
    starts = [i for i, s in enumerate(steps) if isinstance(s, st.StartServices)]
    assert [steps[i].id for i in starts] == ["start-db", "start-target"]
    assert starts[-1] > migrate > starts[0], "the app's own start-migration must find the database at the head"
    assert not steps[migrate].ahead.env, "containers created during the migration carry no switch either"
    db_start = next(s for s in plan.cutover if s.id == "start-db")
    assert list(db_start.argv[-2:]) == ["--no-deps", "db_postgres"], "before the migration only the database starts"
    for step in st.flat(plan.cutover + plan.rollback):
        if isinstance(step, (st.StartServices, st.Migrate)):
            assert step.env == () and "MIGRATION_ENABLED" not in " ".join(step.argv)
    start = next(s for s in plan.cutover if s.id == "start-target")
    assert "the database already at the head" in start.title


def test_the_default_switch_is_unchanged():
    plan = build_plan(facts(), "run1")
    assert dict(next(s for s in plan.cutover if s.id == "start-target").env) == {"MIGRATION_ENABLED": "false"}


def test_stop_timeouts_per_service_reach_the_engine_stop():
    plan = build_plan(facts(stop_timeouts={"worker": 30}), "run1")
    stop = next(s for s in st.flat(plan.cutover) if s.id == "stop-writers")
    assert stop.timeouts == (("worker", 30),) and "worker killed after 30 s" in stop.render()
    assert next(s for s in st.flat(build_plan(facts(), "run1").cutover) if s.id == "stop-writers").timeouts == ()

    class Engine:  # records what the step asks the engine for
        def __init__(self):
            self.calls = []

        def stop_containers(self, project, services, timeouts=None):
            self.calls.append((project, services, timeouts))
            return "stopped"

    io = Engine()
    stop.apply(st.StepContext(facts=plan.facts, io=io, journal=None))
    assert io.calls == [(plan.facts.settings.stack.project_name, list(stop.services), {"worker": 30})]


def test_a_version_command_is_checked_in_both_verifications():
    plan = build_plan(facts(version_command=["app", "--version"]), "run1")
    verify = next(s for s in plan.verify if s.id == "verify")
    assert verify.version_argv[-4:] == ("--no-TTY", "api", "app", "--version") and "exec" in verify.version_argv
    previous = next(s for s in plan.rollback if s.id == "verify-previous")
    assert str(plan.facts.run.dir / "rollback-pins.yaml") in previous.version_argv
    assert next(s for s in build_plan(facts(), "run1").verify if s.id == "verify").version_argv == ()


@pytest.mark.parametrize("output, ok", [
    ("mlflow, version 3.17.2\n", True), ("3.17.2", True), ("mlflow, version 3.17.20\n", False),
    ("version 13.17.2", False), ("", False), ("mlflow, version 3.6.0", False),
])
def test_version_output_names_the_version_as_a_whole_word(output, ok):
    assert version_output_check("v", output, "3.17.2").ok is ok


@pytest.fixture(scope="module")
def server():
    """A real HTTP server answering plain text (like MLflow's /health and /version) and JSON."""
    bodies = {"/health": b"OK\n", "/version": b"3.17.2", "/json": b'{"version": "3.17.2"}', "/teapot": b"no"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = bodies.get(self.path, b"")
            self.send_response(418 if self.path == "/teapot" else 200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_plain_text_health_and_version_checks(server):
    assert http_probe("h", server + "/health", 200, None, "3.17.2", expect_body="OK")().ok
    bad = http_probe("h", server + "/version", 200, None, "3.17.2", expect_body="OK")()
    assert not bad.ok and "expected 'OK'" in bad.detail
    assert http_probe("v", server + "/version", 200, None, "3.17.2", version_in_body=True)().ok
    old = http_probe("v", server + "/version", 200, None, "3.6.0", version_in_body=True)()
    assert not old.ok and "'3.17.2', expected '3.6.0'" in old.detail
    assert http_probe("j", server + "/json", 200, "version", "3.17.2")().ok, "the JSON field check is unchanged"
    assert not http_probe("j", server + "/version", 200, "version", "3.17.2")().ok
    assert not http_probe("t", server + "/teapot", 200, None, None)().ok


def test_the_block_takes_an_mlflow_deployment():
    from lab.mlflow.stack import MlflowDeployment

    dep = MlflowDeployment("m", Path("/srv/mlflow"), Path("/b"), 5000, 5432, "pw")
    block = StackEnvironment(**dep.block_fields())
    assert block.migration.switch is None and block.writers.stop_timeouts == {"server": 15}
    assert block.health.http_checks[0].expect_body == "OK" and block.health.http_checks[1].expect_version_in_body
    assert "{database}" in block.migration.rehearsal.command[-1]
    assert "pw" not in " ".join(block.migration.command + block.migration.rehearsal.command), (
        "the password reaches libpq as PGPASSWORD")
    defaults = StackEnvironment(compose_dir="/x", project_name="x", db_name="a", db_user="u", db_password="p",
                                backup_dir="/b")
    assert defaults.migration.switch == "MIGRATION_ENABLED" and defaults.migration.rehearsal.command is None
    assert defaults.writers.stop_timeouts == {} and defaults.health.version_command is None


def test_the_rehearsal_env_is_a_secret_of_the_block():
    block = StackEnvironment(compose_dir="/x", project_name="x", db_name="a", db_user="u", db_password="p",
                             backup_dir="/b", rehearsal_env={"DB_URL": "postgresql://u:hunter2@db/{database}"})
    assert "migration.rehearsal.env.*" in StackEnvironment.model_json_schema()["secret_fields"], (
        "masked in the UI and API")
    assert "hunter2" not in repr(block) and "hunter2" not in str(block.migration.rehearsal.env)
    assert block.migration.rehearsal.env.get_secret_value() == {"DB_URL": "postgresql://u:hunter2@db/{database}"}
