"""The three-way merge on Dify's real templates: an operator's 1.0.0 .env merged onto 1.12.1."""
import json
import subprocess

import pytest

from core import envmerge
from core.envmerge import merge, parse, render
from tests.conftest import DIFY

pytestmark = pytest.mark.tools("docker compose")

OLD = (DIFY / "env.example.1.0.0").read_text()
NEW = (DIFY / "env.example.1.12.1").read_text()
PEM = '"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----"'


def operator_env() -> str:
    """A 1.0.0 .env with typical operator edits."""
    text = OLD
    for old, new in (
        ("SECRET_KEY=sk-9f73s3ljTXVcMT3Blb3ljTqtsKiGHXVcMT3BlbkFJLK7U", "SECRET_KEY=sk-operator-own-secret-0001"),
        ("DB_PASSWORD=difyai123456", "DB_PASSWORD=operator-db-pw-0002"),
        ("EXPOSE_NGINX_PORT=80", "EXPOSE_NGINX_PORT=8080"),
        ("LOG_LEVEL=INFO", "LOG_LEVEL = DEBUG"),
        ("CONSOLE_API_URL=", "export CONSOLE_API_URL=https://console.example.com"),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    text += f"\n# Our CA for the SSRF proxy.\nCUSTOM_CA_PEM={PEM}\nSUGGESTED_QUESTIONS_PROMPT='Ask me about \"orders\"'\n"
    return text


@pytest.fixture(scope="module")
def result():
    return merge(parse(operator_env(), ".env"), parse(OLD, "1.0.0"), parse(NEW, "1.12.1"))


def test_stale_defaults_move_and_customizations_stay(result):
    merged = parse(result.text).values
    assert merged["DB_HOST"] == "db_postgres"
    assert merged["COMPOSE_PROFILES"] == "${VECTOR_STORE:-weaviate},${DB_TYPE:-postgresql}"
    assert merged["SECRET_KEY"] == "sk-operator-own-secret-0001"
    assert merged["DB_PASSWORD"] == "operator-db-pw-0002"
    assert merged["EXPOSE_NGINX_PORT"] == "8080" and merged["LOG_LEVEL"] == "DEBUG"
    assert merged["CONSOLE_API_URL"] == "https://console.example.com"
    assert merged["CUSTOM_CA_PEM"] == PEM.strip('"')
    assert merged["SUGGESTED_QUESTIONS_PROMPT"] == 'Ask me about "orders"'
    assert "LOG_LEVEL = DEBUG\n" in result.text and "export CONSOLE_API_URL=https://console.example.com\n" in result.text
    assert f"# Our CA for the SSRF proxy.\nCUSTOM_CA_PEM={PEM}\n" in result.text
    assert "DB_HOST" in result.by_category["default_moved"] and "COMPOSE_PROFILES" in result.by_category["default_moved"]
    assert {"CUSTOM_CA_PEM", "SUGGESTED_QUESTIONS_PROMPT"} <= set(result.by_category["user_only"])
    assert {"PGUSER", "POSTGRES_PASSWORD"} <= set(result.by_category["dropped"])
    assert "PGUSER" not in merged


def test_every_new_key_is_added_and_layout_follows_the_new_template(result):
    merged = parse(result.text).values
    new = parse(NEW).values
    assert set(new) <= set(merged)
    order = [k for k in parse(result.text).values if k in new]
    assert order == [k for k in new], "template order is kept"
    assert result.text.startswith(NEW.split("\n", 1)[0])


def test_merged_env_starts_the_database_service_with_the_1_12_1_compose_file(result, tmp_path):
    env = tmp_path / ".env"
    env.write_text(result.text)
    done = subprocess.run(["docker", "compose", "--project-directory", str(tmp_path), "-f",
                           str(DIFY / "docker-compose.1.12.1.yaml"), "--env-file", str(env), "config", "--format", "json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert "db_postgres" in services and "db" not in services
    assert services["api"]["environment"]["DB_HOST"] == "db_postgres"
    assert services["api"]["environment"]["SECRET_KEY"] == "sk-operator-own-secret-0001"


def test_a_naive_two_way_sync_would_have_kept_the_trap():
    """What Dify's dify-env-sync.sh does (keep every value that differs from the new example) keeps DB_HOST=db."""
    user, new = parse(operator_env()).values, parse(NEW).values
    naive = {k: (user[k] if k in user and user[k] != v else v) for k, v in new.items()}
    assert naive["DB_HOST"] == "db"


def test_second_merge_is_a_no_op(result):
    again = merge(parse(result.text), parse(OLD), parse(NEW))
    assert again.text == result.text


def test_masked_report_never_shows_a_secret(result):
    rows = envmerge.masked_changes(result)
    text = json.dumps(rows)
    for secret in ("sk-operator-own-secret-0001", "operator-db-pw-0002", "MIIBszCCAVmgAwIBAgIU"):
        assert secret not in text
    assert {r["key"]: r for r in rows}["DB_HOST"]["after"] == "db_postgres"


def test_unchanged_file_renders_byte_for_byte():
    assert render(parse(operator_env())) == operator_env()
    assert render(parse(NEW)) == NEW


def test_every_stale_default_moved(result):
    user, old, new = parse(operator_env()).values, parse(OLD).values, parse(NEW).values
    merged = parse(result.text).values
    stale = [k for k in user if k in old and k in new and user[k] == old[k] and new[k] != old[k]]
    assert len(stale) >= 10 and all(merged[k] == new[k] for k in stale)
    assert sorted(stale) == sorted(result.by_category["default_moved"])


def test_conflict_removed_customized_and_user_comments():
    old = parse("A=1\nB=2\nC=3\nD=4\n")
    new = parse("A=10\nB=20\nD=4\nE=5\n")
    user = parse("A=1\nB=custom\nC=mine\n# D=4\n")
    r = merge(user, old, new)
    assert r.by_category["default_moved"] == ["A"]
    assert r.by_category["conflict"] == ["B"], "customized while the default changed too"
    assert r.by_category["removed_kept"] == ["C"] and r.by_category["commented"] == ["D"]
    assert r.by_category["added"] == ["E"]
    assert r.text == "A=10\nB=custom\n# D=4\nE=5\n\n" + envmerge.KEPT_HEADER + "C=mine\n"
