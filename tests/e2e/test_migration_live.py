"""The migration pre-flight against a real PostgreSQL 15: rewrite verdicts checked by the server itself
(pg_class.relfilenode changes exactly when a table is rewritten), the CLI with a DSN, and bad input."""
import json
import os
import subprocess

import pytest

from core.migrations import pgcatalog
from core.migrations.sqlrules import analyse
from lab.pg import scratch_server
from tests.conftest import DIFY, ROOT

# One worker runs the module (lab/test runs tests in parallel): one scratch server serves the module.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("migration-live")]

# The Dify tables the 0.14.2→1.12.1 SQL changes in place, with their types before it (from the 0.14.2/0.15.3 models).
DIFY_BEFORE = """
CREATE TABLE workflow_runs (id uuid PRIMARY KEY, tenant_id uuid, app_id uuid, total_tokens integer NOT NULL DEFAULT 0,
    sequence_number integer, graph text, created_at timestamp);
CREATE INDEX workflow_run_tenant_app_sequence_idx ON workflow_runs (tenant_id, app_id, sequence_number);
INSERT INTO workflow_runs SELECT md5(g::text)::uuid, md5((g % 50)::text)::uuid, md5((g % 7)::text)::uuid, g, g,
    repeat('{"node": 1}', 20), now() FROM generate_series(1, 200000) g;
CREATE TABLE tool_builtin_providers (id uuid PRIMARY KEY, tenant_id uuid, user_id uuid, provider varchar(40),
    encrypted_credentials text, created_at timestamp, updated_at timestamp);
CREATE TABLE dataset_collection_bindings (id uuid PRIMARY KEY, provider_name varchar(40), model_name varchar(255));
CREATE TABLE tool_api_providers (id uuid PRIMARY KEY, name varchar(40));
CREATE TABLE tool_model_invokes (id uuid PRIMARY KEY, provider varchar(40), tool_name varchar(40));
CREATE TABLE tool_workflow_providers (id uuid PRIMARY KEY, name varchar(40));
CREATE TABLE documents (id uuid PRIMARY KEY, doc_metadata json);
CREATE TABLE external_knowledge_bindings (id uuid PRIMARY KEY, external_knowledge_id text);
INSERT INTO documents SELECT md5(g::text)::uuid, '{"a": 1}' FROM generate_series(1, 1000) g;
INSERT INTO external_knowledge_bindings SELECT md5(g::text)::uuid, 'k' || g FROM generate_series(1, 1000) g;
ANALYZE;
"""
# Expected verdicts on those tables, by the fixture README: widenings do not rewrite, the rest do.
DIFY_EXPECTED = {
    ("workflow_runs", "total_tokens"): "rewrite", ("tool_builtin_providers", "provider"): "none",
    ("dataset_collection_bindings", "provider_name"): "none", ("tool_api_providers", "name"): "none",
    ("tool_model_invokes", "provider"): "none", ("tool_model_invokes", "tool_name"): "none",
    ("tool_workflow_providers", "name"): "none", ("documents", "doc_metadata"): "rewrite",
    ("external_knowledge_bindings", "external_knowledge_id"): "rewrite",
}


@pytest.fixture(scope="module")
def server():
    with scratch_server() as s:
        with s.connect() as conn:
            conn.execute(DIFY_BEFORE)
        yield s


def _relfilenode(conn, table):
    return conn.execute("SELECT relfilenode FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()[0]


TYPE_CHANGES = [  # (column type before, statement tail)
    ("int", "TYPE bigint"), ("varchar(40)", "TYPE varchar(255)"), ("varchar(255)", "TYPE varchar(128)"),
    ("varchar(40)", "TYPE text"), ("text", "TYPE varchar(512)"), ("text", "TYPE varchar"),
    ("numeric(10,2)", "TYPE numeric(12,2)"), ("numeric(10,2)", "TYPE numeric(12,4)"), ("json", "TYPE jsonb"),
    ("cidr", "TYPE inet"), ("timestamp(3)", "TYPE timestamp(6)"), ("timestamp", "TYPE timestamptz"),
    ("varchar(40)[]", "TYPE json USING to_jsonb(c)::json"), ("int", "TYPE int USING c + 0"),
    ("varchar(40)", "TYPE varchar(40)"), ("bigint", "TYPE int"),
]


@pytest.mark.parametrize("before,change", TYPE_CHANGES, ids=[f"{b}->{c}" for b, c in TYPE_CHANGES])
def test_rewrite_verdict_matches_the_server(server, before, change):
    """The catalog-backed verdict (MS001 rewrite / MS002 none) against what PostgreSQL actually does."""
    with server.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS tc")
        conn.execute(f"CREATE TABLE tc (id int, c {before})")
        conn.execute("INSERT INTO tc (id) VALUES (1)")
        statement = f"ALTER TABLE tc ALTER COLUMN c {change}"
        [f] = analyse(statement, pgcatalog.LiveCatalog(conn)).findings
        node = _relfilenode(conn, "tc")
        conn.execute(statement)
        rewritten = _relfilenode(conn, "tc") != node
    assert f.effect == ("rewrite" if rewritten else "none"), (statement, f.rules, f.notes)
    assert f.rules[0] == ("MS001" if rewritten else "MS002")


def test_dify_type_changes_on_a_dify_shaped_database(server):
    """Every ALTER … TYPE of the real Dify SQL on a pre-existing table: verdict from the live catalog, then checked
    by running the statement itself on the server."""
    statements = [line.rstrip(";") for name in ("migrate.0.14.2-to-0.15.3.sql", "migrate.0.15.3-to-1.12.1.sql")
                  for line in (DIFY / name).read_text().splitlines()
                  if " ALTER COLUMN " in line and " TYPE " in line and line.split()[2] in {t for t, _ in DIFY_EXPECTED}]
    assert len(statements) == len(DIFY_EXPECTED)
    with server.connect(autocommit=False) as conn:
        catalog = pgcatalog.LiveCatalog(conn)
        for statement in statements:
            table, column = statement.split()[2], statement.split()[5]
            [f] = analyse(statement, catalog).findings
            assert f.effect == DIFY_EXPECTED[(table, column)], statement
            node = _relfilenode(conn, table)
            conn.execute(statement)
            assert (_relfilenode(conn, table) != node) == (f.effect == "rewrite"), statement
        conn.rollback()


def _cli(*args, env=None):
    return subprocess.run([str(ROOT / "stackshift"), "analyze-migrations", *args], check=False, capture_output=True,
                          text=True, env=os.environ | (env or {}), cwd=ROOT)


def test_cli_with_dsn_forecasts_and_cleans_up(server):
    done = _cli("--sql", str(DIFY / "migrate.0.14.2-to-0.15.3.sql"), "--dsn", server.dsn(), "--json",
                env={"PGPASSWORD": server.password})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= {"statements", "lock_hold", "warnings", "server", "tables"}
    wr = [s for s in report["statements"] if s["table"] == "workflow_runs"][0]
    assert set(wr) >= {"index", "sql", "table", "lock", "effect", "rules", "forecast_seconds", "safe_alternative"}
    assert (wr["lock"], wr["effect"]) == ("ACCESS EXCLUSIVE", "rewrite") and "MS001" in wr["rules"]
    low, high = wr["forecast_seconds"]["low"], wr["forecast_seconds"]["high"]
    assert 0 < low < high
    assert report["lock_hold"]["workflow_runs"] == high  # the last statement of its transaction
    assert report["tables"]["workflow_runs"]["rows_estimate"] == 200_000
    probe = report["server"]["probe"]
    assert report["server"]["version"].startswith("15.") and probe["probe_rows"] > 0
    # bounded by its budget (3 s by default; the first round always runs) and calibrated (the lab's role is superuser)
    assert 1 <= probe["rounds"] <= 12 and probe["budget_seconds"] == 3.0 and probe["cpu_wait_measured"]
    assert probe["load_factor"] >= 1.0 and set(report["lock_hold_at_current_load"]) == set(report["lock_hold"])
    assert all(s["forecast_seconds"] == {"low": 0.0, "high": 0.0} for s in report["statements"]
               if s["table"] in ("child_chunks", "dataset_auto_disable_logs"))  # new tables: nothing to do
    with server.connect() as conn:
        assert conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'stackshift%'").fetchall() == []
    assert server.password not in done.stdout + done.stderr


def test_probe_stops_at_its_budget(server):
    """A budget shorter than one round: one round, and the probe ends soon after it."""
    with server.connect() as conn:
        one = pgcatalog.probe(conn, budget_seconds=0.01)
        assert one.rounds == 1 and one.probe_seconds < 10 and one.cpu_wait_measured
        more = pgcatalog.probe(conn, budget_seconds=60, max_rounds=3)
        assert more.rounds == 3 and more.rewrite_bps[0] >= more.rewrite_bps[1] > 0
        assert conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'stackshift%'").fetchall() == []


def test_cli_gate_exit_status(server):
    env = {"PGPASSWORD": server.password}
    strict = _cli("--sql", str(DIFY / "migrate.0.14.2-to-0.15.3.sql"), "--dsn", server.dsn(), "--json",
                  "--max-lock-seconds", "0.0001", env=env)
    assert strict.returncode == 3 and "writes to workflow_runs would be blocked" in json.loads(strict.stdout)["gate"][0]
    loss = _cli("--sql", str(DIFY / "migrate.0.15.3-to-1.12.1.sql"), "--dsn", server.dsn(), "--no-probe", env=env)
    assert loss.returncode == 3 and "loses data" in loss.stdout and "data-loss" in loss.stdout


def test_bad_input_is_a_clear_error_without_the_password(server, tmp_path):
    sql = str(DIFY / "migrate.0.14.2-to-0.15.3.sql")
    secret = "s3cret-Pw-Zz9"
    cases = [
        (("--sql", sql, "--dsn", f"postgresql://lab:{secret}@127.0.0.1:1/app"), {}, "DatabaseUnreachable",
         "127.0.0.1:1/app"),
        (("--sql", sql, "--dsn", f"postgresql://lab:{secret}@127.0.0.1:{server.port}/app"), {}, "DatabaseUnreachable",
         "password authentication failed"),
        (("--sql", sql, "--dsn", server.dsn()), {"PGPASSWORD": secret}, "DatabaseUnreachable",
         "password authentication failed"),
        (("--sql", sql, "--dsn", f"host=127.0.0.1 password={secret} port=notaport"), {}, "", "port"),
        (("--sql", str(tmp_path / "missing.sql")), {}, "SqlFileUnreadable", "No such file"),
    ]
    (tmp_path / "latin1.sql").write_bytes("ALTER TABLE t ADD COLUMN c text; -- caf\xe9".encode("latin-1"))
    cases.append((("--sql", str(tmp_path / "latin1.sql")), {}, "SqlFileUnreadable", "not UTF-8"))
    for args, env, error, needle in cases:
        done = _cli(*args, env=env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert error in done.stderr and needle in done.stderr, done.stderr
        assert secret not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr


def test_unparsable_sql_is_reported_with_exit_0(tmp_path):
    path = tmp_path / "m.sql"
    path.write_text("BEGIN;\nALTER TABLE t ADD COLUMN c int;\nALTER TABLE t FROBNICATE;\nCOMMIT;\n")
    done = _cli("--sql", str(path), "--json")
    assert done.returncode == 0
    bad = json.loads(done.stdout)["statements"][2]
    assert (bad["effect"], bad["lock"]) == ("unknown", None) and "not analysable" in bad["notes"][0]
