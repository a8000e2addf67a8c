"""env-sync onto Dify's split env layout (1.14+; the 1.15.0 fixtures): an operator's full `.env` made from the 1.0.0
or 1.12.1 template, merged against the target's root template *and* its `envs/**` templates, read from the target's
compose file. Checked against `docker compose config --format json` of the result: what each service gets."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from core.env import envdoc, envlayout
from tests.conftest import DIFY, ROOT
from tests.unit._env_helpers import CLEAN_ENV, snapshot, sync

pytestmark = pytest.mark.tools("docker compose")

SPLIT = ROOT / "tests" / "fixtures" / "dify-split" / "1.15.0" / "docker"


def split_checkout(tmp_path: Path) -> Path:
    """A git checkout whose one commit holds the split release's `docker/` folder (the target of an upgrade)."""
    repo = tmp_path / "repo"
    shutil.copytree(SPLIT, repo / "docker")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "split"], check=True)
    return repo
SECRET_KEY, SMTP_PASSWORD = "sk-planted-split-K1", "planted-smtp-pw-S2"
SMTP_SERVER = "smtp.example.org"
GENUINELY_REMOVED = {  # in no template of the target and read by no `${VAR}` of its compose file
    "1.0.0": {"ORACLE_HOST", "ORACLE_PORT", "ORACLE_DATABASE", "WORKFLOW_PARALLEL_DEPTH_LIMIT", "PGUSER",
              "POSTGRES_PASSWORD", "POSTGRES_DB"},
    "1.12.1": {"ENFORCE_LANGGENIUS_PLUGIN_SIGNATURES"},
}


def target(tmp_path: Path) -> Path:
    """A copy of the target's docker/ folder, as the operator's checkout has it after `git checkout`."""
    docker = tmp_path / "docker"
    shutil.copytree(SPLIT, docker)
    return docker


def operator_env(docker: Path, release: str) -> Path:
    """A realistic .env made from `release`'s template: secrets, a customized SMTP value, a user-only key, a key the
    operator commented out; the rest at the old defaults (stale ones included: DB_HOST=db in 1.0.0)."""
    text = (DIFY / f"env.example.{release}").read_text()
    text = re.sub(r"(?m)^SECRET_KEY=.*$", f"SECRET_KEY={SECRET_KEY}", text)
    text = re.sub(r"(?m)^SMTP_SERVER=.*$", f"SMTP_SERVER={SMTP_SERVER}", text)
    text = re.sub(r"(?m)^SMTP_PASSWORD=.*$", f"SMTP_PASSWORD={SMTP_PASSWORD}", text)
    text = re.sub(r"(?m)^LOG_LEVEL=.*$", "# LOG_LEVEL=DEBUG", text)
    text += "\nMY_OWN_SETTING=kept-as-is\n"
    env = docker / ".env"
    env.write_text(text)
    return env


def run_sync(env: Path, docker: Path, release: str, *extra: str) -> subprocess.CompletedProcess:
    return sync(env, "--compose-file", str(docker / "docker-compose.yaml"), *extra, old=DIFY / f"env.example.{release}",
                new=docker / ".env.example")


def merged(tmp_path: Path, release: str) -> tuple[Path, Path, dict]:
    """The target folder, the operator's .env merged onto it, and the `--json` report."""
    docker = target(tmp_path)
    env = operator_env(docker, release)
    done = run_sync(env, docker, release, "--json")
    assert done.returncode == 0, done.stderr
    return docker, env, json.loads(done.stdout)


def effective(docker: Path) -> dict:
    """`docker compose config --format json` of the target with its .env: each service's environment as compose
    computes it (env_file in order, `.env` last, then `environment:`)."""
    done = subprocess.run(["docker", "compose", "--project-directory", str(docker), "-f",
                           str(docker / "docker-compose.yaml"), "config", "--format", "json"],
                          check=True, capture_output=True, text=True, env=CLEAN_ENV)
    return json.loads(done.stdout)["services"]


def used_by_target() -> set[str]:
    """Every key a target template defines or its compose file interpolates, read independently of env-sync."""
    keys: set[str] = set()
    for path in [SPLIT / ".env.example", *SPLIT.glob("envs/**/*.env.example")]:
        keys |= set(re.findall(r"(?m)^([A-Za-z_][A-Za-z0-9_]*)=", path.read_text()))
    return keys | set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", (SPLIT / "docker-compose.yaml").read_text()))


@pytest.mark.parametrize("release", ["1.0.0", "1.12.1"])
def test_no_key_is_misreported_as_dropped_and_moved_keys_name_their_file(tmp_path, release):
    _, _, report = merged(tmp_path, release)
    dropped = set(report["keys"].get("dropped", []))
    assert dropped == GENUINELY_REMOVED[release]
    assert not dropped & used_by_target()
    moved = set(report["keys"]["moved"])
    assert {"SMTP_SERVER", "SMTP_PORT", "MAIL_TYPE", "S3_REGION", "UPLOAD_FILE_SIZE_LIMIT", "QDRANT_URL"} <= moved
    assert report["files"]["SMTP_SERVER"] == "envs/core-services/shared.env.example"
    assert report["files"]["REDIS_CLUSTERS"] == "envs/databases/redis.env.example"
    if release == "1.0.0":  # the stale default, in the root template still
        assert "DB_HOST" in report["keys"]["default_moved"] and report["files"]["DB_HOST"] == ".env.example"
    assert report["files"]["MY_OWN_SETTING"] == ".env"
    assert "PGVECTOR_PGDATA" in report["keys"]["interpolated"]  # in no template, read by `${PGVECTOR_PGDATA:-…}`
    assert report["files"]["PGVECTOR_PGDATA"] == "docker-compose.yaml"
    assert report["files"]["ETCD_ENDPOINTS"] == "envs/vectorstores/milvus.env.example"


@pytest.mark.parametrize("release", ["1.0.0", "1.12.1"])
def test_each_service_gets_what_the_report_says_and_the_database_starts(tmp_path, release):
    docker, env, report = merged(tmp_path, release)
    values = envdoc.parse(env.read_text()).values
    services = effective(docker)
    assert "db_postgres" in services  # in an active profile: `docker compose up` starts it
    layout = envlayout.EnvLayout.parse(subprocess.run(
        ["docker", "compose", "--project-directory", str(docker), "-f", str(docker / "docker-compose.yaml"),
         "--profile", "*", "config", "--no-interpolate", "--format", "json"], check=True, capture_output=True,
        text=True, env=CLEAN_ENV).stdout, docker)
    raw = json.loads(subprocess.run(
        ["docker", "compose", "--project-directory", str(docker), "-f", str(docker / "docker-compose.yaml"),
         "config", "--no-interpolate", "--format", "json"], check=True, capture_output=True, text=True,
        env=CLEAN_ENV).stdout)["services"]
    reported = [k for cat in ("moved", "default_moved", "customized", "conflict", "interpolated", "user_only")
                for k in report["keys"].get(cat, [])]
    checked = 0
    for service in ("api", "worker", "worker_beat", "plugin_daemon"):
        assert layout.services[service][-1].path == ".env"  # .env is loaded last: it wins over envs/**
        own = set(raw[service].get("environment") or {})  # `environment:` entries override env_file
        environment = services[service]["environment"]
        for key in reported:
            value = values.get(key)
            if key in own or value is None or "$" in value:
                continue
            assert environment.get(key) == value, (service, key)
            checked += 1
    assert checked > 1000
    api = services["api"]["environment"]
    assert api["DB_HOST"] == "db_postgres"  # the stale default fixed (1.0.0's DB_HOST=db)
    assert api["SMTP_SERVER"] == SMTP_SERVER  # a customized value of a moved key kept
    assert api["MY_OWN_SETTING"] == "kept-as-is"
    assert "LOG_LEVEL" not in api  # commented out by the operator: stays so (compose passes no value)


def test_a_moved_key_whose_default_changed_gets_the_new_default(tmp_path):
    docker = target(tmp_path)
    env = operator_env(docker, "1.0.0")
    assert "MILVUS_URI=http://127.0.0.1:19530\n" in env.read_text()  # 1.0.0's default
    done = run_sync(env, docker, "1.0.0")
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if " MILVUS_URI:" in ln)
    assert line.split() == ["moved", "MILVUS_URI:", "http://127.0.0.1:19530", "->", "http://host.docker.internal:19530",
                            "[envs/core-services/shared.env.example]"]
    assert "MILVUS_URI=http://host.docker.internal:19530\n" in env.read_text()
    assert effective(docker)["api"]["environment"]["MILVUS_URI"] == "http://host.docker.internal:19530"


def test_no_envs_copy_is_created_and_no_secret_is_printed(tmp_path):
    docker = target(tmp_path)
    env = operator_env(docker, "1.12.1")
    for extra in (("--json",), ()):
        env.write_text(env.read_text())  # the same operator file each time
        done = run_sync(env, docker, "1.12.1", "--dry-run", *extra)
        assert done.returncode == 0, done.stderr
        for secret in (SECRET_KEY, SMTP_PASSWORD):
            assert secret not in done.stdout + done.stderr
    assert run_sync(env, docker, "1.12.1").returncode == 0
    assert not list(docker.glob("envs/**/*.env"))
    assert SMTP_PASSWORD in env.read_text()


def test_a_malformed_envs_template_is_refused_and_nothing_is_written(tmp_path):
    docker = target(tmp_path)
    env = operator_env(docker, "1.12.1")
    bad = docker / "envs" / "core-services" / "api.env.example"
    bad.write_text(bad.read_text() + "this is not a binding\n")
    before = snapshot(tmp_path)
    done = run_sync(env, docker, "1.12.1")
    assert done.returncode == 2
    assert f"{bad}, line 18" in done.stderr and "nothing was written" in done.stderr
    assert snapshot(tmp_path) == before


def test_layout_reads_short_and_long_env_file_syntax_in_order():
    config = json.dumps({"services": {
        "a": {"env_file": [{"path": "/p/envs/x.env", "required": False}, "/p/.env"]},
        "b": {"environment": {"X": "${Y:-1}"}},
    }})
    layout = envlayout.EnvLayout.parse(config, Path("/p"))
    assert layout.services["a"] == (envlayout.EnvSource("envs/x.env", False), envlayout.EnvSource(".env", True))
    assert layout.services["b"] == ()
    assert layout.split and layout.interpolated == frozenset({"Y"})
    assert layout.loading("envs/x.env") == ["a"]


@pytest.mark.tools("docker compose", "git")
def test_the_flows_merge_reads_the_split_layout_at_the_target_commit(tmp_path):
    """Pre-flight's merge (`envsync.elsewhere_at` + `merge_env`) on a checkout whose target commit is the split
    release: moved keys are moved, as the CLI reports them."""
    from core.env import envsync

    repo = split_checkout(tmp_path)
    elsewhere = envsync.elsewhere_at(repo, "HEAD", ["docker/docker-compose.yaml"], scratch=tmp_path)
    assert elsewhere is not None
    assert elsewhere.homes["SMTP_SERVER"].file == "envs/core-services/shared.env.example"
    env = operator_env(repo / "docker", "1.12.1")
    result, _ = envsync.merge_env(env, (DIFY / "env.example.1.12.1").read_text(),
                                  (SPLIT / ".env.example").read_text(), elsewhere=elsewhere)
    assert result.by_category["dropped"] == ["ENFORCE_LANGGENIUS_PLUGIN_SIGNATURES"]
    assert result.change("SMTP_SERVER").after == SMTP_SERVER


def test_a_symlinked_env_is_merged_through_the_link(tmp_path):
    docker = target(tmp_path)
    real = operator_env(docker, "1.0.0").rename(tmp_path / "real.env")
    (docker / ".env").symlink_to(real)
    done = run_sync(docker / ".env", docker, "1.0.0")
    assert done.returncode == 0, done.stderr
    assert (docker / ".env").is_symlink() and "DB_HOST=db_postgres\n" in real.read_text()
    assert effective(docker)["api"]["environment"]["DB_HOST"] == "db_postgres"
