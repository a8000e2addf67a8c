"""The MS rules on pglast's parse tree: the real Dify migration SQL, and one case per rule."""
import collections

import pytest

from core.migrations import forecast

from core.migrations import migcheck
from core.migrations.pgcatalog import Rates
from core.migrations.sqlrules import AE, SHARE, SRE, SUE, ColumnType, TableInfo, analyse, rewrite_needed
from tests.conftest import DIFY

SQL_0_15 = (DIFY / "migrate.0.14.2-to-0.15.3.sql").read_text()
SQL_1_12 = (DIFY / "migrate.0.15.3-to-1.12.1.sql").read_text()


def by_line(analysis, text):
    [f] = [f for f in analysis.findings if f.sql.startswith(text)]
    return f


def test_dify_0_15_workflow_runs_rewrite_under_access_exclusive():
    a = analyse(SQL_0_15)
    assert len(a.findings) == 12
    f = by_line(a, "ALTER TABLE workflow_runs ALTER COLUMN total_tokens TYPE BIGINT")
    assert (f.table, f.lock, f.effect, f.revision, f.line) == ("workflow_runs", AE, "rewrite", "a91b476a53de", 53)
    assert f.rules == ["MS001", "MS024"] and "batches" in f.safe_alternative
    # The two new tables and their indexes: exempt from size rules, nothing else flagged.
    assert a.created_tables == {"child_chunks", "dataset_auto_disable_logs"}
    assert [g.index for g in a.findings if g.rules] == [f.index]
    assert any("lock_timeout" in w for w in a.warnings)


def test_dify_1_12_statement_shape_matches_the_fixture_readme():
    a = analyse(SQL_1_12)
    kinds = collections.Counter(f.statement for f in a.findings)
    assert len(a.findings) == 224
    assert kinds["AlterTableStmt"] == 57 and kinds["CreateStmt"] == 40 and kinds["IndexStmt"] == 54
    assert kinds["UpdateStmt"] == 45 and kinds["TransactionStmt"] == 4 and kinds["DropStmt"] == 3
    assert "unparsable" not in kinds


def test_dify_1_12_skipped_data_migration_then_drop_column_is_data_loss():
    a = analyse(SQL_1_12)
    lost = [f for f in a.findings if f.effect == "data-loss"]
    assert [(f.table, f.revision) for f in lost] == [("providers", "e8446f481c1e"), ("provider_models", "0e154742a5fa")]
    assert all("DROP COLUMN encrypted_config" in f.sql and "MS020" in f.rules for f in lost)
    assert sum("Data migration skipped" in w for w in a.warnings) == 2
    # Other drops are ordinary (no marker in their revision): MS020, not data loss.
    other = by_line(a, "ALTER TABLE workflow_runs DROP COLUMN sequence_number")
    assert other.effect == "none" and other.rules[0] == "MS020"
    report = migcheck.analyze(SQL_1_12)
    assert len(migcheck.gate(report, max_lock_seconds=None)) == 2


def test_dify_1_12_verdicts_on_preexisting_tables():
    a = analyse(SQL_1_12)
    docs = by_line(a, "ALTER TABLE documents ALTER COLUMN doc_metadata TYPE JSONB")
    assert (docs.effect, docs.rules) == ("rewrite", ["MS001", "MS025"])  # nothing is binary-coercible to jsonb
    widen = by_line(a, "ALTER TABLE dataset_collection_bindings ALTER COLUMN provider_name TYPE VARCHAR(255)")
    assert (widen.effect, widen.rules[0]) == ("unknown", "MS001")  # offline the current type is unknown
    cic = by_line(a, "CREATE INDEX CONCURRENTLY workflow_node_executions_tenant_id_idx")
    assert (cic.lock, cic.rules, cic.transaction) == (SUE, ["MS014"], None)  # autocommit block: no MS013
    gin = by_line(a, "CREATE INDEX document_metadata_idx ON documents USING gin")
    assert (gin.lock, gin.rules) == (SHARE, ["MS012"])  # documents is already locked: MS025 is on the ALTER
    for table in ("celery_taskmeta", "celery_tasksetmeta", "message_annotations"):
        assert any(f.table == table and "MS007" in f.rules and f.effect == "scan" for f in a.findings), table
    updates = [f for f in a.findings if f.table == "message_annotations" and f.statement == "UpdateStmt"]
    assert len(updates) == 2 and all("MS023" in f.rules for f in updates)
    unique = by_line(a, "ALTER TABLE tool_builtin_providers ADD CONSTRAINT")
    assert "MS011" in unique.rules
    assert sum(f.statement == "IndexStmt" and "MS012" in f.rules for f in a.findings) == 10
    # Dify's runner uses one transaction: early locks are held while later revisions work (MS025), reported where
    # the lock is first taken.
    assert "MS025" in by_line(a, "ALTER TABLE datasets ADD COLUMN built_in_field_enabled").rules
    assert "MS025" in by_line(a, "ALTER TABLE datasets ADD COLUMN keyword_number").rules  # after the CIC: a new tx
    assert "MS025" not in by_line(a, "ALTER TABLE datasets ADD COLUMN runtime_mode").rules  # same tx, lock held
    assert all(f.table != "alembic_version" or not f.rules for f in a.findings)


def test_tables_created_in_the_run_are_exempt_from_size_rules():
    a = analyse(SQL_1_12)
    narrow = by_line(a, "ALTER TABLE tool_mcp_providers ALTER COLUMN server_identifier TYPE VARCHAR(64)")
    assert narrow.rules == [] and narrow.effect == "none" and "tool_mcp_providers" in a.created_tables
    idx = by_line(a, "CREATE INDEX workflow_draft_variable_file_id_idx")
    assert idx.rules == [] and idx.lock == SHARE


def test_unparsable_statement_is_reported_not_skipped():
    sql = ("BEGIN;\nALTER TABLE a ADD COLUMN b int;\nALTER TABLE a FROBNICATE c;\nALTER TABLE a DROP COLUMN d;\n"
           "COMMIT;\n")
    a = analyse(sql)
    assert [f.statement for f in a.findings] == ["TransactionStmt", "AlterTableStmt", "unparsable", "AlterTableStmt",
                                                 "TransactionStmt"]
    bad = a.findings[2]
    assert (bad.effect, bad.line) == ("unknown", 3) and "not analysable" in bad.notes[0]
    assert any("statement 3 (line 3) is not analysable" in w for w in a.warnings)


CASES = [
    ("ALTER TABLE t ALTER COLUMN c TYPE bigint", "MS001", AE, "rewrite"),
    ("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()", "MS003", AE, "rewrite"),
    ("ALTER TABLE t ADD COLUMN c bigserial", "MS003", AE, "rewrite"),
    ("ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a + 1) STORED", "MS004", AE, "rewrite"),
    ("ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS IDENTITY", "MS004", AE, "rewrite"),
    ("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()", "MS005", AE, "none"),
    ("ALTER TABLE t ADD COLUMN c int NOT NULL", "MS006", AE, "none"),
    ("ALTER TABLE t ALTER COLUMN c SET NOT NULL", "MS007", AE, "scan"),
    ("ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0)", "MS008", AE, "scan"),
    ("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (c) REFERENCES u (id)", "MS009", SRE, "scan"),
    ("ALTER TABLE t VALIDATE CONSTRAINT f", "MS010", SUE, "scan"),
    ("ALTER TABLE t ADD CONSTRAINT u UNIQUE (c)", "MS011", AE, "scan"),
    ("CREATE INDEX i ON t (c)", "MS012", SHARE, "scan"),
    ("CREATE INDEX CONCURRENTLY i ON t (c)", "MS014", SUE, "scan"),
    ("DROP INDEX i", "MS015", AE, "none"),
    ("ALTER TABLE t ADD CONSTRAINT x EXCLUDE USING gist (c WITH &&)", "MS016", AE, "scan"),
    ("VACUUM FULL t", "MS017", AE, "rewrite"),
    ("CLUSTER t USING i", "MS017", AE, "rewrite"),
    ("ALTER TABLE t SET TABLESPACE other", "MS017", AE, "rewrite"),
    ("REINDEX TABLE t", "MS018", SHARE, "rewrite"),
    ("ALTER TABLE t RENAME COLUMN a TO b", "MS019", AE, "none"),
    ("ALTER TABLE t DROP COLUMN c", "MS020", AE, "none"),
    ("DROP TABLE t", "MS020", AE, "none"),
    ("ALTER TABLE p ATTACH PARTITION c FOR VALUES IN (1)", "MS021", SUE, "scan"),
    ("ALTER TABLE p DETACH PARTITION c", "MS022", AE, "none"),
    ("UPDATE t SET c = 0 WHERE c IS NULL", "MS023", "ROW EXCLUSIVE", "rewrite"),
]


@pytest.mark.parametrize("sql,rule,lock,effect", CASES, ids=[c[1] + ":" + c[0][:40] for c in CASES])
def test_rule(sql, rule, lock, effect):
    f = analyse("SET lock_timeout = '2s';\n" + sql + ";").findings[1]
    assert rule in f.rules and (f.lock, f.effect) == (lock, effect), f
    assert f.safe_alternative


def test_safe_forms_are_not_flagged():
    for sql in ("ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0) NOT VALID",
                "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (c) REFERENCES u (id) NOT VALID",
                "ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX ui", "ALTER TABLE t ADD COLUMN c text",
                "UPDATE t SET c = 0 WHERE id = 42", "DROP INDEX CONCURRENTLY i"):
        f = analyse("SET lock_timeout = '2s';\n" + sql + ";").findings[1]
        assert f.rules == [] and f.effect == "none", sql


def test_concurrently_inside_a_transaction_will_fail_ms013():
    a = analyse("BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (c);\nDROP INDEX CONCURRENTLY j;\nCOMMIT;")
    assert "MS013" in a.findings[1].rules and "MS013" in a.findings[2].rules


def test_missing_lock_timeout_ms024_and_single_transaction_accumulation_ms025():
    sql = ("BEGIN;\n-- Running upgrade a -> b\nALTER TABLE t RENAME COLUMN x TO y;\n"
           "-- Running upgrade b -> c\nALTER TABLE u ALTER COLUMN n TYPE bigint;\nCOMMIT;\n")
    a = analyse(sql)
    rename, alter = a.findings[1], a.findings[2]
    assert rename.rules == ["MS019", "MS024", "MS025"] and (rename.revision, alter.revision) == ("b", "c")
    assert "MS024" not in alter.rules  # reported once, on the first statement that queues
    per_revision = analyse(sql.replace("ALTER TABLE t RENAME", "COMMIT;\nBEGIN;\nALTER TABLE t RENAME")
                           .replace("-- Running upgrade b -> c", "COMMIT;\nBEGIN;\n-- Running upgrade b -> c"))
    assert not any("MS025" in f.rules for f in per_revision.findings)


@pytest.mark.parametrize("old,new,expected", [
    (ColumnType("int4"), ColumnType("int8"), True),
    (ColumnType("varchar", (40,)), ColumnType("varchar", (255,)), False),
    (ColumnType("varchar", (255,)), ColumnType("varchar", (128,)), True),
    (ColumnType("varchar", (40,)), ColumnType("text"), False),
    (ColumnType("text"), ColumnType("varchar", (512,)), True),
    (ColumnType("text"), ColumnType("varchar"), False),
    (ColumnType("numeric", (10, 2)), ColumnType("numeric", (12, 2)), False),
    (ColumnType("numeric", (10, 2)), ColumnType("numeric", (12, 4)), True),
    (ColumnType("json"), ColumnType("jsonb"), True),
    (ColumnType("cidr"), ColumnType("inet"), False),
    (ColumnType("timestamp", (3,)), ColumnType("timestamp", (6,)), False),
    (ColumnType("varchar", (40,), True), ColumnType("json"), True),
    (None, ColumnType("int8"), True),
    (None, ColumnType("varchar", (255,)), None),
])
def test_rewrite_decision(old, new, expected):
    assert rewrite_needed(old, new, using=False) is expected


class FixedCatalog:
    server_version_num = 150000
    server_version = "15"
    utc_session = False

    def __init__(self, tables):
        self.tables = tables

    def table(self, name):
        return self.tables.get(name)

    def volatile(self, fn):
        return None

    def binary_coercible(self, a, b):
        return None


def test_lock_hold_accumulates_to_commit_and_forecast_scales_with_size():
    rates = Rates((100e6, 50e6), (1000e6, 500e6), (20e6, 10e6), 300_000, 30_000_000, 1.0)
    big = TableInfo(1_000_000_000, 0, 0, 0, 10_000_000, {"n": ColumnType("int4")})
    small = TableInfo(1_000_000, 0, 0, 0, 10_000, {"x": ColumnType("int4")})
    sql = ("BEGIN;\nALTER TABLE small RENAME COLUMN x TO y;\nALTER TABLE big ALTER COLUMN n TYPE bigint;\n"
           "CREATE INDEX i ON big (n);\nCOMMIT;\nALTER TABLE big ALTER COLUMN n TYPE int8;\n")
    catalog = FixedCatalog({"small": small, "big": big})
    a = analyse(sql, catalog)
    hold, warnings = forecast.apply(a, catalog, rates)
    rewrite = a.findings[2].forecast_seconds
    assert rewrite == {"low": round(1e9 / 100e6 * 0.8, 3), "high": round(1e9 / 50e6 * 1.3, 3)}
    index = a.findings[3].forecast_seconds["high"]
    # The rename's lock on `small` lasts through the rewrite and the index build of `big`.
    assert hold["small"] == pytest.approx(rewrite["high"] + index, abs=0.01)
    assert hold["big"] == pytest.approx(rewrite["high"] + index, abs=0.01)  # the longer of its two holds
    report = migcheck.MigrationReport(a.findings, hold, warnings)
    assert migcheck.gate(report, 10.0) and not migcheck.gate(report, 1000.0)
