"""The rollback point's choice, its data-directory work and its steps (PITR, FILE_COPY, snapshot command)."""
from pathlib import Path, PurePosixPath

import pytest

from core.io.pgsql import as_text

from core.backup import rollbackpoint as rp
from core.cutover import rollback_methods as rm
from core.cutover import steps as st
from core.errors import HealthCheckFailed, RestoreFailed, RollbackPointFailed
from core.cutover.journal import Journal
from core.cutover.plan import build_plan
from tests.unit.test_plan import facts
from tests.unit.test_steps import StubIO

GB = 1_000_000_000


def forecast(requested: str, database_bytes: int, *, measured: bool = True, pitr_unavailable: str = "",
             snapshot_configured: bool = False):
    """`rm.forecast` at 400 MB/s plus 0.2 s fixed, FILE_COPY allowed 1 s."""
    return rm.forecast(requested, database_bytes, copy_mb_s=400.0, copy_fixed_seconds=0.2, measured=measured,
                       pitr_unavailable=pitr_unavailable, file_copy_max_seconds=1.0,
                       snapshot_configured=snapshot_configured)


def test_auto_keeps_file_copy_while_it_is_cheap_and_takes_pitr_beyond():
    small = forecast("auto", 200_000_000)
    assert small.method == rm.FileCopy.name and small.file_copy_seconds == pytest.approx(0.7)
    big = forecast("auto", 2 * GB)
    assert big.method == rm.Pitr.name and big.file_copy_seconds == pytest.approx(5.2)
    assert "PITR 0.05 s" in big.summary() and "5.20 s" in big.summary() and "measured" in big.summary()


def test_auto_falls_back_to_file_copy_and_says_why_pitr_is_out():
    f = forecast("auto", 2 * GB, pitr_unavailable="wal_level is minimal (needs replica, PostgreSQL's default)")
    assert f.method == rm.FileCopy.name
    assert "PITR unavailable: wal_level is minimal" in f.summary()


def test_an_explicit_method_or_a_snapshot_command_wins():
    assert forecast("file-copy", 50 * GB).method == rm.FileCopy.name
    assert forecast("pitr", 1).method == rm.Pitr.name
    assert forecast("auto", 1, measured=False, snapshot_configured=True).method == rm.Snapshot.name


def test_data_dir_under_a_bind_mount_like_dify():
    svc = {"environment": {"PGDATA": "/var/lib/postgresql/data/pgdata"},
           "volumes": [{"type": "bind", "source": "/srv/dify/volumes/db/data", "target": "/var/lib/postgresql/data"}]}
    d, why = rp.data_dir(svc, "db")
    assert why == "" and d.host == Path("/srv/dify/volumes/db/data/pgdata")
    assert d.container_sibling("ss-base-r1") == "/var/lib/postgresql/data/ss-base-r1"
    assert d.host_sibling("ss-base-r1") == Path("/srv/dify/volumes/db/data/ss-base-r1")


def test_data_dir_in_a_named_volume_and_the_cases_pitr_cannot_use():
    svc = {"environment": {"PGDATA": "/pg/data/main"}, "volumes": [{"type": "volume", "source": "pg", "target": "/pg"}]}
    d, _ = rp.data_dir(svc, "db", lambda name: "/var/lib/docker/volumes/pg/_data" if name == "pg" else None)
    assert d.host == Path("/var/lib/docker/volumes/pg/_data/data/main")
    root = {"volumes": [{"type": "volume", "source": "pg", "target": "/var/lib/postgresql/data"}]}
    assert "mount point itself" in rp.data_dir(root, "db", lambda n: "/x")[1]
    assert "would not survive" in rp.data_dir({"environment": {}}, "db")[1]
    tmpfs = {"environment": {"PGDATA": "/d/x"}, "volumes": [{"type": "tmpfs", "target": "/d"}]}
    assert "not a bind mount" in rp.data_dir(tmpfs, "db")[1]


def _cluster(root: Path, name: str, marker: str) -> Path:
    d = root / name
    (d / "pg_wal").mkdir(parents=True)
    (d / "PG_VERSION").write_text("15\n")
    (d / "postgresql.auto.conf").write_text("max_wal_size = '2GB'\nrestore_command = 'old'\n")
    (d / "marker").write_text(marker)
    return d


def test_swap_puts_the_base_backup_in_place_and_is_idempotent(tmp_path):
    live = _cluster(tmp_path, "pgdata", "failed")
    _cluster(tmp_path, "ss-base-r1", "base")
    data = rp.DataDir("db", live, PurePosixPath("/var/lib/postgresql/data/pgdata"))
    rp.swap_in_base_backup(data, "r1")
    assert (live / "marker").read_text() == "base"
    assert (tmp_path / "ss-failed-r1" / "marker").read_text() == "failed"
    assert not (tmp_path / "ss-base-r1").exists() and (live / "recovery.signal").exists()
    conf = (live / "postgresql.auto.conf").read_text()
    assert "max_wal_size = '2GB'" in conf and "restore_command = 'old'" not in conf
    assert "restore_command = 'cp /var/lib/postgresql/data/ss-failed-r1/pg_wal/%f %p'" in conf
    assert "recovery_target_name = 'stackshift_r1'" in conf and "recovery_target_action = 'promote'" in conf
    again = rp.swap_in_base_backup(data, "r1")  # a rollback resumed after a crash
    assert (live / "marker").read_text() == "base" and "failed state" in again
    assert conf == (live / "postgresql.auto.conf").read_text()


def test_swap_resumes_between_the_two_renames_and_refuses_when_nothing_is_there(tmp_path):
    _cluster(tmp_path, "ss-failed-r1", "failed")
    _cluster(tmp_path, "ss-base-r1", "base")
    data = rp.DataDir("db", tmp_path / "pgdata", PurePosixPath("/d/pgdata"))
    rp.swap_in_base_backup(data, "r1")
    assert (tmp_path / "pgdata" / "marker").read_text() == "base"
    empty = tmp_path / "other"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no state a restore leaves.*ss-base-r1"):
        rp.swap_in_base_backup(rp.DataDir("db", empty / "pgdata", PurePosixPath("/d/pgdata")), "r1")


def pitr_facts(tmp_path, **over):
    return facts(run_dir=tmp_path / "run", run_id="r1", rollback_method=rm.Pitr.name,
                 data_dir={"service": "db", "host": str(tmp_path / "data" / "pgdata"),
                           "container": "/var/lib/postgresql/data/pgdata"}, **over)


def test_pitr_plan_backs_up_online_marks_the_point_and_restores_before_the_database_starts(tmp_path):
    plan = build_plan(pitr_facts(tmp_path), "r1")
    base = next(s for s in plan.backup if isinstance(s, st.BaseBackup))
    assert list(base.argv[base.argv.index("exec"):]) == [
        "exec", "--no-TTY", "--user", "postgres", "db", "pg_basebackup",
        "--pgdata", "/var/lib/postgresql/data/ss-base-r1", "--username", "app", "--no-password",
        "--wal-method", "stream", "--checkpoint", "fast", "--create-slot", "--slot", "stackshift_r1"]
    assert base.host_dir == str(tmp_path / "data" / "ss-base-r1")
    assert isinstance(plan.rollback_point, st.TakeRestorePoint)
    assert as_text(plan.rollback_point.statement()) == "SELECT pg_create_restore_point('stackshift_r1')::text"
    ids = [s.id for s in plan.rollback]
    assert ids.index("restore-db") < ids.index("start-previous-db") < ids.index("await-recovery") \
        < ids.index("start-previous")
    finish, cleanup = plan.finish[0], plan.rollback[-1]
    assert finish.slots == ("stackshift_r1",) and finish.folders == (str(tmp_path / "data" / "ss-base-r1"),)
    assert finish.drop == () and cleanup.failed_folders == (str(tmp_path / "data" / "ss-failed-r1"),)
    assert plan.rollback_point.names() == {"cluster": f"restore point stackshift_r1 over the base backup "
                                                      f"{tmp_path / 'data' / 'ss-base-r1'}"}


def test_file_copy_plan_is_unchanged_and_has_no_slot_or_base_backup():
    plan = build_plan(facts(), "run1")
    assert not any(isinstance(s, st.BaseBackup) for s in plan.backup)
    assert isinstance(plan.rollback_point, st.TakeRollbackPoint)
    assert plan.finish[0].slots == () and plan.finish[0].drop == ("app__ss_rb_run1", "plugin__ss_rb_run1")


def test_snapshot_plan_runs_the_environments_commands(tmp_path):
    f = facts(rollback_method=rm.Snapshot.name, snapshot_command=["snap", "take", "{point}"],
              snapshot_restore_command=["snap", "restore", "{point}"])
    plan = build_plan(f, "r1")
    assert isinstance(plan.rollback_point, st.TakeSnapshot) and plan.rollback_point.argv == ("snap", "take",
                                                                                             "stackshift_r1")
    assert plan.rollback_point.error is RollbackPointFailed and plan.rollback_point.task_name == "rollback-point"
    restore = next(s for s in plan.rollback if s.id == "restore-db")
    assert isinstance(restore, st.RestoreSnapshot) and restore.argv == ("snap", "restore", "stackshift_r1")


class SlotIO(StubIO):
    def __init__(self, slot_lsn=None, in_recovery=(False,), **kw):
        super().__init__(**kw)
        self.slot_lsn, self.recovery = slot_lsn, list(in_recovery)
        self.queries = []

    def query(self, statement, params=()):
        statement = as_text(statement)
        self.queries.append(statement)
        if "pg_replication_slots" in statement:
            return [(self.slot_lsn,)] if self.slot_lsn else []
        if "pg_create_restore_point" in statement:
            return [("0/3000090",)]
        if "pg_is_in_recovery" in statement:
            return [(self.recovery.pop(0) if len(self.recovery) > 1 else self.recovery[0],)]
        return []


def _ctx(tmp_path, io, keep_failed_database=False):
    f = pitr_facts(tmp_path, keep_failed_database=keep_failed_database)
    f.run.dir.mkdir(parents=True, exist_ok=True)
    j = Journal(path=f.run.dir / "journal.json", run="r1", environment="staging", project="dify", target={},
                previous={}, rollback_points={})
    return build_plan(f, "r1"), st.StepContext(f, io, j)


def test_restore_point_refuses_without_the_slot_that_keeps_the_wal(tmp_path):
    plan, ctx = _ctx(tmp_path, SlotIO(slot_lsn=None))
    with pytest.raises(RollbackPointFailed, match="replication slot stackshift_r1 .* is missing"):
        st.execute(plan.rollback_point, ctx)
    plan, ctx = _ctx(tmp_path, SlotIO(slot_lsn="0/2000000"))
    out = st.execute(plan.rollback_point, ctx)
    assert "0/3000090" in out.detail and "0/2000000" in out.detail
    assert ctx.io.queries[-1] == st.FLUSH_WAL, "the restore point's WAL record is flushed by a commit"


def test_pitr_restore_is_skipped_when_the_migration_never_started_and_refused_without_a_point(tmp_path):
    plan, ctx = _ctx(tmp_path, SlotIO())
    restore = next(s for s in plan.rollback if s.id == "restore-db")
    assert "never started" in st.execute(restore, ctx).detail
    ctx.journal.begin("migrate", "cutover", "Migrate")
    with pytest.raises(RestoreFailed, match="no complete rollback point"):
        st.execute(restore, ctx)


def test_pitr_rollback_swaps_then_waits_for_the_promotion(tmp_path):
    plan, ctx = _ctx(tmp_path, SlotIO(slot_lsn="0/2000000", in_recovery=(True, True, False)))
    live = _cluster(tmp_path / "data", "pgdata", "failed")
    _cluster(tmp_path / "data", "ss-base-r1", "base")
    st.execute(plan.rollback_point, ctx)
    ctx.journal.begin("migrate", "cutover", "Migrate")
    st.execute(next(s for s in plan.rollback if s.id == "restore-db"), ctx)
    assert (live / "marker").read_text() == "base"
    out = st.execute(next(s for s in plan.rollback if s.id == "await-recovery"), ctx)
    assert "promoted" in out.detail and ctx.io.recovery == [False]
    assert "ALTER SYSTEM RESET restore_command" in ctx.io.statements


def test_cleanup_drops_the_slot_and_the_base_backup_and_keeps_the_failed_state_only_when_told(tmp_path):
    plan, ctx = _ctx(tmp_path, SlotIO(slot_lsn="0/2000000"))
    _cluster(tmp_path / "data", "ss-base-r1", "base")
    _cluster(tmp_path / "data", "ss-failed-r1", "failed")
    out = st.execute(plan.rollback[-1], ctx)
    assert "replication slot stackshift_r1" in out.detail
    assert any("pg_drop_replication_slot" in s for s in ctx.io.statements)
    assert not (tmp_path / "data" / "ss-base-r1").exists() and not (tmp_path / "data" / "ss-failed-r1").exists()
    plan, ctx = _ctx(tmp_path, SlotIO(), keep_failed_database=True)
    _cluster(tmp_path / "data", "ss-failed-r1", "failed")
    out = st.execute(plan.rollback[-1], ctx)
    assert (tmp_path / "data" / "ss-failed-r1").exists() and "kept the failed state" in out.detail


def test_base_backup_retry_starts_clean(tmp_path):
    plan, ctx = _ctx(tmp_path, SlotIO())
    base = next(s for s in plan.backup if isinstance(s, st.BaseBackup))
    _cluster(tmp_path / "data", "ss-base-r1", "half-written")
    st.execute(base, ctx)
    assert not (tmp_path / "data" / "ss-base-r1").exists(), "the stub ran no pg_basebackup; the old folder is gone"
    assert any("pg_drop_replication_slot" in s for s in ctx.io.statements)
    assert ctx.io.commands[-1][-1] == "stackshift_r1"


def test_start_target_polls_health_itself_once_the_database_was_waited_for(tmp_path):
    plan = build_plan(facts(), "run1")
    start_db, start_target = (next(s for s in plan.cutover if s.id == i) for i in ("start-db", "start-target"))
    for step in (start_db, start_target):
        assert "--wait" not in step.argv and "--no-deps" in step.argv, "compose's 500 ms ticks are not waited on"
    assert start_db.wait_for == ("db_postgres",) and start_target.wait_for == ("api", "db_postgres", "worker")
    io = StubIO()
    f = facts(run_dir=tmp_path / "run", run_id="run1")
    f.run.dir.mkdir()
    ctx = st.StepContext(f, io, Journal(path=f.run.dir / "j.json", run="run1", environment="s", project="dify",
                                        target={}, previous={}, rollback_points={}))
    assert isinstance(start_db, st.StartDatabase) and isinstance(start_target, st.StartApp)
    st.execute(start_db, ctx)
    assert io.commands[-1] == ["wait-for-database"], "the migration needs connections, not the next health check"
    st.execute(start_target, ctx)
    assert io.commands[-1] == ["wait-answering"], "the downtime ends when the app answers"
    io.wait_answering = lambda project, services, timeout, jobs=(): None  # an environment without HTTP checks
    st.execute(start_target, ctx)
    assert io.commands[-1] == ["wait-healthy", "dify", "api", "db_postgres", "worker"]
    io.commands.clear()
    with pytest.raises(HealthCheckFailed):  # the stub's `ps` lists the api only
        st.execute(plan.verify[-1], ctx)
    assert io.commands[0] == ["wait-healthy", "dify", "api", "db_postgres", "worker"], "verify waits for health first"
    no_db = build_plan(facts(target_services=["api", "worker"], db_services=["db"]), "run1")
    assert "--wait" in next(s for s in no_db.cutover if s.id == "start-target").argv, "no database step: compose waits"


def test_health_verdicts_read_the_containers_state():
    from core.stackio import describe_state, health_verdict

    assert health_verdict({"Status": "running", "Health": {"Status": "healthy"}}) == "ok"
    assert health_verdict({"Status": "running"}) == "ok", "no healthcheck: running is enough"
    assert health_verdict({"Status": "running", "Health": {"Status": "starting"}}) == "wait"
    assert health_verdict({"Status": "created"}) == "wait" and health_verdict(None) == "wait"
    assert health_verdict({"Status": "exited", "ExitCode": 0}) == "failed", "a long-running service that ended"
    assert health_verdict({"Status": "exited", "ExitCode": 0}, job=True) == "ok", "a one-shot job that completed"
    assert health_verdict({"Status": "exited", "ExitCode": 3}) == "failed"
    assert health_verdict({"Status": "restarting", "Restarting": True, "ExitCode": 1}) == "wait"
    unhealthy = {"Status": "running", "Health": {"Status": "unhealthy", "Log": [{"Output": "HTTP 500\n"}]}}
    assert health_verdict(unhealthy) == "failed" and describe_state(unhealthy) == "is running (unhealthy): HTTP 500"
