"""The statements stackshift builds (core.io.pgsql): composed by psycopg, rendered without a connection.

The real server runs them in tests/e2e/test_pgsql_live.py.
"""
from __future__ import annotations

import pytest
from psycopg import sql

from core.io import pgsql
from core.io.pgsql import as_text

ODD = ['a"b', "it's", "with space", "UPPER", "été", 'x"; DROP DATABASE app; --', "back\\slash"]


def test_each_builder_renders_the_statement_it_names():
    assert as_text(pgsql.create_database("app")) == 'CREATE DATABASE "app"'
    assert as_text(pgsql.create_database("s", "template0")) == 'CREATE DATABASE "s" TEMPLATE "template0"'
    assert as_text(pgsql.create_database("app__ss_rb_r1", "app", file_copy=True)) == \
        'CREATE DATABASE "app__ss_rb_r1" TEMPLATE "app" STRATEGY FILE_COPY'
    assert as_text(pgsql.drop_database("app")) == 'DROP DATABASE IF EXISTS "app"'
    assert as_text(pgsql.drop_database("app", force=True)) == 'DROP DATABASE IF EXISTS "app" WITH (FORCE)'
    assert as_text(pgsql.rename_database("app", "app__ss_failed_r1")) == \
        'ALTER DATABASE "app" RENAME TO "app__ss_failed_r1"'
    assert as_text(pgsql.log_every_statement("m__ss_rh_1")) == \
        "ALTER DATABASE \"m__ss_rh_1\" SET log_statement = 'all'"
    assert as_text(pgsql.drop_schema("stackshift_probe_1")) == 'DROP SCHEMA IF EXISTS "stackshift_probe_1" CASCADE'
    assert as_text(pgsql.restore_point("stackshift_r1")) == "SELECT pg_create_restore_point('stackshift_r1')::text"
    assert [as_text(s) for s in pgsql.drop_slot("ss_r1")] == [
        "SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE slot_name = 'ss_r1' "
        "AND active_pid IS NOT NULL",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'ss_r1'"]


def test_terminate_looks_for_the_name_and_for_statements_naming_it_as_quoted():
    text = as_text(pgsql.terminate('a"b'))
    assert "(a.datname = 'a\"b' OR position('\"a\"\"b\"' in a.query) > 0)" in text
    assert text.startswith("SELECT pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a ")
    assert as_text(pgsql.rename_database('a"b', "c")).startswith('ALTER DATABASE "a""b"'), \
        "the text a killed rename leaves on the server holds the name quoted exactly so"


@pytest.mark.parametrize("name", ODD)
def test_an_odd_name_stays_one_quoted_identifier_and_one_literal(name):
    ident = '"' + name.replace('"', '""') + '"'
    assert as_text(pgsql.drop_database(name)) == f"DROP DATABASE IF EXISTS {ident}"
    assert as_text(pgsql.rename_database(name, name)) == f"ALTER DATABASE {ident} RENAME TO {ident}"
    literal = as_text(pgsql.restore_point(name))[len("SELECT pg_create_restore_point("):-len(")::text")]
    if "\\" in name:  # without a connection psycopg writes the form right whatever standard_conforming_strings says
        assert literal == " E'" + name.replace("\\", "\\\\").replace("'", "''") + "'"
    else:
        assert literal == "'" + name.replace("'", "''") + "'"


def test_as_text_passes_a_constant_string_through_and_renders_any_composable():
    assert as_text("SELECT 1") == "SELECT 1"
    assert as_text(sql.SQL("SELECT {}").format(sql.Literal(2))) == "SELECT 2"
    assert isinstance(pgsql.drop_database("x"), sql.Composable)


def test_terminate_names_the_database_as_a_literal_and_as_the_identifier_a_statement_holds():
    assert as_text(pgsql.terminate("app")) == (
        "SELECT pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND "
        "(a.datname = 'app' OR position('\"app\"' in a.query) > 0) "
        "AND (a.usename = current_user OR pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') "
        "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))")
