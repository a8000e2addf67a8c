"""`./stackshift env-sync`: safety of the write, clear errors, and no secret anywhere in its output."""
import json
import os
import stat
from pathlib import Path

import pytest

from tests.unit._env_helpers import NEW, OLD, snapshot, sync

pytestmark = pytest.mark.tools("docker compose")

SECRETS = ("sk-planted-secret-A1", "planted-db-pw-B2", "planted-token-C3")


def operator_env(tmp_path: Path) -> Path:
    text = OLD.read_text()
    text = text.replace("SECRET_KEY=sk-9f73s3ljTXVcMT3Blb3ljTqtsKiGHXVcMT3BlbkFJLK7U", f"SECRET_KEY={SECRETS[0]}")
    text = text.replace("DB_PASSWORD=difyai123456", f"DB_PASSWORD={SECRETS[1]}")
    text += f"\nMY_API_TOKEN={SECRETS[2]}\nMY_DSN=postgresql://u:{SECRETS[1]}@h/db\n"
    env = tmp_path / ".env"
    env.write_text(text)
    os.chmod(env, 0o600)
    return env


def test_dry_run_writes_nothing_and_second_run_is_a_no_op(tmp_path):
    env = operator_env(tmp_path)
    before = env.read_bytes()
    assert sync(env, "--dry-run").returncode == 0
    assert env.read_bytes() == before and not (tmp_path / "env-backup").exists()
    first = json.loads(sync(env, "--json").stdout)
    assert first["written"] and "DB_HOST" in first["keys"]["default_moved"]
    assert [p.read_bytes() for p in (tmp_path / "env-backup").iterdir()] == [before]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    second = json.loads(sync(env, "--json").stdout)
    assert second["changed"] is False and len(list((tmp_path / "env-backup").iterdir())) == 1


def test_symlinked_env_is_written_through(tmp_path):
    real = operator_env(tmp_path)
    link = tmp_path / "link.env"
    link.symlink_to(real)
    assert sync(link).returncode == 0
    assert link.is_symlink() and "DB_HOST=db_postgres\n" in real.read_text()


@pytest.mark.parametrize("content, line, needle", [
    ("A=1\nthis is not a binding\n", 2, "not a KEY=value line"),
    ("A=1\nB=2\nA=3\n", 3, "duplicate key A"),
    ("A=1\x00\n", 1, "binary"),
])
def test_malformed_input_names_file_and_line_and_writes_nothing(tmp_path, content, line, needle):
    env = tmp_path / ".env"
    env.write_text(content)
    before = snapshot(tmp_path)
    done = sync(env)
    assert done.returncode == 2
    assert f"{env}, line {line}" in done.stderr and needle in done.stderr
    assert snapshot(tmp_path) == before


def test_missing_template_is_a_clear_error(tmp_path):
    env = operator_env(tmp_path)
    before = snapshot(tmp_path)
    done = sync(env, new=tmp_path / "nope.example")
    assert done.returncode == 2 and "nope.example" in done.stderr and "does not exist" in done.stderr
    assert "line" not in done.stderr and snapshot(tmp_path) == before


def test_required_compose_variable_left_empty_is_refused_before_writing(tmp_path):
    compose = tmp_path / "docker-compose.yaml"
    compose.write_text("services:\n  app:\n    image: busybox\n    environment:\n      KEY: ${MUST_SET:?set MUST_SET}\n")
    old, new = tmp_path / "old.example", tmp_path / "new.example"
    old.write_text("A=1\n")
    new.write_text("A=1\nMUST_SET=\n")
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    before = snapshot(tmp_path)
    done = sync(env, "--compose-file", str(compose), old=old, new=new)
    assert done.returncode == 2 and "MUST_SET" in done.stderr
    assert snapshot(tmp_path) == before


def test_no_secret_in_any_report(tmp_path):
    env = operator_env(tmp_path)
    outputs = [sync(env, "--dry-run"), sync(env, "--dry-run", "--json"), sync(env)]
    for done in outputs:
        for secret in SECRETS:
            assert secret not in done.stdout and secret not in done.stderr
    from core import envmerge
    from core.report import env_markdown
    result = envmerge.merge(envmerge.parse((tmp_path / "env-backup").iterdir().__next__().read_text()),
                            envmerge.parse(OLD.read_text()), envmerge.parse(NEW.read_text()))
    rows = envmerge.masked_changes(result)
    text = json.dumps(rows) + env_markdown("x", rows, {})
    assert all(secret not in text for secret in SECRETS)
    assert {r["key"]: r["after"] for r in rows}["MY_DSN"] == "(secret)"
