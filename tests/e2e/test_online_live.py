"""The online preparation on a real PostgreSQL 15: after it, the app's own `ALTER COLUMN … TYPE bigint` is a
catalog-only change (relfilenodes of the table and its indexes unchanged, done under a tiny lock_timeout), every
row written during the backfill is identical, the undo and the swap leave no helper object,
and `SET NOT NULL` after a validated CHECK skips its scan (the server says so)."""
from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest

from core.migrations import pgcatalog
from core.migrations.online import OnlineSettings, Status, plan, reader, runner
from core.migrations.sqlrules import analyse
from lab.pg import scratch_server

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("online-live")]
ACCOUNTS, EVENTS = 20_000, 60_000
SCHEMA = f"""
CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE events (id serial PRIMARY KEY, account_id integer NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    total_tokens integer NOT NULL DEFAULT 0, payload text);
CREATE INDEX ix_events_account_id ON events (account_id);
CREATE INDEX ix_events_tokens ON events (total_tokens, account_id);
INSERT INTO accounts (name) SELECT 'a' || g FROM generate_series(1, {ACCOUNTS}) g;
INSERT INTO events (account_id, total_tokens, payload)
    SELECT 1 + g % {ACCOUNTS}, g, 'p' || g FROM generate_series(1, {EVENTS}) g;
-- The reference: each writer's transaction writes here too, what the row it wrote holds (RETURNING).
CREATE TABLE accounts_mirror (id bigint PRIMARY KEY, name text NOT NULL);
INSERT INTO accounts_mirror SELECT id, name FROM accounts;
ANALYZE;
"""
SMALL = OnlineSettings(batch_rows=1_000, pause_seconds=0.005, lock_timeout_ms=2_000)
HELPERS = """SELECT (SELECT count(*) FROM pg_attribute WHERE attname LIKE '%%\\_ss%%' AND NOT attisdropped
                     AND attrelid IN ('accounts'::regclass, 'events'::regclass))
                  + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ss\\_%%')
                  + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'ss\\_%%')
                  + (SELECT count(*) FROM pg_class WHERE relname LIKE '%%\\_ss%%'
                     AND relnamespace = 'public'::regnamespace)
                  + (SELECT count(*) FROM pg_constraint WHERE conname LIKE 'ss\\_%%')"""


@pytest.fixture(scope="module")
def server():
    with scratch_server(name_prefix="stackshift-online-test") as s:
        yield s


@pytest.fixture
def db(server, request):
    """A fresh database with the schema, for one test; a connection factory to it."""
    name = f"online_{request.node.name[5:30]}"
    with server.connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def connect() -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                               dbname=name, autocommit=True)
    with connect() as conn:
        conn.execute(SCHEMA)
    yield connect
    with server.connect() as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


class Writers:
    """Two sessions doing what the old version does (each write its own transaction, no server-side prepared
    statement, as psycopg2 under SQLAlchemy): new accounts, renamed and deleted accounts (their events go with
    them), new events, reads; each account write also written, as the row came out, to the mirror table."""

    def __init__(self, connect) -> None:
        self.connect, self.stop, self.errors, self.done = connect, threading.Event(), [], [0, 0]
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(2)]

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _run(self, n: int) -> None:
        rnd = random.Random(n)
        with self.connect() as conn:
            while not self.stop.is_set():
                key, op = rnd.randint(1, ACCOUNTS), rnd.random()
                try:
                    if op < 0.3:
                        conn.execute("WITH a AS (INSERT INTO accounts (name) VALUES (%s) RETURNING id, name) "
                                     "INSERT INTO accounts_mirror SELECT id, name FROM a", (f"new{n}-{key}",),
                                     prepare=False)
                    elif op < 0.55:
                        conn.execute("WITH a AS (UPDATE accounts SET name = name || '+' WHERE id = %s RETURNING id, "
                                     "name) UPDATE accounts_mirror m SET name = a.name FROM a WHERE m.id = a.id",
                                     (key,), prepare=False)
                    elif op < 0.65:
                        conn.execute("WITH a AS (DELETE FROM accounts WHERE id = %s RETURNING id) "
                                     "DELETE FROM accounts_mirror m USING a WHERE m.id = a.id", (key,), prepare=False)
                    elif op < 0.8:
                        conn.execute("INSERT INTO events (account_id, total_tokens) SELECT id, %s FROM accounts "
                                     "WHERE id = %s", (key, key), prepare=False)
                    else:
                        conn.execute("SELECT id, name FROM accounts WHERE id = %s", (key,), prepare=False).fetchall()
                    self.done[n] += 1
                except psycopg.Error as exc:
                    self.errors.append(exc)


def _relfilenodes(conn, *relations):
    return {r: conn.execute("SELECT relfilenode FROM pg_class WHERE oid = %s::regclass", (r,)).fetchone()[0]
            for r in relations}


def _verdict(conn, statement):
    catalog = pgcatalog.LiveCatalog(conn)
    [v] = plan(analyse(statement, catalog), lambda t, c: reader.read_shape(conn, t, c), SMALL,
               catalog.server_version_num).verdicts
    return v


def _timed(conn, statement, lock_timeout="100ms"):
    with conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
        start = time.monotonic()
        conn.execute(statement)
        return time.monotonic() - start


def test_a_primary_key_with_its_sequence_and_a_foreign_key_widened_under_writes(db):
    app = "ALTER TABLE accounts ALTER COLUMN id TYPE BIGINT"
    with db() as conn, Writers(db) as writers:
        v = _verdict(conn, app)
        assert v.status is Status.PREPARED, v.reason
        progress: list[int] = []
        runner.prepare(conn, v.preparation, SMALL, lambda done, total: progress.append(done))
        assert len(progress) >= ACCOUNTS // SMALL.batch_rows, "the backfill ran in batches"
        assert conn.execute("SELECT atttypid::regtype::text FROM pg_attribute WHERE attrelid = 'accounts'::regclass "
                            "AND attname = 'id'").fetchone() == ("bigint",)
    assert writers.errors == [] and sum(writers.done) > 100, (writers.errors[:3], writers.done)
    with db() as conn:  # the cutover: the writers stopped, the app's own statement
        before = _relfilenodes(conn, "accounts", "accounts_pkey", "events", "ix_events_account_id")
        seconds = _timed(conn, app)
        assert _relfilenodes(conn, *before) == before, "catalog-only: no rewrite, the index reused"
        assert seconds < 0.5, seconds
        for a, b in (("accounts", "accounts_mirror"), ("accounts_mirror", "accounts")):
            assert conn.execute(f"SELECT count(*) FROM (SELECT id, name FROM {a} EXCEPT SELECT id, name FROM {b}) x"
                                ).fetchone() == (0,), f"a row of {a} is not in {b}"
        assert conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = 'events_account_id_fkey'"
                            ).fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT FROM accounts a "
                            "WHERE a.id = e.account_id)").fetchone() == (0,)
        assert conn.execute("SELECT pg_get_serial_sequence('accounts', 'id')").fetchone() == ("public.accounts_id_seq",)
        top = conn.execute("SELECT max(id) FROM accounts").fetchone()[0]
        assert conn.execute("INSERT INTO accounts (name) VALUES ('after') RETURNING id").fetchone()[0] > top
        assert conn.execute("SELECT indisprimary, indisvalid FROM pg_index WHERE indexrelid = "
                            "'accounts_pkey'::regclass").fetchone() == (True, True)
        assert conn.execute(HELPERS).fetchone() == (0,), "no shadow column, trigger, function, index or check left"


def test_undo_before_the_swap_leaves_the_table_as_it_was_then_a_column_with_indexes_widened(db):
    app = "ALTER TABLE events ALTER COLUMN total_tokens TYPE BIGINT"
    with db() as conn:
        v = _verdict(conn, app)
        prep = v.preparation
        assert v.status is Status.PREPARED and prep.backfill is not None and prep.backfill.key == "id"
        before = _relfilenodes(conn, "events", "ix_events_tokens")
        for step in prep.setup:
            runner.run_step(conn, step, SMALL)
        assert runner.backfill(conn, prep.backfill, SMALL) == EVENTS
        for step in prep.build:
            runner.run_step(conn, step, SMALL)
        assert conn.execute(HELPERS).fetchone()[0] >= 4, "column, trigger, function, index, check"
        runner.undo(conn, prep, SMALL)
        runner.undo(conn, prep, SMALL)  # again, as a recovery would after a crash mid-undo
        assert conn.execute(HELPERS).fetchone() == (0,)
        assert _relfilenodes(conn, *before) == before
        runner.prepare(conn, prep, SMALL)
        before = _relfilenodes(conn, "events", "ix_events_tokens")
        assert _timed(conn, app) < 0.5
        assert _relfilenodes(conn, *before) == before
        assert conn.execute("SELECT count(*), sum(total_tokens) FROM events").fetchone() == (
            EVENTS, EVENTS * (EVENTS + 1) // 2)
        assert conn.execute("SELECT attnotnull, pg_get_expr(adbin, adrelid) FROM pg_attribute LEFT JOIN pg_attrdef "
                            "ON adrelid = attrelid AND adnum = attnum WHERE attrelid = 'events'::regclass AND "
                            "attname = 'total_tokens'").fetchone() == (True, "0")
        assert conn.execute(HELPERS).fetchone() == (0,)


def test_set_not_null_after_a_validated_check_skips_its_scan(db):
    app = "ALTER TABLE events ALTER COLUMN payload SET NOT NULL"
    with db() as conn:
        conn.execute("UPDATE events SET payload = 'x' WHERE payload IS NULL")
        v = _verdict(conn, app)
        assert v.status is Status.PREPARED, v.reason
        runner.prepare(conn, v.preparation, SMALL)
        said: list[str] = []
        conn.add_notice_handler(lambda d: said.append(d.message_primary or ""))
        conn.execute("SET client_min_messages = debug1")
        _timed(conn, app)
        conn.execute("RESET client_min_messages")
        assert any("sufficient to prove" in m for m in said), said
        runner.after_migration(conn, v.preparation, SMALL)
        assert conn.execute(HELPERS).fetchone() == (0,)


def test_what_the_live_table_holds_and_the_swap_cannot_carry_keeps_the_statement_in_the_downtime(db):
    with db() as conn:
        conn.execute("CREATE VIEW tokens AS SELECT account_id, total_tokens FROM events")
        conn.execute("CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER touch BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION touch()")
        view = _verdict(conn, "ALTER TABLE events ALTER COLUMN total_tokens TYPE BIGINT")
        trigger = _verdict(conn, "ALTER TABLE accounts ALTER COLUMN id TYPE BIGINT")
    assert (view.status, view.reason) == (Status.DOWNTIME, "rule _RETURN on view tokens uses the column")
    assert trigger.status is Status.DOWNTIME and trigger.reason.startswith("trigger touch on the table"), trigger.reason
