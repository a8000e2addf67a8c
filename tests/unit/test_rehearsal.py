"""The rehearsal's pure parts: names, SQL, argv, reading the server's log back into SQL the rules analyse."""
from pathlib import Path

import pytest

from core import rehearsal as rh
from core import sqlrules
from core.errors import RehearsalUnavailable

PREFIX = "%m [%p] "
LOG = """\
2026-11-30 17:00:00.001 UTC [41] LOG:  checkpoint starting: time
2026-11-30 17:00:01.100 UTC [77] LOG:  statement: BEGIN
2026-11-30 17:00:01.101 UTC [77] LOG:  statement: select pg_catalog.version()
2026-11-30 17:00:01.102 UTC [77] LOG:  statement: SELECT alembic_version.version_num
\tFROM alembic_version
2026-11-30 17:00:01.200 UTC [77] LOG:  statement: CREATE INDEX index_metrics_run_uuid ON metrics (run_uuid)
2026-11-30 17:00:01.300 UTC [77] LOG:  statement: UPDATE alembic_version SET version_num='r2' WHERE alembic_version.version_num = 'r1'
2026-11-30 17:00:01.400 UTC [77] LOG:  statement: ALTER TABLE experiments
  DROP CONSTRAINT experiment_pk
2026-11-30 17:00:01.401 UTC [77] LOG:  execute <unnamed>: ALTER TABLE experiments ADD CONSTRAINT experiment_pk PRIMARY KEY (experiment_id, workspace)
2026-11-30 17:00:01.401 UTC [77] DETAIL:  parameters: $1 = 'x'
2026-11-30 17:00:01.500 UTC [77] LOG:  statement: UPDATE alembic_version SET version_num='r3' WHERE alembic_version.version_num = 'r2'
2026-11-30 17:00:01.600 UTC [77] LOG:  statement: COMMIT
2026-11-30 17:00:01.700 UTC [78] ERROR:  relation "nope" does not exist at character 15
2026-11-30 17:00:01.700 UTC [78] STATEMENT:  SELECT * FROM nope
"""


def test_the_log_becomes_sql_marked_by_revision_that_the_rules_analyse():
    entries = rh.parse_log(LOG, PREFIX)
    assert [e.level for e in entries][:2] == ["LOG", "LOG"] and entries[-1].level == "STATEMENT"
    statements = rh.executed(entries)
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
    assert not any(s.lower().startswith("select") for s in statements), "read-only queries are left out"
    assert "ALTER TABLE experiments\n  DROP CONSTRAINT experiment_pk" in statements, "continuation lines belong"
    sql, revisions = rh.as_sql(statements)
    assert revisions == ["r2", "r3"]
    assert sql.index("-- Running upgrade r1 -> r2") < sql.index("CREATE INDEX") < sql.index("-- Running upgrade r2 -> r3")
    findings = sqlrules.analyse(sql).findings
    by_sql = {f.sql.split()[0] + " " + (f.table or ""): f for f in findings}
    index = next(f for f in findings if f.sql.startswith("CREATE INDEX"))
    assert (index.revision, index.table, index.lock) == ("r2", "metrics", "SHARE")
    pk = [f for f in findings if "experiment_pk" in f.sql]
    assert {f.revision for f in pk} == {"r3"} and all(f.lock == "ACCESS EXCLUSIVE" for f in pk)
    assert by_sql and rh.server_errors(entries) == ['relation "nope" does not exist at character 15']


def test_a_first_revision_inserts_the_version_row():
    sql, revisions = rh.as_sql(["CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)",
                                "CREATE TABLE t (id int)", "INSERT INTO alembic_version (version_num) VALUES ('a1')"])
    assert revisions == ["a1"] and sql.startswith("-- Running upgrade  -> a1")


@pytest.mark.parametrize("prefix, line, matches", [
    ("%m [%p] ", "2026-11-30 17:00:01.100 UTC [77] LOG:  statement: x", True),
    ("%t [%p]: [%l-1] user=%u,db=%d ", "2026-11-30 17:00:01 UTC [77]: [3-1] user=m,db=x LOG:  statement: x", True),
    ("%m [%p] ", "  ALTER TABLE x", False),
    ("%%%m %-10u|", "%2026-11-30 17:00:01.1 UTC mlflow    |LOG:  statement: x", True),
])
def test_entries_are_recognised_by_the_servers_own_prefix(prefix, line, matches):
    assert bool(rh.parse_log(line, prefix)) is matches


def test_offline_rendering_counts_only_revisions_it_finished():
    text = "BEGIN;\n-- Running upgrade a -> b\n\nCREATE TABLE x (i int);\n-- Running upgrade b -> c\n\nALTER"
    assert rh.rendered_revisions(text, complete=True) == ["b", "c"]
    assert rh.rendered_revisions(text, complete=False) == ["b"], "the revision it stopped in is not rendered"
    assert rh.rendered_revisions("", complete=False) == []


def test_server_settings_the_rehearsal_needs():
    rh.check_server("stderr", "off", "%m [%p] ", "none", True)
    rh.check_server("stderr,csvlog", "off", "%m [%p] ", "ddl", True)
    for args, needle in [(("stderr", "off", "%m ", "none", False), "superuser"),
                         (("csvlog", "off", "%m ", "none", True), "stderr"),
                         (("stderr", "on", "%m ", "none", True), "logging_collector"),
                         (("stderr", "off", "%m ", "all", True), "log_statement=all")]:
        with pytest.raises(RehearsalUnavailable, match=needle):
            rh.check_server(*args)


def test_names_statements_and_argv_are_data_without_secrets():
    name = rh.database_name("mlflow", "ab12cd34")
    assert name == "mlflow__ss_rh_ab12cd34"
    assert rh.create_statements(name)[-1] == 'CREATE DATABASE "mlflow__ss_rh_ab12cd34"'
    assert rh.drop_statements(name)[-1] == 'DROP DATABASE IF EXISTS "mlflow__ss_rh_ab12cd34"'
    assert rh.log_statements_sql(name) == 'ALTER DATABASE "mlflow__ss_rh_ab12cd34" SET log_statement = \'all\''
    dump = rh.dump_schema("127.0.0.1", 5432, "mlflow", "mlflow", Path("/s/schema.dump"))
    assert "--schema-only" in dump and "--no-password" in dump
    versions = rh.dump_versions("127.0.0.1", 5432, "mlflow", "mlflow", Path("/s/v.dump"))
    assert versions[versions.index("--table") + 1] == "alembic_version" and "--data-only" in versions
    restore = rh.restore("127.0.0.1", 5432, "mlflow", name, Path("/s/schema.dump"))
    assert restore[restore.index("--dbname") + 1] == name and "--exit-on-error" in restore
    assert rh.fill(["mlflow", "db", "upgrade", "postgresql+psycopg2://u@db/{database}"], name)[-1].endswith(name)
    assert rh.fill({"DB_DATABASE": "{database}"}, name) == {"DB_DATABASE": name}
    assert rh.leftovers("mlflow", {"mlflow", name, "other__ss_rh_1", "mlflow__ss_rb_x"}) == [name]


def test_the_report_lists_every_revision_and_the_primary_key_changes_with_their_locks():
    from core import migcheck
    from core.report import migration_markdown
    from core.revgraph import RevisionState

    sql, revisions = rh.as_sql(rh.executed(rh.parse_log(LOG, PREFIX)))
    report = migcheck.analyze(sql, revisions=RevisionState(["r1"], "r3", ["r2", "r3"], []))
    report.sources = {"rendered": ["r2"], "rehearsed": revisions, "not_analysed": [], "analysed_from": "rehearsal",
                      "render_error": "exit 1: NoInspectionAvailable", "rehearsal": {
                          "database": "m__ss_rh_x", "seconds": 1.5, "statements": 6, "dropped": True, "notes": []}}
    text = migration_markdown(report, "t", [])
    assert "## Pending revisions (2): 1 rendered offline, 2 rehearsed" in text
    assert "| 1 | `r2` | yes | yes |" in text and "| 2 | `r3` | **no** | yes |" in text
    drop = next(line for line in text.splitlines() if "| r3 | experiments |" in line and "none" in line)
    assert "ACCESS EXCLUSIVE" in drop, "a primary key dropped blocks writes: listed though no rule fires"
    assert "`ALTER TABLE experiments DROP CONSTRAINT experiment_pk`" in drop, "the statement, on one line"
    assert "| r3 | experiments | ACCESS EXCLUSIVE | **scan** | MS011" in text
    assert "| r2 | metrics | SHARE | **scan** | MS012" in text
    assert migcheck.gate(report, 60) == []
    report.sources["not_analysed"] = ["r3"]
    assert "could not be analysed" in migcheck.gate(report, 60)[0]
