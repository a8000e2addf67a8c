"""squawk (the real squawk-cli binary from PyPI) on the same SQL: every lock or rewrite problem it reports, stackshift
reports too, on the same statement. Where stackshift deliberately differs, the difference is named here."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.migrations.sqlrules import AE, ColumnType, TableInfo, analyse
from tests.conftest import DIFY

SQUAWK = Path(sys.executable).parent / "squawk"

# squawk rule → the stackshift rules that cover the same lock/rewrite problem.
LOCK_AND_REWRITE_RULES = {
    "changing-column-type": {"MS001", "MS002"},
    "adding-field-with-default": {"MS003", "MS005"},
    "adding-required-field": {"MS006"},
    "adding-not-nullable-field": {"MS007", "MS006"},
    "constraint-missing-not-valid": {"MS008", "MS009", "MS011"},
    "adding-foreign-key-constraint": {"MS009"},
    "disallowed-unique-constraint": {"MS011"},
    "adding-serial-primary-key-field": {"MS003", "MS011"},
    "require-concurrent-index-creation": {"MS012"},
    "ban-concurrent-index-creation-in-transaction": {"MS013"},
    "require-concurrent-index-deletion": {"MS015"},
    "renaming-column": {"MS019"},
    "renaming-table": {"MS019"},
    "ban-drop-column": {"MS020"},
    "ban-drop-table": {"MS020"},
}
# Not lock or rewrite problems (type style, idempotency, timeouts): stackshift does not lint them.
NOT_LOCK_RULES = {"prefer-text-field", "prefer-timestamp-tz", "prefer-bigint-over-int", "prefer-bigint-over-smallint",
                  "prefer-identity", "prefer-robust-stmts", "require-statement-timeout", "ban-char-field",
                  "transaction-nesting"}
# squawk's ban-drop-constraint is about integrity; the brief ACCESS EXCLUSIVE it takes is stackshift's `lock` field.
LOCK_FIELD_ONLY = {"ban-drop-constraint"}
# squawk's require-lock-timeout is a file-level finding (on the first locking statement it sees); stackshift puts
# MS024 on the first statement that can queue, skipping tables created in the same run (nobody else holds them).
FILE_LEVEL = {"require-lock-timeout": "MS024"}


def squawk(path: Path) -> list[dict]:
    done = subprocess.run([str(SQUAWK), "--reporter", "json", "--pg-version", "15.0", str(path)],
                          check=False, capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", ["migrate.0.14.2-to-0.15.3.sql", "migrate.0.15.3-to-1.12.1.sql"])
def test_every_lock_or_rewrite_problem_squawk_reports_is_reported(name):
    path = DIFY / name
    analysis = analyse(path.read_text())
    violations = squawk(path)
    assert violations, "squawk reported nothing: the comparison would be empty"
    unexplained, exempt = [], []
    for v in violations:
        rule = v["rule_name"]
        line = v["line"] + 1  # squawk counts lines from 0
        if rule in NOT_LOCK_RULES:
            continue
        if rule in FILE_LEVEL:
            assert any(FILE_LEVEL[rule] in f.rules for f in analysis.findings), rule
            continue
        [f] = [f for f in analysis.findings if f.line <= line <= f.line + f.sql.count("\n")]
        if rule in LOCK_FIELD_ONLY:
            assert f.lock == AE, (rule, f)
        elif rule in LOCK_AND_REWRITE_RULES:
            if set(f.rules) & LOCK_AND_REWRITE_RULES[rule]:
                continue
            if f.table in analysis.created_tables:
                exempt.append((rule, f.table))  # created earlier in this run: empty, nobody waits on it
            else:
                unexplained.append((rule, line, f.sql[:80], f.rules))
        else:
            unexplained.append((rule, line, "squawk rule not classified by this test", []))
    assert unexplained == []
    if name.startswith("migrate.0.15.3"):
        # Six type changes and an index on tables created earlier in the same upgrade.
        assert sorted({t for _, t in exempt}) == ["datasource_providers", "tenant_plugin_auto_upgrade_strategies",
                                                  "tool_mcp_providers", "tool_oauth_tenant_clients",
                                                  "trigger_oauth_system_clients", "workflow_draft_variables"]


def test_binary_coercible_change_differs_deliberately(tmp_path):
    """squawk flags every SET TYPE; stackshift says which ones rewrite. With the current type known (on a live server
    from the catalog, here a fixed one), a varchar widening is MS002: a brief lock, no rewrite; int→bigint is MS001."""
    from tests.unit.test_sqlrules import FixedCatalog

    sql = tmp_path / "m.sql"
    sql.write_text("SET lock_timeout = '2s';\nALTER TABLE t ALTER COLUMN c TYPE varchar(255);\n"
                   "ALTER TABLE t ALTER COLUMN n TYPE bigint;\n")
    assert [v["rule_name"] for v in squawk(sql)].count("changing-column-type") == 2
    info = TableInfo(8192, 0, 0, 0, 10, {"c": ColumnType("varchar", (40,)), "n": ColumnType("int4")})
    widen, retype = analyse(sql.read_text(), FixedCatalog({"t": info})).findings[1:]
    assert (widen.rules, widen.effect, widen.lock) == (["MS002"], "none", AE)
    assert (retype.rules, retype.effect) == (["MS001"], "rewrite")
