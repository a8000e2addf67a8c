"""The rehearsal's pure parts: names, SQL, argv, reading the server's log back into SQL the rules analyse."""
import json
from pathlib import Path

import pytest
from prefect.types import SecretDict

from core.migrations import rehearsal as rh
from core.migrations import sqlrules
from core.errors import RehearsalUnavailable
from core.io.pgsql import as_text

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
"""  # noqa: E501 (verbatim PostgreSQL log lines: the parser reads them as the server writes them)


def test_the_log_becomes_sql_marked_by_revision_that_the_rules_analyse():
    entries = rh.parse_log(LOG, PREFIX)
    assert [e.level for e in entries][:2] == ["LOG", "LOG"] and entries[-1].level == "STATEMENT"
    statements = rh.executed(entries)
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
    assert not any(s.lower().startswith("select") for s in statements), "read-only queries are left out"
    assert "ALTER TABLE experiments\n  DROP CONSTRAINT experiment_pk" in statements, "continuation lines belong"
    sql, revisions = rh.as_sql(statements)
    assert revisions == ["r2", "r3"]
    assert (sql.index("-- Running upgrade r1 -> r2") < sql.index("CREATE INDEX")
            < sql.index("-- Running upgrade r2 -> r3"))
    findings = sqlrules.analyse(sql).findings
    by_sql = {f.sql.split()[0] + " " + (f.table or ""): f for f in findings}
    index = next(f for f in findings if f.sql.startswith("CREATE INDEX"))
    assert (index.revision, index.table, index.lock) == ("r2", "metrics", "SHARE")
    pk = [f for f in findings if "experiment_pk" in f.sql]
    assert {f.revision for f in pk} == {"r3"} and all(f.lock == "ACCESS EXCLUSIVE" for f in pk)
    assert len(by_sql) >= 2 and rh.server_errors(entries) == ['relation "nope" does not exist at character 15']


def test_a_first_revision_inserts_the_version_row():
    sql, revisions = rh.as_sql(["CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)",
                                "CREATE TABLE t (id int)", "INSERT INTO alembic_version (version_num) VALUES ('a1')"])
    assert revisions == ["a1"] and sql.startswith("-- Running upgrade  -> a1")


@pytest.mark.parametrize("prefix, line, matches", [
    ("%m [%p] ", "2026-11-30 17:00:01.100 UTC [77] LOG:  statement: x", True),
    ("%t [%p]: [%l-1] user=%u,db=%d ", "2026-11-30 17:00:01 UTC [77]: [3-1] user=m,db=x LOG:  statement: x", True),
    ("%m [%p] ", "  ALTER TABLE x", False),
    ("%%%m %-10u|", "%2026-11-30 17:00:01.1 UTC mlflow    |LOG:  statement: x", True),
    # Debian's default: background processes write only the part before %q
    ("%m [%p] %q%u@%d ", "2026-11-30 17:00:01.1 UTC [41] LOG:  checkpoint starting: time", True),
    ("%m [%p] %q%u@%d ", "2026-11-30 17:00:01.1 UTC [77] mlflow@m__ss_rh_1 LOG:  statement: x", True),
])
def test_entries_are_recognised_by_the_servers_own_prefix(prefix, line, matches):
    assert bool(rh.parse_log(line, prefix)) is matches


def test_entries_of_other_databases_are_left_out_when_the_prefix_names_the_database():
    prefix = "%m [%p] %q%u@%d "
    log = ("2026-11-30 17:00:00.0 UTC [41] LOG:  checkpoint starting: time\n"
           "2026-11-30 17:00:00.1 UTC [70] mlflow@mlflow LOG:  statement: ALTER ROLE app PASSWORD 'secret'\n"
           "2026-11-30 17:00:00.2 UTC [70] mlflow@postgres LOG:  statement: ALTER DATABASE \"m__ss_rh_1\" SET x = 1\n"
           "2026-11-30 17:00:01.1 UTC [77] mlflow@m__ss_rh_1 LOG:  statement: CREATE TABLE t (i int)\n"
           "2026-11-30 17:00:01.2 UTC [41] LOG:  checkpoint complete: wrote 3 buffers\n"
           "2026-11-30 17:00:01.3 UTC [77] mlflow@m__ss_rh_1 LOG:  statement: DROP TABLE t\n")
    entries = rh.parse_log(log, prefix)
    assert [e.database for e in entries] == [None, "mlflow", "postgres", "m__ss_rh_1", None, "m__ss_rh_1"]
    assert rh.executed(entries, "m__ss_rh_1") == ["CREATE TABLE t (i int)", "DROP TABLE t"], \
        "a checkpoint line is an entry of its own, not the end of a statement; other databases' DDL is not ours"


def test_offline_rendering_counts_only_revisions_it_finished():
    text = "BEGIN;\n-- Running upgrade a -> b\n\nCREATE TABLE x (i int);\n-- Running upgrade b -> c\n\nALTER"
    assert rh.rendered_revisions(text, complete=True) == ["b", "c"]
    assert rh.rendered_revisions(text, complete=False) == ["b"], "the revision it stopped in is not rendered"
    assert rh.rendered_revisions("", complete=False) == []


def test_server_settings_the_rehearsal_needs():
    rh.check_server("stderr", "off", "%m [%p] ", "none", True)
    rh.check_server("stderr,csvlog", "off", "%m [%p] %d ", "ddl", True)
    for args, needle in [(("stderr", "off", "%m [%p] ", "ddl", True), "does not name the database"),
                         (("stderr", "off", "%m ", "none", False), "superuser"),
                         (("csvlog", "off", "%m ", "none", True), "stderr"),
                         (("stderr", "on", "%m ", "none", True), "logging_collector"),
                         (("stderr", "off", "%m ", "all", True), "log_statement=all")]:
        with pytest.raises(RehearsalUnavailable, match=needle):
            rh.check_server(*args)


def test_names_statements_and_argv_are_data_without_secrets():
    name = rh.database_name("mlflow", "ab12cd34")
    assert name == "mlflow__ss_rh_ab12cd34"
    assert as_text(rh.create_statements(name)[-1]) == 'CREATE DATABASE "mlflow__ss_rh_ab12cd34"'
    assert as_text(rh.drop_statements(name)[-1]) == 'DROP DATABASE IF EXISTS "mlflow__ss_rh_ab12cd34" WITH (FORCE)'
    assert as_text(rh.log_statements_sql(name)) == 'ALTER DATABASE "mlflow__ss_rh_ab12cd34" SET log_statement = \'all\''
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
    from core.migrations import migcheck
    from core.report import migration_markdown
    from core.migrations.revgraph import RevisionState

    sql, revisions = rh.as_sql(rh.executed(rh.parse_log(LOG, PREFIX)))
    report = migcheck.analyze(sql, revisions=RevisionState(["r1"], "r3", ["r2", "r3"], []))
    report.sources = {"rendered": ["r2"], "rehearsed": revisions, "not_analysed": [], "analysed_from": "rehearsal",
                      "render_error": "exit 1: NoInspectionAvailable", "rehearsal": {
                          "database": "m__ss_rh_x", "seconds": 1.5, "statements": 6, "dropped": True, "notes": []}}
    text = migration_markdown(report, "t", [])
    assert "## Pending revisions (2): 1 rendered offline in full, 2 rehearsed" in text
    assert "| 1 | `r2` | yes | yes |" in text and "| 2 | `r3` | **no** | yes |" in text
    drop = next(line for line in text.splitlines() if "| r3 | experiments |" in line and "none" in line)
    assert "ACCESS EXCLUSIVE" in drop, "a primary key dropped blocks writes: listed though no rule fires"
    assert "`ALTER TABLE experiments DROP CONSTRAINT experiment_pk`" in drop, "the statement, on one line"
    assert "| r3 | experiments | ACCESS EXCLUSIVE | **scan** | MS011" in text
    assert "| r2 | metrics | SHARE | **scan** | MS012" in text
    assert "the database was dropped afterwards" in text
    report.sources["rehearsal"]["dropped"] = False
    assert "**the database could not be dropped**" in migration_markdown(report, "t", [])
    assert migcheck.gate(report, 60) == []
    report.sources["not_analysed"] = ["r3"]
    assert "could not be analysed" in migcheck.gate(report, 60)[0]


# --- rehearse() against a recording stand-in for the stack's I/O (the real run is the MLflow e2e test) ----------
class RecordingIO:
    """Named so: records what the rehearsal asks of the stack's I/O; `fail` makes the migration's command raise."""

    def __init__(self, fail: BaseException | None = None):
        self.sql_calls, self.commands, self.fail, self.dbs = [], [], fail, {"mlflow", "postgres"}
        self.db = self

    def connect(self, dbname):
        class Conn:
            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

            def execute(self, sql):
                class R:
                    def fetchone(self):
                        return ("stderr", "off", "%m [%p] %q%u@%d ", "none", True) if "log_destination" in sql \
                            else ("%m [%p] %q%u@%d ",)
                return R()
        return Conn()

    def sql(self, statements):
        statements = [as_text(s) for s in statements]
        self.sql_calls.append(statements)
        for st in statements:
            if st.startswith("CREATE DATABASE"):
                self.dbs.add(st.split('"')[1])
            if st.startswith("DROP DATABASE"):
                self.dbs.discard(st.split('"')[1])

    def databases(self):
        return set(self.dbs)

    def revisions(self, dbname):
        return ["r1"]

    def run(self, cmd, db_password=False):
        from types import SimpleNamespace
        self.commands.append(cmd)
        if "run" in cmd.argv and "upgrade" in cmd.argv and self.fail is not None:
            raise self.fail
        out = ("2026-11-30 17:00:01.1 UTC [77] u@m__ss_rh_run1 LOG:  statement: CREATE TABLE t (i int)\n"
               "2026-11-30 17:00:01.2 UTC [77] u@m__ss_rh_run1 LOG:  statement: UPDATE alembic_version SET "
               "version_num='r2' WHERE alembic_version.version_num = 'r1'\n") if "logs" in cmd.argv else \
            "c0ffee\n" if cmd.argv[:3] == ["docker", "container", "ls"] else ""
        return SimpleNamespace(stdout=out)


def _facts(tmp_path, **kw):
    from tests.unit.test_plan import facts
    return facts(**({"db_name": "m", "run_id": "run1", "db_services": ["db"], "migrate_service": "api",
                     "rehearsal_command": ["app", "upgrade", "postgresql://u@db/{database}"],
                     "pending_revisions": ["r2"], "db_revision": ["r1"]} | kw))


ENV = SecretDict({"DB_URL": "postgresql://u:pw-secret@db/{database}"})


def test_a_rehearsal_passes_its_env_by_name_and_drops_its_database(tmp_path):
    io, f = RecordingIO(), _facts(tmp_path)
    assert "pw-secret" not in json.dumps(f.to_dict()), "the facts (plan.json) never hold the rehearsal's env"
    done = rh.rehearse(io, f, tmp_path / "scratch", ENV)
    assert done.revisions == ["r2"] and done.dropped and "m__ss_rh_run1" not in io.dbs
    assert not (tmp_path / "scratch").exists(), "the schema dump and the override go with the database"
    migration = next(c for c in io.commands if "upgrade" in c.argv)
    assert "pw-secret" not in " ".join(migration.argv) and migration.argv[migration.argv.index("DB_URL") - 1] == "--env"
    assert migration.env == {"DB_URL": "postgresql://u:pw-secret@db/m__ss_rh_run1"}


@pytest.mark.parametrize("fail", [KeyboardInterrupt(), SystemExit(143)])
def test_an_interrupted_rehearsal_still_drops_its_database(tmp_path, fail):
    io = RecordingIO(fail)
    with pytest.raises(type(fail)):
        rh.rehearse(io, _facts(tmp_path), tmp_path / "scratch", ENV)
    assert "m__ss_rh_run1" not in io.dbs and io.sql_calls[-1][-1].startswith("DROP DATABASE")
    assert not (tmp_path / "scratch").exists()
    listed = next(c for c in io.commands if c.argv[:3] == ["docker", "container", "ls"])
    assert "io.stackshift.run=run1" in listed.argv[-1], "the run's one-off container (a killed client leaves it)"
    assert any("c0ffee" in c.argv and "rm" in " ".join(c.argv) for c in io.commands), "... is removed"


def test_a_failed_or_timed_out_rehearsal_is_told_apart(tmp_path):
    from core.errors import CommandFailed, CommandTimedOut, RehearsalFailed
    with pytest.raises(RehearsalFailed, match="boom"):
        rh.rehearse(RecordingIO(CommandFailed(["x"], 1, "boom")), _facts(tmp_path), tmp_path / "s")
    with pytest.raises(RehearsalUnavailable, match="did not finish within"):
        rh.rehearse(RecordingIO(CommandTimedOut(["x"], 5)), _facts(tmp_path), tmp_path / "s")


def test_a_rehearsal_command_not_pointed_at_the_copy_is_refused_before_anything(tmp_path):
    io = RecordingIO()
    with pytest.raises(RehearsalUnavailable, match="would migrate the live database"):
        rh.rehearse(io, _facts(tmp_path, rehearsal_command=["flask", "db", "upgrade"]), tmp_path / "s",
                    SecretDict({"DB_URL": "postgresql://u:pw@db/app"}))
    assert io.sql_calls == [] and io.commands == []
