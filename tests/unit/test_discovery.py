"""What `stackshift init` proposes (`core.discovery`) from real compose files, resolved by the real `docker compose
config --format json` (no engine needed): the lab's demo stack at two releases, the lab's MLflow stack, and Dify's own
compose files (0.15.3, 1.0.0, 1.12.1 and the split 1.15.0 layout). The proposals are compared with the blocks the
tests write by hand (`lab.stack.Deployment.block_fields`, `lab.mlflow.stack.MlflowDeployment.block_fields`)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.discovery import Probes, Proposal, ReadStack, discover
from core.discovery.proposal import show
from core.io import commands as c
from core.io.compose import ResolvedConfig
from core.io.executor import run
from core.settings import MigrationSettings, Settings, nest_flat_fields
from lab.demo import releases as demo
from lab.mlflow import releases as mlflow
from lab.mlflow.stack import MlflowDeployment
from lab.stack import Deployment
from tests.conftest import DIFY, ROOT

pytestmark = pytest.mark.tools("docker compose")
MLFLOW_PACKAGE = "/opt/mlflow/lib/python3.11/site-packages/mlflow"


def read(folder: Path, compose: str, env: str, project: str = "stack") -> ReadStack:
    """The stack in `folder` as init reads it: `docker compose config --format json` over its files and .env."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docker-compose.yaml").write_text(compose)
    (folder / ".env").write_text(env)
    return resolved(folder, project)


def resolved(folder: Path, project: str = "stack") -> ReadStack:
    where = c.ComposeProject(folder, (folder / "docker-compose.yaml",), folder / ".env", project)
    config = ResolvedConfig.parse(run(c.compose_config_json(where)).stdout)
    return ReadStack(folder, project, ("docker-compose.yaml",), config, folder / "backups",
                     frozenset(config.services))


def settings_of(p: Proposal) -> Settings:
    assert p.gaps == []
    assert p.password is not None
    return Settings.model_validate({**p.fields, "database": {**p.fields["database"], "password": p.password}})


def by_hand(fields: dict) -> Settings:
    return Settings.model_validate(nest_flat_fields(fields))


def assert_same_where_it_matters(found: Settings, hand: Settings) -> None:
    """The fields an upgrade depends on: where the stack and its database are, who writes, how it migrates."""
    assert found.stack.compose_dir == hand.stack.compose_dir and found.stack.project_name == hand.stack.project_name
    assert found.stack.compose_files == hand.stack.compose_files
    for name in ("host", "port", "name", "user", "extra_databases"):
        assert getattr(found.database, name) == getattr(hand.database, name), name
    assert set(hand.database.services) <= set(found.database.services)
    assert found.database.password.get_secret_value() == hand.database.password.get_secret_value()
    assert found.writers.services == hand.writers.services
    assert found.migration.model_dump(exclude={"max_lock_seconds", "probe", "timeout_seconds"}) == \
        hand.migration.model_dump(exclude={"max_lock_seconds", "probe", "timeout_seconds"})
    assert found.health.version_command == hand.health.version_command
    assert [(h.url, h.expect_version_field, h.expect_body, h.expect_version_in_body)
            for h in found.health.http_checks] == \
        [(h.url, h.expect_version_field, h.expect_body, h.expect_version_in_body) for h in hand.health.http_checks]


class AnsweringStack:
    """A stand-in for the live stack's HTTP answers (the unit tests have no running app): URL → (status, body)."""

    def __init__(self, answers: dict[str, tuple[int, str]]):
        self.answers, self.asked = answers, []

    def __call__(self, url: str) -> tuple[int, str] | None:
        self.asked.append(url)
        return self.answers.get(url)


@pytest.mark.parametrize("release", ["v1.0.0", "v2.0.0"])
def test_the_demo_stack_gives_the_block_the_tests_write_by_hand(tmp_path, release):
    r = next(r for r in demo.RELEASES if r.tag == release)
    stack = read(tmp_path / "demo", demo.compose_yaml(r), r.env_example, "demo")
    answer = f'{{"status": "ok", "version": "{r.app_version}"}}'
    health = AnsweringStack({"http://127.0.0.1:5001/health": (200, answer)})
    p = discover(stack, Probes(http=health))
    hand = Deployment("demo", stack.compose_dir, stack.backup_dir, 5001, 15432, "app-password").block_fields()
    assert p.app == "an Alembic app"
    assert_same_where_it_matters(settings_of(p), by_hand(hand))
    assert p.fields["database"]["services"][0] == r.db_service  # the one found first, then the other name
    assert settings_of(p).migration.model_dump() == MigrationSettings().model_dump()  # the demo is the defaults
    assert "http://127.0.0.1:5001/version" in health.asked  # a version endpoint was looked for, none answered
    guessed = {g.field for g in p.guesses}
    assert {"database.port", "database.user", "database.name", "writers.services", "migration.command",
            "health.http_checks"} <= guessed


def test_each_guess_says_why_on_one_line_and_no_secret(tmp_path):
    r = demo.RELEASES[0]
    stack = read(tmp_path / "demo", demo.compose_yaml(r), r.env_example.replace("app-password", "s3cret-pw-xyz"))
    p = discover(stack)
    assert p.password == SecretStr("s3cret-pw-xyz")
    lines = [g.line() for g in p.guesses]
    assert all("\n" not in line and "(" in line for line in lines)
    assert not any("s3cret-pw-xyz" in line for line in lines)
    assert "s3cret-pw-xyz" not in repr(p.fields)
    assert "database.port = 15432  (db's published port for 5432)" in lines


def test_the_mlflow_stack_gives_the_block_the_tests_write_by_hand(tmp_path):
    r = mlflow.RELEASES[0]
    stack = read(tmp_path / "mlflow", mlflow.compose_yaml(r), mlflow.ENV_EXAMPLE, "mlflow")
    answers = AnsweringStack({"http://127.0.0.1:5000/health": (200, "OK\n"),
                              "http://127.0.0.1:5000/version": (200, r.mlflow_version)})
    looked_up = []

    def package_in_image(image: str, package: str) -> str:  # a stand-in: the unit tests have no engine
        looked_up.append((image, package))
        return MLFLOW_PACKAGE

    p = discover(stack, Probes(http=answers, package_dir=package_in_image))
    hand = MlflowDeployment("mlflow", stack.compose_dir, stack.backup_dir, 5000, 15433,
                            "mlflow-password").block_fields()
    assert p.app == "MLflow"
    assert looked_up == [(f"127.0.0.1:5000/{mlflow.IMAGE_REPO}:{r.mlflow_version}", "mlflow")]
    found = settings_of(p)
    assert_same_where_it_matters(found, by_hand(hand))
    assert found.migration.switch is None and found.health.timeout_seconds == 300


def test_mlflow_without_a_look_inside_its_image_leaves_a_gap(tmp_path):
    r = mlflow.RELEASES[0]
    p = discover(read(tmp_path / "mlflow", mlflow.compose_yaml(r), mlflow.ENV_EXAMPLE))
    assert [g.field for g in p.gaps] == ["migration.versions_path"]


def test_a_backend_uri_with_a_password_is_refused_not_copied_into_an_argv(tmp_path):
    r = mlflow.RELEASES[0]
    compose = mlflow.compose_yaml(r).replace("postgresql+psycopg2://${DB_USERNAME:-mlflow}@db",
                                             "postgresql+psycopg2://${DB_USERNAME:-mlflow}:${DB_PASSWORD}@db")
    p = discover(read(tmp_path / "mlflow", compose, mlflow.ENV_EXAMPLE), Probes(package_dir=lambda i, n: "/x"))
    assert [g.field for g in p.gaps] == ["migration.command"]
    assert "PGPASSWORD" in p.gaps[0].why
    assert "mlflow-password" not in repr(p.fields)


DIFY_WRITERS = {
    "0.15.3": ["api", "worker"], "1.0.0": ["api", "plugin_daemon", "worker"],
    "1.12.1": ["api", "plugin_daemon", "worker", "worker_beat"],
}
DIFY_DB_PORT = {"1.0.0": 5432}  # 1.0.0 published PostgreSQL (`${EXPOSE_DB_PORT:-5432}:5432`); the others do not


@pytest.mark.parametrize("tag", sorted(DIFY_WRITERS))
def test_dify_compose_files(tmp_path, tag):
    stack = read(tmp_path / "docker", (DIFY / f"docker-compose.{tag}.yaml").read_text(),
                 (DIFY / f"env.example.{tag}").read_text(), "docker")
    p = discover(stack)
    assert_dify(p, DIFY_WRITERS[tag], DIFY_DB_PORT.get(tag))
    assert p.fields["database"]["services"] == (["db", "db_postgres"] if tag != "1.12.1" else ["db_postgres", "db"])


def test_dify_split_env_layout(tmp_path):
    folder = tmp_path / "docker"
    shutil.copytree(ROOT / "tests" / "fixtures" / "dify-split" / "1.15.0" / "docker", folder)
    shutil.copy(DIFY / "env.example.1.15.0", folder / ".env")
    p = discover(resolved(folder, "docker"))
    assert_dify(p, ["api", "api_websocket", "plugin_daemon", "worker", "worker_beat"])


def assert_dify(p: Proposal, writers: list[str], port: int | None = None) -> None:
    """Dify as its README's block has it; where its compose file publishes no PostgreSQL port, init says so."""
    assert p.app == "Dify"
    assert p.fields["writers"]["services"] == writers
    assert p.fields["migration"] == {
        "service": "api", "switch": "MIGRATION_ENABLED", "command": ["flask", "upgrade-db"], "replace_entrypoint": True,
        "versions_path": "/app/api/migrations/versions",
        "render_sql_command": ["flask", "db", "upgrade", "{range}", "--sql"]}
    assert (p.value("database", "user"), p.value("database", "name")) == ("postgres", "dify")
    if "plugin_daemon" in writers:
        assert p.value("database", "extra_databases") == ["dify_plugin"]
    assert p.password == SecretStr("difyai123456")
    if port is None:
        assert [g.field for g in p.gaps] == ["database.port"]
        assert "publish it on loopback" in p.gaps[0].why
    else:
        assert p.gaps == []
        assert (p.value("database", "host"), p.value("database", "port")) == ("127.0.0.1", port)
    assert p.value("health", "http_checks") == []  # api publishes no port: said, not invented


def test_a_stack_without_postgresql_is_a_gap(tmp_path):
    compose = "services:\n  web:\n    image: nginx:1.27\n    ports: ['127.0.0.1:8080:80']\n"
    p = discover(read(tmp_path / "web", compose, ""))
    assert [g.field for g in p.gaps] == ["database"]


def test_a_long_value_is_cut_on_its_line():
    assert show(["a"] * 3) == "a a a"
    assert show(None) == "(none)"
    assert len(show(["x" * 200])) == 90 and show(["x" * 200]).endswith("…")
