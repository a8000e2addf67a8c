"""The online preparation in the upgrade plan: the `prepare-online` step after the backup and before the writers stop
(its own task run), none when `migration.online_preparation` is off (the default: the plan exactly as before), the
batch settings reaching its SQL, the per-statement verdicts in the plan, plan.json rebuilding the same preparations;
and what becomes of a preparation a run stopped with (undone before its swap, finished after it; after the
migration, its helper objects dropped), each part journalled. The database is `FakeConn`, a stand-in for a psycopg
connection (no server in unit tests; tests/e2e/test_online_live.py runs the same SQL on PostgreSQL 15)."""
from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager

import pytest

from blocks.stack_environment import StackEnvironment
from core.cutover import steps as st
from core.cutover.facts import Facts
from core.cutover.journal import Journal
from core.cutover.online import (FINISH_SWAP, NOTHING, UNDO, OnlineFacts, check_room, choose, left_behind,
                                 part_id)
from core.cutover.preflight import check_disk, free_bytes
from core.cutover.plan import build_plan, with_online
from core.errors import OnlineInsufficientDisk, OnlinePreparationFailed, OnlineTableNotOwned
from core.io.pgsql import as_text
from core.migrations.online import plan as online_plan
from core.migrations.sqlrules import analyse
from core.report import online_markdown, plan_markdown
from tests.unit._settings import settings
from tests.unit.test_online_planner import WIDEN_PK, accounts_shape
from tests.unit.test_plan import facts, flat_facts

NOT_NULL = "BEGIN;\nALTER TABLE accounts ALTER COLUMN name SET NOT NULL;\nCOMMIT;\n"


def online_facts(sql: str = WIDEN_PK) -> OnlineFacts:
    return OnlineFacts.of(online_plan(analyse(sql), accounts_shape if "TYPE" in sql else (lambda t, c: None),
                                      server_version_num=150000))


def auto_facts(sql: str = WIDEN_PK, **fields) -> Facts:
    cfg = settings(online_preparation="auto", **fields)
    return dataclasses.replace(Facts.from_dict(flat_facts(), cfg), online=online_facts(sql))


def test_off_is_the_default_and_the_plan_is_exactly_as_before():
    assert settings().migration.online_preparation == "off"
    before = build_plan(facts(), "run1")
    assert [s.id for s in before.prepare] == ["checkpoint"]
    assert not any(isinstance(s, (st.PrepareOnline, st.SettleOnline))
                   for steps in before.lists().values() for s in st.flat(steps))
    assert with_online(before, OnlineFacts()) is before, "off: the plan is not even rebuilt"
    assert choose("ALTER TABLE accounts ALTER COLUMN id TYPE bigint;", None, None, settings(), False) == OnlineFacts()


def test_the_block_reaches_the_settings_by_group_and_by_flat_name():
    flat = StackEnvironment(compose_dir="/srv/x", project_name="x", db_name="app", db_user="app", db_password="pw",
                            backup_dir="/b", online_preparation="auto", online_batch_rows=500,
                            online_pause_seconds=0.5).settings().migration
    grouped = StackEnvironment(stack={"compose_dir": "/srv/x", "project_name": "x"},
                               database={"name": "app", "user": "app", "password": "pw"}, backup={"dir": "/b"},
                               migration={"online_preparation": "auto", "online_batch_rows": 500,
                                          "online_pause_seconds": 0.5}).settings().migration
    assert flat == grouped
    assert (flat.online_preparation, flat.online_batch_rows, flat.online_pause_seconds) == ("auto", 500, 0.5)
    with pytest.raises(ValueError):
        settings(online_preparation="sometimes")


def test_prepare_online_runs_after_the_backup_before_the_writers_stop_as_its_own_task():
    plan = build_plan(auto_facts(online_batch_rows=500, online_pause_seconds=0.25), "run1")
    assert [s.id for s in plan.prepare] == ["prepare-online", "checkpoint"], \
        "after the backup and the pull, before the checkpoint and the cutover's stop"
    step = plan.prepare[0]
    assert isinstance(step, st.PrepareOnline) and step.task_name == "prepare-online" and step.phase == st.Phase.BACKUP
    assert not any(isinstance(s, st.PrepareOnline) for s in st.flat(plan.backup + plan.cutover + plan.verify))
    assert (step.settings.batch_rows, step.settings.pause_seconds) == (500, 0.25), "the block's batch settings"
    [prep] = step.preparations
    assert (prep.table, prep.column) == ("accounts", "id") and "batches of 500" in prep.summary
    assert isinstance(plan.finish[-1], st.SettleOnline) and plan.finish[-1].phase == st.Phase.FINISH
    assert isinstance(plan.rollback[-1], st.SettleOnline) and plan.rollback[-1].phase == st.Phase.ROLLBACK
    assert "already holds each swapped (widened) column" in plan.rollback[-1].title


def test_the_plan_and_the_migration_report_say_per_statement_prepared_online_or_in_the_downtime():
    f = auto_facts("BEGIN;\nALTER TABLE accounts ALTER COLUMN id TYPE bigint;\n"
                   "CREATE INDEX ix_name ON accounts (name);\nCOMMIT;\n")
    text = plan_markdown(build_plan(f, "run1"))
    assert "## Online preparation, per statement" in text
    assert "accounts.id: prepared online (int4 → int8: shadow column synced by a trigger" in text
    assert "accounts: in the downtime (" in text and "CREATE INDEX without CONCURRENTLY" in text
    assert online_markdown(f.online.lines(), "off") == ""
    assert "in the downtime" in online_markdown(f.online.lines(), "auto")
    assert "nothing to prepare" in online_markdown([], "auto")


def test_plan_json_rebuilds_exactly_the_same_preparations_and_an_older_one_has_none():
    f = auto_facts()
    again = Facts.from_dict(json.loads(json.dumps(f.to_dict())), f.settings)
    assert again.online == f.online

    def sql(plan):
        return [as_text(s) for step in plan.prepare[0].preparations[0].steps() + list(
            plan.prepare[0].preparations[0].undo) for s in step.statements]
    assert sql(build_plan(again, "run1")) == sql(build_plan(f, "run1"))
    old = f.to_dict()
    del old["online"]
    assert Facts.from_dict(old, f.settings).online == OnlineFacts()


def prep(sql: str = WIDEN_PK):
    return build_plan(auto_facts(sql), "run1").prepare[0].preparations[0]


def test_what_becomes_of_a_preparation_a_run_stopped_with():
    p = prep()
    assert left_behind(p, {}) == NOTHING
    assert left_behind(p, {part_id(p, "setup"): "done", part_id(p, "backfill"): "started"}) == UNDO, \
        "killed mid-backfill: undone"
    assert left_behind(p, {part_id(p, "build"): "done", part_id(p, "swap"): "failed"}) == UNDO
    assert left_behind(p, {part_id(p, "swap"): "started"}) == UNDO, \
        "a swap whose record did not end: the idempotent drops find nothing if it committed"
    assert left_behind(p, {part_id(p, "swap"): "done", part_id(p, "after-swap"): "started"}) == FINISH_SWAP
    n = prep(NOT_NULL)
    assert n.kind == "not-null" and left_behind(n, {part_id(n, "setup"): "done", part_id(n, "build"): "done"}) == UNDO


class FakeConn:
    """Stand-in for a psycopg connection (named so): records the SQL, answers the backfill's batches, fails where
    told."""

    def __init__(self, batches=((1000, 1000), (2000, 1000)), fail_on: str | None = None):
        self.sql: list[str] = []
        self.batches, self.fail_on = list(batches), fail_on

    def execute(self, statement, params=None):
        text = as_text(statement)
        self.sql.append(text)
        if self.fail_on and self.fail_on in text:
            raise RuntimeError("canceling statement due to lock timeout")
        return self

    def fetchone(self):
        if self.sql[-1].startswith("SELECT max("):  # the backfill's bound: the greatest key
            return (2000,)
        return self.batches.pop(0) if self.batches else (None, 0)

    @contextmanager
    def transaction(self):
        yield

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeIO:
    def __init__(self, conn: FakeConn):
        self.conn = conn
        self.db = self

    def connect(self, dbname, autocommit=False):
        assert dbname == "app" and autocommit
        return self.conn


def context(tmp_path, f: Facts, conn: FakeConn) -> st.StepContext:
    journal = Journal(tmp_path / "journal.json", "run1", "staging", "dify", {}, {}, {})
    return st.StepContext(f, FakeIO(conn), journal)  # type: ignore[arg-type]


def test_prepare_online_journals_each_part_and_swaps(tmp_path):
    f = auto_facts(online_pause_seconds=0)
    plan = build_plan(f, "run1")
    conn = FakeConn()
    ctx = context(tmp_path, f, conn)
    st.execute(plan.prepare[0], ctx)
    p = plan.prepare[0].preparations[0]
    assert [(r.id, r.state) for r in ctx.journal.steps] == [("prepare-online", "done")] + [
        (part_id(p, part), "done") for part in ("setup", "backfill", "build", "swap", "after-swap")]
    assert ctx.journal.record(part_id(p, "backfill")).detail == "2,000 rows copied"
    assert any(s.startswith("LOCK TABLE") for s in conn.sql) and conn.sql.index(
        next(s for s in conn.sql if s.startswith("LOCK TABLE"))) > conn.sql.index(
        next(s for s in conn.sql if "CONCURRENTLY" in s and s.startswith("CREATE")))


def test_a_failed_preparation_is_undone_by_the_clean_up_and_a_swapped_one_kept(tmp_path):
    f = auto_facts(online_pause_seconds=0)
    plan = build_plan(f, "run1")
    conn = FakeConn(fail_on="CREATE UNIQUE INDEX CONCURRENTLY")
    ctx = context(tmp_path, f, conn)
    with pytest.raises(OnlinePreparationFailed):
        st.execute(plan.prepare[0], ctx)
    conn.sql.clear()
    conn.fail_on = None
    settle = plan.finish[-1]
    detail = st.execute(settle, ctx).detail  # what the abandon and `recover` run: the finish list's clean-up
    assert "undone" in detail
    assert any(s.startswith("DROP TRIGGER IF EXISTS") for s in conn.sql)
    assert any(s.startswith("ALTER TABLE") and "DROP COLUMN IF EXISTS" in s for s in conn.sql)

    p = plan.prepare[0].preparations[0]
    ctx.journal.begin(part_id(p, "swap"), "backup", "OnlinePart")
    ctx.journal.end(part_id(p, "swap"), True)
    conn.sql.clear()
    assert "stays widened" in st.execute(plan.rollback[-1], ctx).detail
    assert conn.sql and all("VALIDATE CONSTRAINT" in s or s.startswith(("ANALYZE", "SET")) for s in conn.sql), \
        "after the swap nothing is dropped: what follows the swap is finished"


def test_after_the_migration_the_not_null_helper_check_is_dropped(tmp_path):
    f = auto_facts(NOT_NULL)
    plan = build_plan(f, "run1")
    conn = FakeConn()
    ctx = context(tmp_path, f, conn)
    ctx.journal.begin("migrate", "cutover", "Migrate")
    ctx.journal.end("migrate", True)
    assert "after the migration" in st.execute(plan.finish[-1], ctx).detail
    assert [s for s in conn.sql if not s.startswith("SET")] == [
        next(as_text(s) for s in plan.prepare[0].preparations[0].after_migration[0].statements)]
    assert "DROP CONSTRAINT IF EXISTS" in conn.sql[-1]


def test_nothing_begun_needs_no_connection(tmp_path):
    f = auto_facts()
    plan = build_plan(f, "run1")
    ctx = context(tmp_path, f, FakeConn())
    ctx.io = None  # type: ignore[assignment]
    assert st.execute(plan.finish[-1], ctx).detail == "no online preparation to settle"


class OwnerConn:
    """Stand-in for a psycopg connection (named so) that answers the ownership question: the role owns `owned`."""

    def __init__(self, owned: set[str]):
        self.owned, self.asked = owned, []

    def execute(self, query, params):
        self.asked.append(params["table"])
        self.row = None if params["table"] in self.owned else (1,)
        return self

    def fetchone(self):
        return self.row


def test_a_table_the_role_does_not_own_is_refused_before_anything_changes():
    auto = settings(online_preparation="auto")
    conn = OwnerConn(owned=set())
    with pytest.raises(OnlineTableNotOwned, match="does not own accounts"):
        choose(NOT_NULL, conn, None, auto, False)
    owned = choose(NOT_NULL, OwnerConn(owned={"accounts"}), None, auto, False)
    assert [r["kind"] for r in owned.prepared] == ["not-null"]
    assert online_facts().tables() == ["accounts", "events"], "the swap re-adds the foreign key of events too"


class SizeConn:
    """Stand-in for a psycopg connection (named so): what a widening of the asked table would write."""

    def __init__(self, sizes: dict[str, int]):
        self.sizes = sizes

    def execute(self, query, params):
        self.row = (self.sizes[params["table"]],)
        return self

    def fetchone(self):
        return self.row


def test_a_preparation_that_does_not_fit_beside_the_data_directory_is_refused(tmp_path):
    online = online_facts()  # widens accounts.id
    with pytest.raises(OnlineInsufficientDisk, match="1.00 GB"):
        check_room(SizeConn({"accounts": 10**9}), online, room_bytes=10**9)
    check_room(SizeConn({"accounts": 10**9}), online, room_bytes=2 * 10**9)
    check_room(SizeConn({"accounts": 10**9}), online, room_bytes=None)  # the data directory is not on this host
    check_room(None, online_facts(NOT_NULL), room_bytes=0)  # a validated CHECK writes nothing
    (tmp_path / "data").mkdir()
    room = check_disk(tmp_path / "backup", [tmp_path / "data"], db_bytes=10**6, volume_bytes=0, point_bytes=10**6)
    free = free_bytes(tmp_path)
    assert room is not None and free is not None
    assert abs(room - (free - 2.2 * 10**6)) < 50 * 10**6, "the backup and the rollback point counted on that disk"
    assert check_disk(tmp_path / "backup", [], db_bytes=10**6, volume_bytes=0) is None


def test_each_backfill_batch_reaches_the_backfill_progress_artifact(tmp_path):
    from tasks.steps import backfill_text

    f = auto_facts(online_pause_seconds=0)
    plan = build_plan(f, "run1")
    seen: list[tuple] = []
    ctx = dataclasses.replace(context(tmp_path, f, FakeConn()), on_backfill=lambda *batch: seen.append(batch))
    st.execute(plan.prepare[0], ctx)
    assert seen and seen[-1][:2] == ("accounts.id", 2_000), "rows backfilled so far, after each batch"
    assert all(what == "accounts.id" and estimate == 1_000_000 for what, _, estimate in seen)
    percent, text = backfill_text("prod", "accounts.id", 250_000, 1_000_000.0)
    assert percent == 25.0 and "250,000 of about 1,000,000 rows backfilled" in text and "service is up" in text
    assert backfill_text("prod", "accounts.id", 1_200, 1_000.0)[0] == 100.0, "an estimate short of the rows"
    assert backfill_text("prod", "accounts.id", 0, 0.0)[0] == 0.0
