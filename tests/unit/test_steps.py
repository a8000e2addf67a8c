"""The step types with a stubbed I/O (`StubIO`, a stand-in for the Docker engine and PostgreSQL, named so): each
failure class, the journal before and after, the restore with and without a rollback point, RollbackFailed, and an
exception that is not stackshift's."""
import json
import re
import subprocess

import pytest

from core.io import commands as c
from core.io.pgsql import as_text
from core.cutover import recovery
from core.cutover import steps as st
from core.errors import (CheckoutFailed, CommandFailed, CommandTimedOut, HealthCheckFailed, MigrationFailed,
                         RestoreFailed, RollbackFailed, RollbackPointFailed, StopFailed)
from core.cutover.journal import Journal
from core.cutover.plan import build_plan
from core.io.http import CheckResult
from tests.unit._settings import settings
from tests.unit.test_plan import facts


class StubIO:
    """Stand-in for StackIO: records commands and SQL, fails where told."""

    def __init__(self, fail_on: str | None = None, exc: Exception | None = None, dbs=("postgres", "app", "plugin")):
        self.fail_on, self.exc = fail_on, exc
        self.commands, self.statements = [], []
        self.dbs = set(dbs)
        self.missing, self.gone = set(), False

    def run(self, cmd, *, db_password=False):
        self.commands.append(cmd.argv)
        if self.fail_on and self.fail_on in cmd.argv:
            raise self.exc or CommandFailed(cmd.argv, 1, "Traceback...\nsqlalchemy.exc.IntegrityError: check failed")
        out = '{"Service":"api","Name":"a","State":"running","Health":"healthy","Image":"r/app:2"}' \
            if "ps" in cmd.argv else ""
        return subprocess.CompletedProcess(cmd.argv, 0, out, "")

    def sql(self, statements):
        for s in map(as_text, statements):
            self.statements.append(s)
            if self.fail_on and self.fail_on in s:
                raise self.exc or RuntimeError("permission denied to create database")
            words = s.split()
            if s.startswith("CREATE DATABASE"):
                self.dbs.add(words[2].strip('"'))
            elif s.startswith("DROP DATABASE"):
                self.dbs.discard(words[-1].strip('"'))
            elif s.startswith("ALTER DATABASE"):
                self.dbs.discard(words[2].strip('"'))
                self.dbs.add(words[-1].strip('"'))

    def databases(self):
        return set(self.dbs)

    def wait_healthy(self, project, services, timeout, jobs=()):
        self.commands.append(["wait-healthy", project, *services])
        return "healthy"

    def query(self, statement, params=()):
        self.statements.append(as_text(statement))
        return []

    def dump_in_snapshot(self, dbname, cmd):
        self.run(cmd)
        return {"public.items": 3}

    def revisions(self, dbname):
        return ["r2"]

    def wait_for_database(self, every=0.3):
        self.commands.append(["wait-for-database"])
        return "reachable"

    def wait_answering(self, project, services, timeout, jobs=()):
        self.commands.append(["wait-answering"])
        return "answering"

    def http_checks(self, expected_version):
        return [CheckResult("api", True, "200")]

    def remove_stack_containers(self):
        return 0

    def stop_containers(self, project, services, timeouts=None):
        self.run(c.Command(["engine-stop", project, *services]))
        return "stopped"

    def service_containers(self, project, services):
        self.commands.append(["engine-list", project, *services])
        return {s: f"id-{s}" for s in services if s not in self.missing}

    def start_created(self, project, containers, meanwhile=None, serving_first=False):
        if self.gone:
            return None
        self.commands.append(["engine-start", *sorted(containers.values())])
        return "started; " + (meanwhile() if meanwhile else "")

    def drop_probe_schemas(self):
        return []


def ctx_for(tmp_path, io, **over):
    f = facts(run_dir=tmp_path / "run", run_id="run1", **over)
    f.run.dir.mkdir()
    j = Journal(path=f.run.dir / "journal.json", run="run1", environment="staging", project="dify",
                target={"ref": "v2"}, previous={}, rollback_points={})
    return build_plan(f, "run1"), st.StepContext(f, io, j)


def step(plan, step_id):
    return next(s for lst in plan.lists().values() for s in st.flat(lst) if s.id == step_id)


@pytest.mark.parametrize("step_id, needle, error", [
    ("stop-writers", "engine-stop", StopFailed),
    ("checkout-target", "checkout", CheckoutFailed),
    ("migrate", "run", MigrationFailed),
    ("start-target", "--remove-orphans", HealthCheckFailed),
])
def test_each_command_step_fails_with_its_own_class_and_journals_it(tmp_path, step_id, needle, error):
    plan, ctx = ctx_for(tmp_path, StubIO(fail_on=needle))
    with pytest.raises(error) as raised:
        st.execute(step(plan, step_id), ctx)
    assert raised.value.step_id == step_id
    assert "IntegrityError: check failed" in str(raised.value), "the line a person needs, not the traceback"
    assert raised.value.advice in str(raised.value)
    rec = Journal.load(ctx.journal.path).record(step_id)
    assert rec.state == "failed" and rec.ended is not None


def test_the_rollback_point_fails_with_its_class_and_a_non_stackshift_exception_is_named(tmp_path):
    plan, ctx = ctx_for(tmp_path, StubIO(fail_on="CREATE DATABASE"))
    with pytest.raises(RollbackPointFailed) as raised:
        st.execute(step(plan, "rollback-point"), ctx)
    assert "unexpected RuntimeError: permission denied" in str(raised.value)
    assert "CREATEDB" in str(raised.value)


def test_a_timeout_names_the_command_and_its_limit(tmp_path):
    exc = CommandTimedOut(["docker", "compose", "run"], 3600)
    plan, ctx = ctx_for(tmp_path, StubIO(fail_on="run", exc=exc))
    with pytest.raises(MigrationFailed) as raised:
        st.execute(step(plan, "migrate"), ctx)
    assert "timeout of 3600 s" in str(raised.value) and "docker compose run" in str(raised.value)


def test_an_interruption_is_journalled_and_passes_through_unchanged(tmp_path):
    plan, ctx = ctx_for(tmp_path, StubIO(fail_on="run", exc=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        st.execute(step(plan, "migrate"), ctx)
    assert ctx.journal.record("migrate").detail == "interrupted (KeyboardInterrupt)"


def test_restore_without_a_started_migration_touches_no_database(tmp_path):
    io = StubIO()
    plan, ctx = ctx_for(tmp_path, io)
    st.execute(step(plan, "stop-writers"), ctx)
    out = st.execute(step(plan, "restore-db"), ctx)
    assert "never started" in out.detail and io.statements == []


def test_restore_after_the_migration_renames_the_rollback_point_back_and_is_safe_to_repeat(tmp_path):
    io = StubIO()
    plan, ctx = ctx_for(tmp_path, io)
    for sid in ("rollback-point", "migrate"):
        st.execute(step(plan, sid), ctx)
    st.execute(step(plan, "restore-db"), ctx)
    assert 'ALTER DATABASE "app__ss_rb_run1" RENAME TO "app"' in io.statements
    assert io.dbs == {"postgres", "app", "plugin", "app__ss_failed_run1", "plugin__ss_failed_run1"}
    again = st.execute(step(plan, "restore-db"), ctx)  # a recovery repeating it after a crash
    assert again.detail == "app already restored; plugin already restored"
    st.execute(step(plan, "cleanup"), ctx)
    assert io.dbs == {"postgres", "app", "plugin"}, "nothing left behind"


def test_restore_refuses_when_the_migration_ran_without_a_complete_rollback_point(tmp_path):
    plan, ctx = ctx_for(tmp_path, StubIO())
    ctx.journal.begin("rollback-point", "cutover")  # started, never done (the runner died)
    st.execute(step(plan, "migrate"), ctx)
    with pytest.raises(RestoreFailed, match="no complete rollback point"):
        st.execute(step(plan, "restore-db"), ctx)


def test_a_failed_rollback_step_becomes_rollback_failed_and_leaves_the_journal_open(tmp_path, monkeypatch):
    from flows import runbook

    io = StubIO(fail_on="checkout")
    plan, ctx = ctx_for(tmp_path, io)
    monkeypatch.setattr(runbook, "step_task", lambda s: lambda ctx, s2, after=None: st.execute(s2, ctx))
    with pytest.raises(RollbackFailed) as raised:
        runbook.roll_back(plan, ctx, "migration failed")
    assert "stackshift recover --environment staging" in str(raised.value)
    j = Journal.load(ctx.journal.path)
    assert j.status == "rollback-failed" and j in Journal.open_runs(tmp_path)


def test_verify_fails_with_the_names_of_the_failing_checks(tmp_path):
    io = StubIO()
    io.revisions = lambda db: ["r1"]
    plan, ctx = ctx_for(tmp_path, io)
    with pytest.raises(HealthCheckFailed, match=r"database revision: alembic_version=\['r1'\], expected \['r2'\]"):
        st.execute(step(plan, "verify"), ctx)


def test_a_verified_upgrade_killed_in_its_clean_up_is_never_rolled_back(tmp_path):
    _, ctx = ctx_for(tmp_path, StubIO())
    for sid in ("stop-writers", "rollback-point", "migrate", "start-target"):
        ctx.journal.begin(sid, "cutover")
        ctx.journal.end(sid, True)
    ctx.journal.enter("finish")
    ctx.journal.begin("drop-rollback-points", "finish", "Cleanup")
    assert recovery.decide(ctx.journal, None, ["r2"]).action == recovery.CLEAN_UP


def test_a_resumed_rollback_whose_previous_version_was_verified_only_cleans_up(tmp_path, monkeypatch):
    from flows import runbook

    io = StubIO()
    plan, ctx = ctx_for(tmp_path, io)
    monkeypatch.setattr(runbook, "step_task", lambda s: lambda ctx, s2, after=None: st.execute(s2, ctx))
    ctx.journal.enter("rollback")
    ctx.journal.begin("verify-previous", "rollback", "Verify")
    ctx.journal.end("verify-previous", True)
    runbook.roll_back(plan, ctx, "resumed")
    assert io.commands == [], "the serving previous version is not taken down, checked out or started again"
    assert [r.id for r in ctx.journal.steps][-1] == "cleanup" and ctx.journal.status == "rolled-back"


def test_a_failed_clean_up_leaves_the_upgrade_complete_and_names_the_leftovers(tmp_path, monkeypatch):
    from flows import runbook

    io = StubIO(fail_on="DROP DATABASE")
    plan, ctx = ctx_for(tmp_path, io)
    monkeypatch.setattr(runbook, "step_task", lambda s: lambda ctx, s2, after=None: st.execute(s2, ctx))
    io.dbs.add("app__ss_rb_run1")
    runbook.finish(plan, ctx, retention=5)
    assert ctx.journal.status == "completed" and "clean-up incomplete" in ctx.journal.outcome
    assert "drop-rollback-points: unexpected RuntimeError" in ctx.journal.outcome


def test_a_rollback_steps_failure_is_a_restore_failure_not_the_cutover_class(tmp_path):
    plan, ctx = ctx_for(tmp_path, StubIO(fail_on="checkout"))
    with pytest.raises(RestoreFailed, match="stackshift recover"):
        st.execute(step(plan, "checkout-previous"), ctx)


def test_an_unreadable_journal_stops_everything(tmp_path):
    from core.errors import JournalUnreadable

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "journal.json").write_text("{not json")
    with pytest.raises(JournalUnreadable, match="cannot be read"):
        Journal.open_runs(tmp_path)


def test_a_journals_runner_is_gone_only_when_its_process_ended_on_this_host(tmp_path):
    """Recovery reconciles a just-closed journal's run state at once when its runner is gone (else after a quiet
    period): a runner on another host, or one still running, is never taken for gone."""
    import socket

    ended = subprocess.Popen(["true"])
    ended.wait()
    j = Journal(path=tmp_path / "journal.json", run="r1", environment="s", project="p", target={}, previous={},
                rollback_points={})
    assert not j.runner_gone(), "this process is alive"
    j.pid = ended.pid
    assert j.runner_gone()
    j.host = socket.gethostname() + "-elsewhere"
    assert not j.runner_gone(), "a process on another host cannot be seen from here"


def test_command_errors_never_carry_the_stacks_env_secrets(tmp_path):

    from core.io.commands import Command
    from core.stackio import StackIO

    (tmp_path / ".env").write_text("DB_PASSWORD=hunter2-very-secret\nLOG_LEVEL=INFO\n")


    (tmp_path / "app.log").write_text("conn to db:hunter2-very-secret pw pg-pass-123 failed")
    cfg = settings(compose_dir=tmp_path, db_password="pg-pass-123", command_timeout_seconds=30)
    with pytest.raises(CommandFailed) as raised:  # an app printing what it was configured with
        StackIO(cfg, "p").run(Command(["python3", "-c", "import sys; sys.exit(open(sys.argv[1]).read())",
                                       str(tmp_path / "app.log")]))
    assert "hunter2" not in str(raised.value) and "pg-pass-123" not in str(raised.value) and "***" in str(raised.value)


@pytest.mark.parametrize("done, revisions, action", [
    ([], None, recovery.NOTHING),
    (["stop-writers"], ["r1"], recovery.ROLLBACK),
    (["stop-writers", "rollback-point", "migrate"], ["r2"], recovery.FINISH),
    (["stop-writers", "rollback-point", "migrate"], None, recovery.ROLLBACK),
    (["stop-writers", "rollback-point"], ["r2"], recovery.ROLLBACK),
])
def test_recovery_finishes_only_a_completed_migration(tmp_path, done, revisions, action):
    plan, ctx = ctx_for(tmp_path, StubIO())
    for sid in done:
        ctx.journal.begin(sid, "cutover", type(step(plan, sid)).__name__)
        ctx.journal.end(sid, True)
    assert recovery.decide(ctx.journal, revisions, ["r2"]).action == action


def test_journal_writes_are_atomic_files_with_no_temporary_left(tmp_path):
    _, ctx = ctx_for(tmp_path, StubIO())
    ctx.journal.begin("stop-writers", "cutover")
    assert sorted(p.name for p in ctx.journal.path.parent.iterdir()) == ["journal.json"]
    assert Journal.load(ctx.journal.path).record("stop-writers").state == "started"


def _ran(io, word):
    return [a for a in io.commands if word in a]


def test_the_migration_creates_the_target_containers_meanwhile_and_the_start_only_starts_them(tmp_path):
    io = StubIO()
    plan, ctx = ctx_for(tmp_path, io)
    out = st.execute(step(plan, "migrate"), ctx)
    create = _ran(io, "create")
    assert create and create[0][-2:] == ["api", "worker"], "the app's services, not the running database"
    assert "created meanwhile" in out.detail
    assert json.loads((ctx.facts.run.dir / "created-app.json").read_text()) == {"api": "id-api", "worker": "id-worker"}
    st.execute(step(plan, "start-target"), ctx)
    assert ["engine-start", "id-api", "id-worker"] in io.commands
    assert not _ran(io, "up"), "no compose up when the containers are ready"


@pytest.mark.parametrize("trouble", ["create fails", "a container is missing", "a container is gone by the start"])
def test_the_start_falls_back_to_compose_up_when_the_containers_were_not_made_ahead(tmp_path, trouble):
    io = StubIO(fail_on="create" if trouble == "create fails" else None)
    if trouble == "a container is missing":
        io.missing = {"worker"}
    io.gone = trouble == "a container is gone by the start"
    plan, ctx = ctx_for(tmp_path, io)
    out = st.execute(step(plan, "migrate"), ctx)  # the migration itself succeeds either way
    assert out.detail.startswith("exit 0")
    st.execute(step(plan, "start-target"), ctx)
    assert _ran(io, "up"), "compose up does the whole start"


def test_a_new_attempt_at_the_migration_forgets_the_containers_of_an_earlier_one(tmp_path):
    io = StubIO()
    plan, ctx = ctx_for(tmp_path, io)
    st.execute(step(plan, "migrate"), ctx)
    io.fail_on = "create"
    st.execute(step(plan, "migrate"), ctx)
    assert not (ctx.facts.run.dir / "created-app.json").exists()


def test_the_renamed_database_is_created_while_the_old_one_stops_and_then_only_started(tmp_path):
    io = StubIO()
    plan, ctx = ctx_for(tmp_path, io)
    out = st.execute(step(plan, "stop-retired"), ctx)
    assert ["engine-stop", "dify", "db"] in io.commands and "db_postgres created meanwhile" in out.detail
    create = _ran(io, "create")
    assert create[0][-1] == "db_postgres"
    st.execute(step(plan, "start-db"), ctx)
    assert ["engine-start", "id-db_postgres"] in io.commands and not _ran(io, "up")
    assert io.commands[-1] == ["wait-for-database"]


def test_steps_together_run_at_the_same_time_and_fail_with_the_failing_steps_own_class(tmp_path):
    import threading

    from core.errors import BackupFailed

    seen = threading.Barrier(2, timeout=5)  # both must be inside apply at once, or this breaks

    class Meets(st.Step):
        def apply(self, ctx):
            seen.wait()
            return "met"

    plan, ctx = ctx_for(tmp_path, StubIO())
    both = st.Together("both", "backup", "two at once", steps=(Meets("a", "backup", "A"), Meets("b", "backup", "B")))
    assert re.fullmatch(r"a [0-9.]+ s; b [0-9.]+ s", st.execute(both, ctx).detail)
    assert [(r.id, r.state) for r in ctx.journal.steps] == [("both", "done"), ("a", "done"), ("b", "done")] or \
        [(r.id, r.state) for r in ctx.journal.steps] == [("both", "done"), ("b", "done"), ("a", "done")], \
        "each part is journalled as itself"
    (tmp_path / "again").mkdir()
    plan, ctx = ctx_for(tmp_path / "again", StubIO(fail_on="--list"))
    with pytest.raises(BackupFailed) as raised:
        st.execute(next(s for s in plan.backup if s.id == "archive-and-check"), ctx)
    assert raised.value.step_id == "verify-dump-app"


def test_the_backup_records_pre_flights_resolved_config_only_while_the_files_compose_read_are_unchanged(tmp_path):
    from core.backup import kept

    compose_dir = tmp_path / "dify"
    compose_dir.mkdir()
    (compose_dir / "docker-compose.yaml").write_text("services: {}\n")
    (compose_dir / ".env").write_text("SECRET_KEY=s3cret\n")
    cfg = settings(compose_dir=str(compose_dir), project_name="dify")
    current = c.ComposeProject.of(cfg.stack)
    io = StubIO()
    plan, ctx = ctx_for(tmp_path, io, compose_dir=compose_dir)
    save = step(plan, "resolved-config")
    assert isinstance(save, st.SaveResolvedConfig)
    assert list(save.argv) == c.compose_config_json(current), "pre-flight and the backup must name the same command"

    kept.keep(c.compose_config_json(current), [*current.files, current.env_file], '{"services": {"api": {}}}')
    assert "pre-flight's output" in st.execute(save, ctx).detail
    out = ctx.facts.run.dir / "compose-config.json"
    assert out.read_text() == '{"services": {"api": {}}}' and out.stat().st_mode & 0o777 == 0o600
    assert io.commands == [], "compose must not run again"

    st.execute(save, ctx)  # handed over once: a second run asks compose
    assert io.commands == [list(save.argv)]

    kept.keep(c.compose_config_json(current), [*current.files, current.env_file], '{"stale": true}')
    (compose_dir / ".env").write_text("SECRET_KEY=rotated\n")
    st.execute(save, ctx)
    assert len(io.commands) == 2, "a changed .env means pre-flight's copy is stale: compose runs"


class StaleNetworkIO(StubIO):
    """`compose down` refused on the project's network, as Debian's dockerd 20.10 does with a stale endpoint."""

    def __init__(self, stderr: str, left: dict):
        super().__init__()
        self.stderr, self.left = stderr, left

    def run(self, cmd, *, db_password=False):
        if "down" in cmd.argv:
            self.commands.append(cmd.argv)
            raise CommandFailed(cmd.argv, 1, self.stderr)
        return super().run(cmd, db_password=db_password)

    def service_containers(self, project, services):
        return self.left


STALE = "Error response from daemon: error while removing network: network dify_default id 16 has active endpoints"


def test_stop_target_is_done_when_only_a_stale_network_endpoint_is_left_and_fails_otherwise(tmp_path):
    from core.errors import RestoreFailed

    plan, ctx = ctx_for(tmp_path, StaleNetworkIO(STALE, left={}))
    assert "next start reuses" in st.execute(step(plan, "stop-target"), ctx).detail
    for name, io in (("kept", StaleNetworkIO(STALE, left={"api": "c1"})),
                     ("other", StaleNetworkIO("permission denied", left={}))):
        (tmp_path / name).mkdir()
        plan, ctx = ctx_for(tmp_path / name, io)
        with pytest.raises(RestoreFailed):  # a container still there, or another failure: the rollback step fails
            st.execute(step(plan, "stop-target"), ctx)
