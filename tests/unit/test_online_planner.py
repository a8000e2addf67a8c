"""The online planner on Dify's real migration SQL and the demo's v2: which statements are prepared online, which
stay in the downtime and why, and the preparation's SQL (shadow column, trigger, backfill, CONCURRENTLY indexes,
NOT VALID foreign keys, swap, undo) for a primary key with its sequence and foreign keys."""
from __future__ import annotations

from pathlib import Path

from core.io.pgsql import as_text
from core.migrations.online import Column, ForeignKey, Index, OnlineSettings, Status, TableShape, plan
from core.migrations.sqlrules import analyse
from tests.unit.test_calibration import DEMO_V2  # the demo's v2 revision as its image renders it

DIFY = Path("/work/shared/fixtures/dify")
SQL_0_15 = (DIFY / "migrate.0.14.2-to-0.15.3.sql").read_text()
SQL_1_12 = (DIFY / "migrate.0.15.3-to-1.12.1.sql").read_text()
WIDEN_PK = "BEGIN;\nALTER TABLE accounts ALTER COLUMN id TYPE BIGINT;\nCOMMIT;\n"


def verdicts(sql, shapes=None, version=150000):
    return {(v.line, v.column): v for v in plan(analyse(sql), shapes, server_version_num=version).verdicts}


def texts(steps):
    return [as_text(s) for step in steps for s in step.statements]


def accounts_shape(table, column):
    assert (table, column) == ("accounts", "id")
    return TableShape(
        "accounts", Column("id", "int4", not_null=True, default="nextval('accounts_id_seq'::regclass)",
                           sequence="public.accounts_id_seq"),
        key="id", rows=1_000_000,
        indexes=(Index("accounts_pkey", ("id",), unique=True, constraint="accounts_pkey", primary=True),),
        foreign_keys=(ForeignKey("events_account_id_fkey", "events", ("account_id",), "accounts", ("id",),
                                 "FOREIGN KEY (account_id) REFERENCES accounts(id) ON DELETE CASCADE"),))


def test_dify_0_15_total_tokens_is_an_online_candidate_offline_and_prepared_on_its_live_shape():
    [v] = verdicts(SQL_0_15).values()
    assert (v.line, v.table, v.column, v.status) == (53, "workflow_runs", "total_tokens", Status.CANDIDATE)

    def shape(table, column):  # Dify's workflow_runs: a uuid primary key, total_tokens int4 NOT NULL DEFAULT 0
        return TableShape(table, Column(column, "int4", not_null=True, default="0"), key="id", rows=5e6)
    [v] = verdicts(SQL_0_15, shape).values()
    assert v.status is Status.PREPARED and v.preparation is not None
    prep = v.preparation
    assert prep.backfill is not None and prep.backfill.key == "id"
    assert 'ORDER BY "id" LIMIT %(rows)s' in as_text(prep.backfill.first)
    assert 'WHERE "id" > %(after)s' in as_text(prep.backfill.next), "keyset batches, any key type (uuid here)"
    assert all('"id" <= %(upper)s' in as_text(s) for s in (prep.backfill.first, prep.backfill.next)) and \
        as_text(prep.backfill.bound) == 'SELECT max("id") FROM "workflow_runs"', \
        "never past the greatest key when the backfill begins: it does not chase the app's inserts"
    swap = texts([prep.swap])
    assert swap[:3] == ['LOCK TABLE "workflow_runs" IN ACCESS EXCLUSIVE MODE',
                        f'ALTER TABLE "workflow_runs" ALTER COLUMN "{prep_shadow(prep)}" SET NOT NULL',
                        f'ALTER TABLE "workflow_runs" DROP CONSTRAINT "ss_nn_{tag(prep)}"']
    assert f'ALTER TABLE "workflow_runs" ALTER COLUMN "{prep_shadow(prep)}" SET DEFAULT 0' in swap


def prep_shadow(prep):
    return next(o for o in prep.objects if o.startswith("column ")).split(" ", 1)[1]


def tag(prep):
    return prep_shadow(prep).rsplit("_ss", 1)[1]


def test_dify_1_12_each_flagged_statement_has_a_verdict_and_a_reason():
    vs = verdicts(SQL_1_12)
    by_status = {s: sorted(line for (line, _), v in vs.items() if v.status is s) for s in Status}
    assert by_status[Status.CANDIDATE] == [810, 812, 814], "the three SET NOT NULL of the celery tables"
    assert by_status[Status.PREPARED] == []
    assert vs[928, "question"].reason == "an earlier statement of the migration changes this table first", \
        "message_annotations' NULLs are filled by the migration's own UPDATEs first: no CHECK can hold before"
    assert "CREATE INDEX without CONCURRENTLY" in vs[105, None].reason
    assert vs[5, "provider"].reason == "a type change other than an integer widening"
    assert all(v.reason for v in vs.values())


def test_set_not_null_is_prepared_with_a_check_validated_online_and_dropped_after_the_migration():
    v = verdicts(SQL_1_12, lambda t, c: TableShape(t, Column(c, "varchar"), key="id"))[810, "task_id"]
    prep = v.preparation
    assert v.status is Status.PREPARED and prep is not None and prep.swap is None and prep.backfill is None
    check = f"ss_nn_{prep.objects[0].split('_')[-1]}"
    assert texts(prep.setup) == [f'ALTER TABLE "celery_taskmeta" DROP CONSTRAINT IF EXISTS "{check}", ADD CONSTRAINT '
                                 f'"{check}" CHECK ("task_id" IS NOT NULL) NOT VALID']
    assert texts(prep.build) == [f'ALTER TABLE "celery_taskmeta" VALIDATE CONSTRAINT "{check}"']
    assert prep.build[0].autocommit
    assert texts(prep.after_migration) == texts(prep.undo) == [
        f'ALTER TABLE "celery_taskmeta" DROP CONSTRAINT IF EXISTS "{check}"']
    old = verdicts(SQL_1_12, version=110000)[810, "task_id"]
    assert old.status is Status.DOWNTIME and "before 12" in old.reason


def test_demo_v2_total_tokens_is_prepared_the_blocking_index_stays_in_the_downtime():
    vs = verdicts(DEMO_V2, lambda t, c: TableShape(t, Column(c, "int4", not_null=True), key="id", rows=1e6))
    assert [(k, v.status) for k, v in vs.items()] == [((4, "total_tokens"), Status.PREPARED),
                                                      ((5, None), Status.DOWNTIME)]
    assert "CREATE INDEX without CONCURRENTLY" in vs[5, None].reason


def test_a_primary_key_with_its_sequence_and_a_foreign_key_referencing_it():
    [v] = verdicts(WIDEN_PK, accounts_shape).values()
    prep = v.preparation
    assert v.status is Status.PREPARED and prep is not None
    s, t = prep_shadow(prep), tag(prep)
    assert texts(prep.setup) == [
        f'ALTER TABLE "accounts" ADD COLUMN IF NOT EXISTS "{s}" int8',
        f'CREATE OR REPLACE FUNCTION "ss_sync_{t}"() RETURNS trigger LANGUAGE plpgsql AS $ss$ BEGIN NEW."{s}" := '
        f'NEW."id"; RETURN NEW; END $ss$',
        f'DROP TRIGGER IF EXISTS "ss_sync_{t}" ON "accounts"',
        f'CREATE TRIGGER "ss_sync_{t}" BEFORE INSERT OR UPDATE ON "accounts" FOR EACH ROW EXECUTE FUNCTION '
        f'"ss_sync_{t}"()',
        f'ALTER TABLE "accounts" DROP CONSTRAINT IF EXISTS "ss_nn_{t}", ADD CONSTRAINT "ss_nn_{t}" CHECK ("{s}" IS '
        f'NOT NULL) NOT VALID']
    pk = f"accounts_pkey_ss{t}"
    assert texts(prep.build) == [f'DROP INDEX CONCURRENTLY IF EXISTS "{pk}"',
                                 f'CREATE UNIQUE INDEX CONCURRENTLY "{pk}" ON "accounts" ("{s}")',
                                 f'ALTER TABLE "accounts" VALIDATE CONSTRAINT "ss_nn_{t}"']
    assert all(step.autocommit for step in prep.build), "CONCURRENTLY and VALIDATE run outside a transaction"
    assert texts([prep.swap]) == [
        'LOCK TABLE "accounts", "events" IN ACCESS EXCLUSIVE MODE',
        'ALTER TABLE "events" DROP CONSTRAINT "events_account_id_fkey"',
        f'ALTER TABLE "accounts" ALTER COLUMN "{s}" SET NOT NULL',
        f'ALTER TABLE "accounts" DROP CONSTRAINT "ss_nn_{t}"',
        f"ALTER TABLE \"accounts\" ALTER COLUMN \"{s}\" SET DEFAULT nextval('accounts_id_seq'::regclass)",
        f'ALTER SEQUENCE "public"."accounts_id_seq" OWNED BY "accounts"."{s}"',
        f'DROP TRIGGER "ss_sync_{t}" ON "accounts"', f'DROP FUNCTION "ss_sync_{t}"()',
        'ALTER TABLE "accounts" DROP COLUMN "id"', f'ALTER TABLE "accounts" RENAME COLUMN "{s}" TO "id"',
        f'ALTER TABLE "accounts" ADD CONSTRAINT "accounts_pkey" PRIMARY KEY USING INDEX "{pk}"',
        'ALTER TABLE "events" ADD CONSTRAINT "events_account_id_fkey" FOREIGN KEY (account_id) REFERENCES '
        'accounts(id) ON DELETE CASCADE NOT VALID']
    assert texts(prep.after_swap) == ['ALTER TABLE "events" VALIDATE CONSTRAINT "events_account_id_fkey"',
                                      'ANALYZE "accounts" ("id")']
    assert texts(prep.undo) == [f'DROP TRIGGER IF EXISTS "ss_sync_{t}" ON "accounts"',
                                f'DROP FUNCTION IF EXISTS "ss_sync_{t}"()', f'DROP INDEX CONCURRENTLY IF EXISTS "{pk}"',
                                f'ALTER TABLE "accounts" DROP COLUMN IF EXISTS "{s}"']
    assert "1 foreign key(s) re-added NOT VALID and validated" in v.reason and "its sequence" in v.reason


def test_a_foreign_key_the_column_holds_is_dropped_with_it_and_re_added():
    shape = TableShape("events", Column("account_id", "int4", not_null=True), key="id", indexes=(
        Index("ix_events_account_id", ("account_id", "created_at")),), foreign_keys=(ForeignKey(
            "events_account_id_fkey", "events", ("account_id",), "accounts", ("id",),
            "FOREIGN KEY (account_id) REFERENCES accounts(id) NOT VALID"),))
    sql = "ALTER TABLE events ALTER COLUMN account_id TYPE bigint"
    [v] = verdicts(sql, lambda t, c: shape).values()
    swap = texts([v.preparation.swap])
    assert not any("DROP CONSTRAINT \"events_account_id_fkey\"" in s for s in swap), "DROP COLUMN drops it"
    assert swap[-2:] == [f'ALTER INDEX "ix_events_account_id_ss{tag(v.preparation)}" RENAME TO "ix_events_account_id"',
                         'ALTER TABLE "events" ADD CONSTRAINT "events_account_id_fkey" FOREIGN KEY (account_id) '
                         'REFERENCES accounts(id) NOT VALID']
    assert f'("{prep_shadow(v.preparation)}", "created_at")' in texts(v.preparation.build)[1]


def test_what_the_preparation_cannot_carry_over_keeps_the_statement_in_the_downtime():
    base = Column("id", "int4", not_null=True)
    cases = {
        "an identity column: its sequence cannot follow the swap": TableShape("t", Column(
            "id", "int4", identity=True), key="id"),
        "no single-column primary key to batch the backfill by": TableShape("t", base, key=None),
        "int8 → int8 is not an integer widening": TableShape("t", Column("id", "int8"), key="id"),
        "index t_lower is not a plain btree on columns": TableShape("t", base, key="id", indexes=(
            Index("t_lower", ("id",), plain=False),)),
        "view v uses the column": TableShape("t", base, key="id", blockers=("view v uses the column",)),
        "a partitioned table": TableShape("t", base, key="id", partitioned=True),
    }
    for reason, shape in cases.items():
        [v] = verdicts("ALTER TABLE t ALTER COLUMN id TYPE bigint", lambda t, c, s=shape: s).values()
        assert (v.status, v.reason) == (Status.DOWNTIME, reason)
    using = verdicts("ALTER TABLE t ALTER COLUMN id TYPE bigint USING id::bigint", accounts_shape)
    assert [v.reason for v in using.values()] == ["a USING expression computes new values"]
    mixed = verdicts("ALTER TABLE t ALTER COLUMN id TYPE bigint, ADD COLUMN x int DEFAULT random()::int")
    assert [v.reason for v in mixed.values()] == ["the statement also does AT_AddColumn"]
    twice = verdicts("ALTER TABLE t ALTER COLUMN id TYPE bigint;\nALTER TABLE t ALTER COLUMN id SET NOT NULL")
    assert [v.status for v in twice.values()] == [Status.CANDIDATE, Status.DOWNTIME]


def test_batch_size_and_summary_follow_the_settings():
    [v] = plan(analyse(WIDEN_PK), accounts_shape, OnlineSettings(batch_rows=50_000)).verdicts
    assert "~21 batches of 50,000" in v.reason


def test_analyze_migrations_online_lists_the_verdicts_and_without_it_the_report_is_unchanged(capsys):
    import json

    from cli.main import main
    sql = str(DIFY / "migrate.0.15.3-to-1.12.1.sql")
    assert main(["analyze-migrations", "--sql", sql, "--json"]) == 3  # 3: the data loss the gate finds
    assert "online" not in json.loads(capsys.readouterr().out)
    assert main(["analyze-migrations", "--sql", sql, "--json", "--online"]) == 3
    online = json.loads(capsys.readouterr().out)["online"]
    assert len(online) == 27 and sum(v["status"] == "in the downtime" for v in online) == 24
    assert all(v["reason"] for v in online)
    assert main(["analyze-migrations", "--sql", sql, "--online"]) == 3
    out = capsys.readouterr().out
    assert "## Online preparation" in out and "line 810: celery_taskmeta.task_id: online candidate" in out
