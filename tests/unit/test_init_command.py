"""`stackshift init`'s own choices, without a stack: which compose files, where the password comes from (never
printed), and how `check` reports a reader that failed or could not run."""
from __future__ import annotations

import pytest
from pydantic import SecretStr

from cli import init
from core.cutover.check import Finding, _Readings
from core.discovery import Proposal
from core.errors import DiscoveryIncomplete, MissingPrivilege, PasswordMissing
from tests.unit._settings import settings


def proposal(password: str | None = "from-compose") -> Proposal:
    p = Proposal(app="an Alembic app")
    p.set("stack", "compose_dir", "/srv/stack", "given")
    p.set("stack", "project_name", "stack", "given")
    p.set("database", "user", "app", "POSTGRES_USER of db")
    p.set("database", "name", "app", "POSTGRES_DB of db")
    p.set("backup", "dir", "/var/backups/stackshift", "default")
    if password:
        p.password, p.password_from = SecretStr(password), "POSTGRES_PASSWORD of db"
    return p


def test_the_files_the_project_was_started_with_win(tmp_path):
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    labels = {init.CONFIG_FILES: f"{tmp_path}/docker-compose.yaml,{tmp_path}/docker-compose.override.yaml"}
    assert init._compose_files(tmp_path, labels) == ("docker-compose.yaml", "docker-compose.override.yaml")
    assert init._compose_files(tmp_path, None) == ("compose.yaml",)
    assert init._compose_files(tmp_path / "empty", {init.CONFIG_FILES: "/elsewhere/docker-compose.yaml"}) == ()


def test_the_password_from_the_environment_wins_and_is_never_printed(monkeypatch, capsys):
    monkeypatch.setenv(init.PASSWORD_VARIABLE, "from-env-7Q")
    found = init._settings(proposal())
    assert found.database.password.get_secret_value() == "from-env-7Q"
    out = capsys.readouterr().out
    assert "from-env-7Q" not in out and "from-compose" not in out
    assert f"database.password = ********  ({init.PASSWORD_VARIABLE}" in out


def test_the_stack_s_own_password_else_a_refusal_without_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv(init.PASSWORD_VARIABLE, raising=False)
    assert init._settings(proposal()).database.password.get_secret_value() == "from-compose"
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(PasswordMissing, match="STACKSHIFT_DB_PASSWORD"):
        init._settings(proposal(password=None))


def test_a_gap_refuses_before_any_password_is_asked():
    p = proposal(password=None)
    p.gap("database.port", "db publishes no port for PostgreSQL")
    with pytest.raises(DiscoveryIncomplete, match="db publishes no port"):
        init._settings(p)


def test_check_reports_a_failed_reader_and_skips_those_that_need_it():
    r = _Readings(settings(), io=None)  # type: ignore[arg-type]  # the readers below touch no I/O

    def refused() -> str:
        raise MissingPrivilege("app", "it has neither CREATEDB nor superuser")

    def engine() -> str:
        r.found["engine"] = object()
        return "answers"

    r.read("Docker engine", engine)
    r.read("database", refused)
    r.read("migrations", lambda: "read", needs=("engine", "revision"))
    r.read("HTTP checks", lambda: (False, "api health: unreachable"))
    assert r.findings == [
        Finding("Docker engine", True, "answers"),
        Finding("database", False, r.findings[1].detail),
        Finding("migrations", None, "not checked: needs revision"),
        Finding("HTTP checks", False, "api health: unreachable"),
    ]
    assert "ALTER ROLE app CREATEDB" in r.findings[1].detail


def test_init_and_check_are_verbs_of_the_command_line():
    from cli.main import parser

    args = parser().parse_args(["init", "/srv/stack", "--name", "prod", "--yes"])
    assert (args.fn, args.compose_dir, args.name, args.yes, args.force) == (init.init, "/srv/stack", "prod", True,
                                                                           False)
    assert parser().parse_args(["check", "-e", "prod"]).fn is init.check


def test_a_prefect_server_that_does_not_answer_is_named_not_a_traceback():
    import os
    import subprocess

    from lab.stack import free_port
    from tests.conftest import ROOT

    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    done = subprocess.run([str(ROOT / "stackshift"), "check", "-e", "prod"], capture_output=True, text=True,
                          env=os.environ | {"PREFECT_API_URL": url}, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith(f"stackshift check: PrefectUnreachable: The Prefect server at {url} did not answer")
    assert "Traceback" not in done.stderr
