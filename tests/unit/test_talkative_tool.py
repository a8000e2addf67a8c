"""A migration tool that prints more than SQL: its log lines are set aside and listed, every real statement is
analysed where it is, a revision whose rendering left work out is flagged, and an unexpected error is reported as
what it is (not as Prefect failing)."""
from pathlib import Path

import httpx
from pglast.parser import ParseError

from cli.main import unexpected_failure
from core import report
from core.migrations import migcheck
from core.migrations.revgraph import RevisionState
from core.migrations.sqlrules import analyse, incomplete
from core.migrations.sqlrules.statements import set_aside, split_statements

TALKATIVE = """\
2026-05-04T18:02:11.123 INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.
INFO  [alembic.runtime.migration] Will assume transactional DDL.
Generating sql for upgrade
sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server at "db" (172.18.0.2), port 5432 \
failed: Connection refused
\tIs the server running on that host and accepting TCP/IP connections?

(Background on this error at: https://sqlalche.me/e/20/e3q8)
BEGIN;

-- Running upgrade  -> a1

CREATE TABLE accounts (
    id serial PRIMARY KEY,
2026-05-04T18:02:12 WARNING [app] slow import of the models
    note text DEFAULT 'it''s; fine'
);

INSERT INTO alembic_version (version_num) VALUES ('a1');

-- Running upgrade a1 -> b2

ALTER TABLE accounts ADD COLUMN email text;
WARNING: Data migration skipped in offline mode (backfill of accounts.email); run it online
UPDATE alembic_version SET version_num='b2' WHERE alembic_version.version_num = 'a1';

-- Running upgrade b2 -> c3

UPDATE alembic_version SET version_num='c3' WHERE alembic_version.version_num = 'b2';

COMMIT;
"""
NOISE_LINES = [1, 2, 3, 4, 5, 7, 14, 23]


def test_interleaved_log_lines_are_set_aside_and_every_statement_analysed():
    a = analyse(TALKATIVE)
    assert [n for n, _ in a.set_aside] == NOISE_LINES
    assert a.set_aside[6] == (14, "2026-05-04T18:02:12 WARNING [app] slow import of the models")
    assert [(f.line, f.statement, f.revision) for f in a.findings] == [
        (8, "TransactionStmt", None), (12, "CreateStmt", "a1"), (18, "InsertStmt", "a1"),
        (22, "AlterTableStmt", "b2"), (24, "UpdateStmt", "b2"), (28, "UpdateStmt", "c3"), (30, "TransactionStmt", "c3")]
    assert "it''s; fine" in a.findings[1].sql, "a `;` inside a quote ends no statement"
    assert not [f for f in a.findings if f.effect == "unknown"]
    assert any("8 line(s) of the rendered output are not SQL" in w for w in a.warnings)


def test_text_the_scanner_rejects_never_raises():
    junk = "SELECT 1;\nstarted 2026-05-04T18:02:11 'unterminated\nSELECT 2;\n"
    assert [t for _, t in split_statements(junk)][0] == "SELECT 1"
    clean, aside = set_aside(junk)
    assert aside == [(2, "started 2026-05-04T18:02:11 'unterminated")] and len(clean) == len(junk)
    assert [f.statement for f in analyse(junk).findings] == ["SelectStmt", "SelectStmt"]


def test_a_revision_with_a_skip_warning_or_no_statement_is_not_fully_analysed():
    partly = incomplete(TALKATIVE)
    assert list(partly) == ["b2", "c3"]
    assert "skipped work (line 23" in partly["b2"] and "no statement besides Alembic's bookkeeping" in partly["c3"]
    result = migcheck.analyze(TALKATIVE, revisions=RevisionState([], "c3", ["a1", "b2", "c3"], []))
    result.sources = {"rendered": ["a1", "b2", "c3"], "rehearsed": [], "not_analysed": [], "incomplete": partly,
                      "analysed_from": "rendering", "render_error": None, "rehearsal": None}
    text = report.migration_markdown(result, "t", [])
    assert "Pending revisions (3): 1 rendered offline in full, 2 only in part (not fully analysed)" in text
    assert "3 rendered" not in text
    assert "| 2 | `b2` | **in part**: the tool warned that it skipped work" in text
    assert "## Output that is not SQL (8 line(s), set aside)" in text and "Generating sql for upgrade" in text
    result.sources = None
    assert "## Revisions not fully analysed (2)" in report.migration_markdown(result, "t", [])
    assert result.to_dict()["set_aside"][0] == {"line": 1, "text": TALKATIVE.splitlines()[0]}


def test_an_unexpected_error_is_reported_as_what_it_is():
    # the lab's Prefect server answers (PREFECT_API_URL, tests/conftest.py): a parser error is no Prefect problem
    said = unexpected_failure("staging", ParseError("trailing junk after numeric literal at or near \"04T18\"", 1),
                              0, prefect_up=True, project_dir=Path("/nonexistent"))
    assert "could not be recorded in Prefect" not in said
    assert said.startswith("stackshift: the run failed with ParseError: trailing junk")


def test_a_prefect_client_error_is_reported_as_prefect_failing():
    try:
        try:
            raise httpx.ConnectError("All connection attempts failed")
        except httpx.ConnectError as inner:
            raise RuntimeError("could not create the flow run") from inner
    except RuntimeError as exc:
        said = unexpected_failure("prod", exc, 0, prefect_up=True, project_dir=Path("/nonexistent"))
    assert said.startswith("stackshift: the run could not be recorded in Prefect (RuntimeError: could not create")
