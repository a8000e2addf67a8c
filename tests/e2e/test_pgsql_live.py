"""The statements of core.io.pgsql on a real PostgreSQL 15, through the executing side (core.io.db), with names
that hand quoting gets wrong: each statement reaches exactly the database it names, and the text `as_text` shows
is the statement the server runs."""
from __future__ import annotations

import threading

import psycopg
import pytest
from pydantic import SecretStr

from core.io import db as dbops
from core.io import pgsql
from lab.pg import scratch_server

pytestmark = pytest.mark.e2e
ODD = ['a"b', "it's", "with space", "UPPER", "été", 'x"; DROP DATABASE app; --', "back\\slash"]


@pytest.fixture(scope="module")
def access():
    with scratch_server(name_prefix="stackshift-pgsql-test") as s:
        yield dbops.DbAccess("127.0.0.1", s.port, s.user, SecretStr(s.password))


def names(access) -> set[str]:
    return dbops.database_names(access)


@pytest.mark.parametrize("name", ODD)
def test_create_copy_rename_and_drop_reach_exactly_the_database_named(access, name):
    copy, failed = name + "_rp", name + "_failed"
    dbops.execute_maintenance(access, [pgsql.create_database(name, "template0")])
    with access.connect(name, autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT 1 AS one")
    dbops.execute_maintenance(access, [pgsql.terminate(name), pgsql.create_database(copy, name, file_copy=True)])
    dbops.execute_maintenance(access, [pgsql.rename_database(name, failed), pgsql.rename_database(copy, name)])
    assert {name, failed} <= names(access) and copy not in names(access) and "app" in names(access)
    with access.connect(name) as conn:
        assert conn.execute("SELECT one FROM t").fetchone() == (1,), "the copy holds the table"
    dbops.execute_maintenance(access, [pgsql.drop_database(failed), pgsql.drop_database(name, force=True)])
    assert not {name, failed, copy} & names(access) and "app" in names(access)


@pytest.mark.parametrize("name", ODD)
def test_the_rendered_text_is_the_statement_the_server_runs(access, name):
    dbops.execute_maintenance(access, [pgsql.as_text(pgsql.create_database(name))])
    assert name in names(access)
    dbops.execute_maintenance(access, [pgsql.as_text(pgsql.drop_database(name, force=True))])
    assert name not in names(access)


def test_terminate_ends_the_sessions_on_the_database_and_no_other(access):
    name = 'sess "one"'
    dbops.execute_maintenance(access, [pgsql.create_database(name)])
    victim, bystander = access.connect(name, autocommit=True), access.connect("app", autocommit=True)
    try:
        ended = dbops.query_maintenance(access, pgsql.terminate(name))
        assert ended == [(True,)]
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        assert bystander.execute("SELECT 1").fetchone() == (1,)
    finally:
        victim.close()
        bystander.close()
        dbops.execute_maintenance(access, [pgsql.drop_database(name, force=True)])


def test_terminate_ends_a_statement_still_creating_the_database(access):
    """A runner killed halfway leaves its CREATE DATABASE … TEMPLATE running; terminate finds it by its text."""
    name, source = "slow copy", "slow source"
    dbops.execute_maintenance(access, [pgsql.create_database(source)])
    holder = access.connect(source, autocommit=True)  # keeps the template busy: the CREATE waits for it
    errors: list[Exception] = []

    def create() -> None:
        try:
            dbops.execute_maintenance(access, [pgsql.create_database(name, source)])
        except psycopg.Error as exc:
            errors.append(exc)

    worker = threading.Thread(target=create)
    try:
        worker.start()
        worker.join(1)
        ended = dbops.query_maintenance(access, pgsql.terminate(name))
        worker.join(10)
        assert not worker.is_alive() and ended == [(True,)], "the CREATE naming the database (its text) was ended"
        assert len(errors) == 1 and isinstance(errors[0], psycopg.errors.AdminShutdown), errors
    finally:
        holder.close()
        worker.join(10)
        dbops.execute_maintenance(access, [pgsql.drop_database(name, force=True),
                                           pgsql.drop_database(source, force=True)])


def test_a_restore_point_and_a_slot_by_odd_names(access):
    lsn = dbops.query_maintenance(access, pgsql.restore_point("stackshift 'r1'"))
    assert lsn and "/" in lsn[0][0]
    slot = "ss_r1_slot"
    dbops.query_maintenance(access, "SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
    dbops.execute_maintenance(access, pgsql.drop_slot(slot))
    assert dbops.query_maintenance(access, "SELECT slot_name FROM pg_replication_slots") == []
    dbops.execute_maintenance(access, pgsql.drop_slot(slot))  # gone already: nothing to do, no error


def test_a_constant_string_runs_as_written_and_takes_parameters_when_given(access):
    assert dbops.query_maintenance(access, "SELECT '%s', '100%' LIKE '1%'") == [('%s', True)], "read as written"
    assert dbops.query_maintenance(access, "SELECT %s::text", ("x%",)) == [("x%",)]
