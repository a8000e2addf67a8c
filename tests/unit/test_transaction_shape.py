"""Findings follow the transactions as the migration will really run them: with Alembic's
`transaction_per_migration`, read from the image's env.py or said by the settings, a lock is held until its own
revision commits, not through the revisions after it."""
from core.migrations.environment import transaction_shape
from core.migrations.forecast import lock_hold
from core.migrations.sqlrules import analyse
from core.settings import Settings

ONE_BLOCK = """\
BEGIN;

-- Running upgrade  -> a1

ALTER TABLE accounts RENAME COLUMN name TO full_name;
INSERT INTO alembic_version (version_num) VALUES ('a1');

-- Running upgrade a1 -> b2

ALTER TABLE events ALTER COLUMN n TYPE bigint;
UPDATE alembic_version SET version_num='b2' WHERE alembic_version.version_num = 'a1';

COMMIT;
"""
ENV_PY = """from alembic import context

def run_migrations_online():
    context.configure(connection=connection, target_metadata=target_metadata,
                      transaction_per_migration = True)
"""


def forecast(per_revision: bool):
    a = analyse(ONE_BLOCK, per_revision=per_revision)
    for f in a.findings:  # the rename takes no time; the rewrite of `events` 40 s
        f.forecast_seconds = {"low": 20.0, "high": 40.0} if f.table == "events" and f.lock else {"low": 0, "high": 0.01}
    return a


def test_ms025_only_when_one_transaction_spans_the_revisions():
    rename = lambda a: next(f for f in a.findings if f.table == "accounts")  # noqa: E731
    assert "MS025" in rename(analyse(ONE_BLOCK)).rules
    assert "MS025" not in rename(analyse(ONE_BLOCK, per_revision=True)).rules
    assert {f.transaction for f in analyse(ONE_BLOCK).findings} == {1}
    assert len({f.transaction for f in analyse(ONE_BLOCK, per_revision=True).findings}) == 3  # BEGIN, a1, b2


def test_lock_hold_sums_stop_at_each_revisions_commit():
    one = lock_hold(forecast(False), forecast=True)
    per_revision = lock_hold(forecast(True), forecast=True)
    assert one["accounts"] > 40, "the rename's lock is held through the rewrite of the next revision"
    assert per_revision["accounts"] < 1, "its revision commits before the rewrite begins"
    assert one["events"] == per_revision["events"] > 40


def settings(**migration) -> Settings:
    return Settings.model_validate({"stack": {"compose_dir": "/srv/x", "project_name": "x"},
                                    "database": {"name": "x", "user": "u", "password": "pw"},
                                    "backup": {"dir": "/b"}, "migration": migration})


def test_the_shape_is_read_from_env_py_unless_the_settings_say_it():
    assert transaction_shape(settings(), ENV_PY) == (True, "the target image's env.py")
    assert transaction_shape(settings(), ENV_PY.replace("True", "False"))[0] is False
    assert transaction_shape(settings(), None) == (False, "Alembic's default (no env.py read in the image)")
    assert transaction_shape(settings(), "context.configure(connection=c)") == (False, "Alembic's default")
    assert transaction_shape(settings(transaction_per_migration=False), ENV_PY) == \
        (False, "the environment's settings")
