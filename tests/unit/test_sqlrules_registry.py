"""The rule registry and the lock table: every MS rule runs its own cases, every statement kind has a lock."""
import pytest

from core.migrations.sqlrules import analyse
from core.migrations.sqlrules.classify import classify
from core.migrations.sqlrules.context import Context
from core.migrations.sqlrules.locks import LOCKS, MODES, OTHER_SIDE_LOCKS, Kind, blocks_reads, blocks_writes, strength
from core.migrations.sqlrules.registry import REGISTRY, ActionRule
from core.migrations.sqlrules.statements import parse, split_statements
from tests.conftest import DIFY

CODES = [f"MS{n:03d}" for n in range(1, 26)]
TRIGGERS = [(code, sql) for code in sorted(REGISTRY) for sql in REGISTRY[code].triggers]
PASSES = [(code, sql) for code in sorted(REGISTRY) for sql in REGISTRY[code].passes]


def fired(sql):
    """The rules that fire anywhere in `sql`, analysed offline; every statement must parse (a typo in a case
    must not make it pass)."""
    a = analyse(sql)
    assert all(f.statement != "unparsable" for f in a.findings), sql
    return {r for f in a.findings for r in f.rules}


def test_the_registry_holds_ms001_to_ms025_each_with_a_name_a_remedy_and_cases():
    assert sorted(REGISTRY) == CODES
    for code, rule in REGISTRY.items():
        assert rule.code == code and rule.name and rule.remedy.strip(), code
        assert rule.triggers, f"{code} has no SQL that triggers it"
        assert rule.passes, f"{code} has no SQL that must not trigger it"


@pytest.mark.parametrize("code,sql", TRIGGERS, ids=[f"{c}:{s[:50]}" for c, s in TRIGGERS])
def test_rule_fires_on_its_triggering_cases(code, sql):
    assert code in fired(sql)


@pytest.mark.parametrize("code,sql", PASSES, ids=[f"{c}:{s[:50]}" for c, s in PASSES])
def test_rule_is_silent_on_its_passing_cases(code, sql):
    assert code not in fired(sql)


def test_every_remedy_is_the_finding_safe_alternative():
    f = analyse("SET lock_timeout = '2s';\nDROP INDEX i;").findings[1]
    assert f.rules == ["MS015"] and f.safe_alternative == REGISTRY["MS015"].remedy


# One statement of each kind (after the setup statements before it), for the lock table's coverage.
KIND_EXAMPLES = {
    Kind.TRANSACTION: "BEGIN", Kind.SET: "SET lock_timeout = '2s'", Kind.HARMLESS: "COMMENT ON TABLE t IS 'x'",
    Kind.UNCOVERED: "LOCK TABLE t", Kind.CREATE_TABLE: "CREATE TABLE n (id int REFERENCES t (id))",
    Kind.CREATE_TABLE_AS: "CREATE TABLE n AS SELECT 1", Kind.CREATE_INDEX: "CREATE INDEX i ON t (c)",
    Kind.CREATE_INDEX_CONCURRENTLY: "CREATE INDEX CONCURRENTLY i ON t (c)", Kind.DROP_INDEX: "DROP INDEX i",
    Kind.DROP_INDEX_CONCURRENTLY: "DROP INDEX CONCURRENTLY i", Kind.DROP_TABLE: "DROP TABLE t",
    Kind.DROP_OTHER: "DROP SEQUENCE s", Kind.REINDEX: "REINDEX TABLE t",
    Kind.REINDEX_CONCURRENTLY: "REINDEX TABLE CONCURRENTLY t", Kind.VACUUM: "VACUUM t",
    Kind.VACUUM_FULL: "VACUUM FULL t", Kind.CLUSTER: "CLUSTER t USING i", Kind.RENAME: "ALTER TABLE t RENAME TO u",
    Kind.TRUNCATE: "TRUNCATE t", Kind.INSERT: "INSERT INTO t VALUES (1)", Kind.UPDATE: "UPDATE t SET c = 1",
    Kind.DELETE: "DELETE FROM t", Kind.VERSION_TABLE: "UPDATE alembic_version SET version_num = 'b'",
    Kind.ALTER_OTHER_RELATION: "ALTER INDEX i SET TABLESPACE x",
    Kind.ALTER_COLUMN_TYPE: "ALTER TABLE t ALTER COLUMN c TYPE bigint",
    Kind.ADD_COLUMN: "ALTER TABLE t ADD COLUMN c text", Kind.ADD_COLUMN_SERIAL: "ALTER TABLE t ADD COLUMN c serial",
    Kind.ADD_COLUMN_IDENTITY: "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS IDENTITY",
    Kind.ADD_COLUMN_GENERATED: "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a + 1) STORED",
    Kind.ADD_COLUMN_DEFAULT: "ALTER TABLE t ADD COLUMN c int DEFAULT 1",
    Kind.ADD_COLUMN_NOT_NULL: "ALTER TABLE t ADD COLUMN c int NOT NULL",
    Kind.SET_NOT_NULL: "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
    Kind.ADD_CHECK: "ALTER TABLE t ADD CHECK (c > 0)",
    Kind.ADD_FOREIGN_KEY: "ALTER TABLE t ADD FOREIGN KEY (c) REFERENCES u (id)",
    Kind.ADD_UNIQUE: "ALTER TABLE t ADD UNIQUE (c)", Kind.ADD_EXCLUSION: "ALTER TABLE t ADD EXCLUDE (c WITH =)",
    Kind.ADD_CONSTRAINT: "ALTER TABLE t ADD CONSTRAINT n NOT NULL c",
    Kind.VALIDATE_CONSTRAINT: "ALTER TABLE t VALIDATE CONSTRAINT k", Kind.DROP_COLUMN: "ALTER TABLE t DROP COLUMN c",
    Kind.REWRITE_TABLE: "ALTER TABLE t SET UNLOGGED",
    Kind.ATTACH_PARTITION: "ALTER TABLE p ATTACH PARTITION c FOR VALUES IN (1)",
    Kind.DETACH_PARTITION: "ALTER TABLE p DETACH PARTITION c",
    Kind.DETACH_PARTITION_CONCURRENTLY: "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
    Kind.TRIGGERS: "ALTER TABLE t DISABLE TRIGGER ALL", Kind.OPTIONS: "ALTER TABLE t SET (fillfactor = 70)",
    Kind.ALTER_METADATA: "ALTER TABLE t ALTER COLUMN c SET DEFAULT 1",
    Kind.ALTER_UNCOVERED: "ALTER TABLE t INHERIT u",
}


def kinds_of(sql):
    ctx = Context(sql, None)
    return [a.kind for _, text in split_statements(sql) for a in classify(parse(text), ctx).actions]


def test_the_lock_table_covers_every_kind_and_every_kind_is_classified():
    assert set(LOCKS) == set(Kind)
    assert set(KIND_EXAMPLES) == set(Kind)
    for kind, sql in KIND_EXAMPLES.items():
        assert kinds_of(sql) == [kind], sql


@pytest.mark.parametrize("kind", list(Kind))
def test_a_statement_takes_the_lock_the_table_gives_its_kind(kind):
    f = analyse(KIND_EXAMPLES[kind] + ";").findings[0]
    assert f.lock == LOCKS[kind]
    assert set(f.other_locks.values()) <= {OTHER_SIDE_LOCKS.get(kind)}


def test_every_kind_in_the_dify_migrations_is_in_the_lock_table():
    for name in ("migrate.0.14.2-to-0.15.3.sql", "migrate.0.15.3-to-1.12.1.sql"):
        kinds = set(kinds_of((DIFY / name).read_text()))
        assert kinds and kinds <= set(LOCKS), kinds - set(LOCKS)


def test_lock_modes_what_they_block_grows_with_strength():
    assert set(LOCKS.values()) | set(OTHER_SIDE_LOCKS.values()) <= set(MODES)
    ranked = sorted(MODES, key=strength)
    assert [blocks_writes(m) for m in ranked] == sorted(blocks_writes(m) for m in ranked)
    assert [blocks_reads(m) for m in ranked] == sorted(blocks_reads(m) for m in ranked)
    assert [m for m in ranked if blocks_reads(m)] == ["ACCESS EXCLUSIVE"]
    assert [m for m in ranked if blocks_writes(m)] == ["SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE",
                                                        "ACCESS EXCLUSIVE"]


def test_action_rules_judge_only_kinds_the_lock_table_knows():
    for rule in REGISTRY.values():
        if isinstance(rule, ActionRule):
            assert rule.kinds and rule.kinds <= set(LOCKS), rule.code
