"""env-sync of Dify's split layout, beyond the `.env`: existing `envs/**.env` copies merged against their own
templates, `--slim`, `--generate-missing-secrets`, the Compose version the target needs, the effective value per
service (checked against `docker compose config --format json`), and bad input (nothing written)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from core.env import composeversion, effective, envdoc, envlayout
from tests.conftest import DIFY
from tests.unit._env_helpers import CLEAN_ENV, fake_old_compose, snapshot, sync
from tests.unit.test_env_split_layout import (SMTP_PASSWORD, SMTP_SERVER, SPLIT, operator_env, run_sync,
                                             split_checkout, target)

pytestmark = pytest.mark.tools("docker compose")

COPY = "envs/core-services/shared.env"
COPY_SMTP, COPY_PASSWORD = "smtp.from-the-copy.example", "copy-smtp-pw-Z9"
REQUIRED_SECRET = "DIFY_AGENT_LOCAL_SANDBOX_AUTH_TOKEN"


def compose(docker: Path, *args: str) -> str:
    return subprocess.run(["docker", "compose", "--project-directory", str(docker), "-f",
                           str(docker / "docker-compose.yaml"), *args], check=True, capture_output=True, text=True,
                          env=CLEAN_ENV).stdout


def every_value_as_compose_computes_it(docker: Path) -> tuple[int, list]:
    """stackshift's model of each service's environment (`core.env.effective`) against `docker compose config
    --format json` of the same files, every key of every service of every profile: (keys compared, mismatches)."""
    layout = envlayout.EnvLayout.parse(compose(docker, "--profile", "*", "config", "--no-interpolate", "--format",
                                               "json"), docker)
    real = json.loads(compose(docker, "--profile", "*", "config", "--format", "json"))["services"]
    files = {e.path: envdoc.parse((docker / e.path).read_text(), e.path)
             for entries in layout.services.values() for e in entries if (docker / e.path).is_file()}
    model = effective.every_service(layout, files)
    compared, wrong = 0, []
    for service, env in model.items():
        want = real[service].get("environment") or {}
        for key in set(want) | set(env):
            compared += 1
            if want.get(key) != (env[key].value if key in env else None):
                wrong.append((service, key))
    return compared, wrong


def shared_copy(docker: Path, text: str | None = None) -> Path:
    """The operator's envs/core-services/shared.env, made from the target's template: a customized SMTP server and
    an SMTP password (a secret), both of which the .env sets too (to other values), and a key of its own."""
    copy = docker / COPY
    text = text if text is not None else (docker / (COPY + ".example")).read_text()
    text = re.sub(r"(?m)^SMTP_SERVER=.*$", f"SMTP_SERVER={COPY_SMTP}", text)
    text = re.sub(r"(?m)^SMTP_PASSWORD=.*$", f"SMTP_PASSWORD={COPY_PASSWORD}", text)
    copy.write_text(text + "MY_COPY_ONLY=from-the-copy\n")
    return copy


@pytest.mark.parametrize("slim", [(), ("--slim",)], ids=["full", "slim"])
@pytest.mark.parametrize("release", ["1.0.0", "1.12.1"])
def test_done_when_realistic_files_every_service_gets_what_the_report_says(tmp_path, release, slim):
    """A full .env (stale defaults, customized SMTP, secrets, a user-only and a commented key) behind a symlink, and
    an envs/** copy: 0 keys misreported as dropped, the reported per-service values are compose's, no secret printed,
    and the database service is in an active profile; kept full, or slimmed."""
    docker = target(tmp_path)
    real = operator_env(docker, release).rename(tmp_path / "operator.env")
    (docker / ".env").symlink_to(real)
    shared_copy(docker)
    done = run_sync(docker / ".env", docker, release, "--json", *slim)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for secret in (SMTP_PASSWORD, COPY_PASSWORD, "sk-planted-split-K1"):
        assert secret not in done.stdout + done.stderr
    used = {k for p in [SPLIT / ".env.example", *SPLIT.glob("envs/**/*.env.example")]
            for k in envdoc.parse(p.read_text()).values} | set(re.findall(r"\$\{(\w+)", (SPLIT / "docker-compose.yaml")
                                                                             .read_text()))
    assert not set(report["keys"].get("dropped", [])) & used
    assert (len(report["moved_out"]) > 200) == bool(slim) and "SMTP_SERVER" in report["keys"]["moved"]
    assert (docker / ".env").is_symlink() and "DB_HOST=db_postgres\n" in real.read_text()
    services = json.loads(compose(docker, "config", "--format", "json"))["services"]
    assert "db_postgres" in services  # in an active profile
    shown = report["effective"]
    assert shown["SMTP_SERVER"]["api"] == {"value": SMTP_SERVER, "from": ".env"}  # .env is loaded last: it wins
    assert shown["SMTP_PASSWORD"]["worker"] == {"value": "(secret)", "from": ".env"}
    checked = 0
    for key, per_service in shown.items():
        for service, got in per_service.items():
            value = services[service]["environment"][key] if service in services else None
            if service not in services:
                continue  # not in an active profile: compose leaves it out of `config`
            assert got["value"] in (value, "(secret)"), (key, service)
            checked += 1
    assert checked > 20
    compared, wrong = every_value_as_compose_computes_it(docker)
    assert compared > 3000 and wrong == []


def test_an_existing_copy_is_merged_against_its_own_templates(tmp_path):
    """Three-way, as .env is: the base is the deployed release's envs template (here a synthesized earlier split
    release whose MILVUS_URI default was 1.0.0's), the new side the target's."""
    docker = target(tmp_path)
    old = tmp_path / "old" / "docker"
    shutil.copytree(SPLIT, old)
    old_shared = (old / (COPY + ".example")).read_text().replace(
        "MILVUS_URI=http://host.docker.internal:19530", "MILVUS_URI=http://127.0.0.1:19530")
    (old / (COPY + ".example")).write_text(old_shared)
    env = docker / ".env"
    env.write_text((SPLIT / ".env.example").read_text())
    copy = shared_copy(docker, old_shared)
    done = sync(env, "--compose-file", str(docker / "docker-compose.yaml"), "--json", old=old / ".env.example",
                new=docker / ".env.example")
    assert done.returncode == 0, done.stderr
    merged = json.loads(done.stdout)["copies"][COPY]
    assert merged["written"] and merged["keys"]["default_moved"] == ["MILVUS_URI"]
    assert set(merged["keys"]["customized"]) == {"SMTP_SERVER", "SMTP_PASSWORD"}
    assert merged["keys"]["user_only"] == ["MY_COPY_ONLY"] and merged["files"]["MY_COPY_ONLY"] == COPY
    assert merged["files"]["MILVUS_URI"] == COPY + ".example"
    text = copy.read_text()
    assert "MILVUS_URI=http://host.docker.internal:19530\n" in text and f"SMTP_SERVER={COPY_SMTP}\n" in text
    assert [p.read_text() for p in (copy.parent / "env-backup").iterdir()][0].count("127.0.0.1:19530") == 1
    again = json.loads(sync(env, "--compose-file", str(docker / "docker-compose.yaml"), "--json",
                            old=old / ".env.example", new=docker / ".env.example").stdout)
    assert again["copies"][COPY]["changed"] is False


def test_a_copy_without_the_old_template_keeps_every_value_and_says_so(tmp_path):
    docker = target(tmp_path)
    env = operator_env(docker, "1.12.1")
    shared_copy(docker)
    done = run_sync(env, docker, "1.12.1", "--json", "--dry-run")
    assert done.returncode == 0, done.stderr
    merged = json.loads(done.stdout)["copies"][COPY]
    assert "default_moved" not in merged["keys"] and set(merged["keys"]["customized"]) == {"SMTP_SERVER",
                                                                                            "SMTP_PASSWORD"}
    assert "merged against the target's template only" in merged["notes"][0]


def test_slim_writes_the_essentials_and_the_customized_keys_and_says_what_it_took_out(tmp_path):
    docker = target(tmp_path)
    env = operator_env(docker, "1.12.1")
    done = run_sync(env, docker, "1.12.1", "--slim")
    assert done.returncode == 0, done.stderr
    rows = [ln for ln in done.stdout.splitlines() if ln.startswith("moved_out ")]
    assert any(ln.split()[1] == "UPLOAD_FILE_SIZE_LIMIT:" for ln in rows)
    assert "--slim: at the target's default (envs/core-services/shared.env.example: 15)" in done.stdout
    values = envdoc.parse(env.read_text()).values
    root = envdoc.parse((SPLIT / ".env.example").read_text()).values
    assert set(root) - {"LOG_LEVEL"} <= set(values)  # every essential (but the one the operator commented out)
    assert values["SMTP_SERVER"] == SMTP_SERVER and values["SMTP_PASSWORD"] == SMTP_PASSWORD  # customized, kept
    assert values["MY_OWN_SETTING"] == "kept-as-is" and "UPLOAD_FILE_SIZE_LIMIT" not in values
    assert len(values) < len(root) + 20
    assert not list(docker.glob("envs/**/*.env"))  # no copy is created
    api = json.loads(compose(docker, "config", "--format", "json"))["services"]["api"]["environment"]
    assert "UPLOAD_FILE_SIZE_LIMIT" not in api and api["SMTP_SERVER"] == SMTP_SERVER
    assert SMTP_PASSWORD not in done.stdout + done.stderr


def test_without_slim_the_env_is_never_split(tmp_path):
    docker = target(tmp_path)
    env = operator_env(docker, "1.12.1")
    report = json.loads(run_sync(env, docker, "1.12.1", "--json").stdout)
    assert report["moved_out"] == [] and "UPLOAD_FILE_SIZE_LIMIT" in envdoc.parse(env.read_text()).values


def requiring_a_secret(docker: Path) -> None:
    """The target's compose file made to require a secret (`${VAR:?}`) its templates leave empty, as a later release
    does for the local sandbox's auth token. A variant of the 1.15.0 fixture, written for this test."""
    path = docker / "docker-compose.yaml"
    text = path.read_text().replace("SHELLCTL_AUTH_TOKEN: ${DIFY_AGENT_SHELLCTL_AUTH_TOKEN:-}",
                                    f"SHELLCTL_AUTH_TOKEN: ${{{REQUIRED_SECRET}:?set it in .env}}")
    assert REQUIRED_SECRET in text
    path.write_text(text)
    (docker / ".env.example").write_text((docker / ".env.example").read_text() + f"{REQUIRED_SECRET}=\n")


def test_a_new_required_secret_is_refused_with_its_name_and_nothing_is_written(tmp_path):
    docker = target(tmp_path)
    requiring_a_secret(docker)
    env = operator_env(docker, "1.12.1")
    before = snapshot(tmp_path)
    done = run_sync(env, docker, "1.12.1")
    assert done.returncode == 2
    assert REQUIRED_SECRET in done.stderr and "--generate-missing-secrets" in done.stderr
    assert "nothing was written" in done.stderr and "Traceback" not in done.stderr
    assert snapshot(tmp_path) == before


def test_generate_missing_secrets_writes_a_random_value_and_never_prints_it(tmp_path):
    docker = target(tmp_path)
    requiring_a_secret(docker)
    env = operator_env(docker, "1.12.1")
    done = run_sync(env, docker, "1.12.1", "--generate-missing-secrets")
    assert done.returncode == 0, done.stderr
    value = envdoc.parse(env.read_text()).values[REQUIRED_SECRET]
    assert value and len(value) == 43 and value not in done.stdout + done.stderr
    row = next(ln for ln in done.stdout.splitlines() if f" {REQUIRED_SECRET}:" in ln)
    assert row.split()[:4] == ["generated", f"{REQUIRED_SECRET}:", "(unset)", "->"] and "(secret)" in row
    sandbox = json.loads(compose(docker, "config", "--format", "json"))["services"]["local_sandbox"]
    assert sandbox["environment"]["SHELLCTL_AUTH_TOKEN"] == value
    second = env.read_text()
    again = run_sync(env, docker, "1.12.1", "--generate-missing-secrets", "--json")
    assert json.loads(again.stdout)["generated"] == [] and env.read_text() == second  # set now: kept


def test_a_missing_envs_template_is_refused_by_name_and_nothing_is_written(tmp_path):
    docker = target(tmp_path)
    env = operator_env(docker, "1.12.1")
    shared_copy(docker)
    (docker / "envs" / "core-services" / "api.env.example").unlink()
    before = snapshot(tmp_path)
    done = run_sync(env, docker, "1.12.1")
    assert done.returncode == 2
    assert "envs/core-services/api.env.example" in done.stderr and "nothing was written" in done.stderr
    assert snapshot(tmp_path) == before


def test_the_compose_version_the_target_needs_is_a_function_of_the_two():
    import yaml

    split = yaml.safe_load((SPLIT / "docker-compose.yaml").read_text())
    one_env = yaml.safe_load((DIFY / "docker-compose.1.12.1.yaml").read_text())
    with pytest.raises(composeversion.ComposeTooOld) as refused:
        composeversion.check("v2.23.3", split, "docker-compose.yaml")
    assert refused.value.found == "v2.23.3" and refused.value.needed == "2.24.0"
    assert "needs Docker Compose 2.24.0 or later" in str(refused.value) and "api" in str(refused.value)
    assert composeversion.check("2.24.0", split, "f").version == (2, 24, 0)  # type: ignore[union-attr]
    assert composeversion.check("v2.40.3", split, "f") is not None
    assert composeversion.check("v2.0.0", one_env, "f") is None  # the short form: any Compose v2
    with pytest.raises(composeversion.ComposeVersionUnknown):
        composeversion.version_of('{"version": "dev"}')
    assert composeversion.version_of(subprocess.run(["docker", "compose", "version", "--format", "json"],
                                                    check=True, capture_output=True, text=True).stdout)


def test_an_old_compose_stops_env_sync_with_both_versions_and_nothing_is_written(tmp_path):
    """FAKE_OLD_COMPOSE: a `docker` first on PATH that reports Compose 2.20.3 and passes everything else to the real
    one. A mock, because no Compose older than 2.24 can be installed in the test run."""
    docker = target(tmp_path)
    env = operator_env(docker, "1.12.1")
    fake = fake_old_compose(tmp_path / "bin", "v2.20.3")
    before = snapshot(docker)
    done = subprocess.run([*sync_argv(env, docker)], check=False, capture_output=True, text=True,
                          env=CLEAN_ENV | {"PATH": f"{fake}{os.pathsep}{CLEAN_ENV['PATH']}"})
    assert done.returncode == 2
    assert "needs Docker Compose 2.24.0 or later" in done.stderr and "v2.20.3" in done.stderr
    assert "nothing was written" in done.stderr and "Traceback" not in done.stderr
    assert snapshot(docker) == before


def sync_argv(env: Path, docker: Path) -> list[str]:
    from tests.conftest import ROOT

    return [str(ROOT / "stackshift"), "env-sync", "--env-file", str(env), "--old-template",
            str(DIFY / "env.example.1.12.1"), "--new-template", str(docker / ".env.example"), "--compose-file",
            str(docker / "docker-compose.yaml")]


def test_interpolation_follows_compose():
    values = {"A": "a", "E": ""}.get
    assert effective.interpolate("${A}-${B:-b}-${E:-e}-${E-e}-${B-x}-$$A-${A:+set}-${B:+set}", values) == \
        "a-b-e--x-$A-set-"
    assert effective.interpolate("${B:-${A}x}", values) == "ax"


@pytest.mark.tools("docker compose", "git")
def test_the_flows_merge_reports_what_each_service_gets_and_checks_the_compose_version(tmp_path, monkeypatch):
    """Pre-flight's merge (`envsync.elsewhere_at`, `merge_env`, `stage`) on a checkout whose target is the split
    release, with an operator's envs/** copy: the plan carries the per-service values, masked, and the env-diff
    markdown shows them; an old Compose stops it (FAKE_OLD_COMPOSE, as above)."""
    from dataclasses import asdict

    from core import report
    from core.env import envsync

    repo = split_checkout(tmp_path)
    elsewhere = envsync.elsewhere_at(repo, "HEAD", ["docker/docker-compose.yaml"], scratch=tmp_path)
    env = operator_env(repo / "docker", "1.12.1")
    shared_copy(repo / "docker")
    result, source = envsync.merge_env(env, (DIFY / "env.example.1.12.1").read_text(),
                                       (SPLIT / ".env.example").read_text(), elsewhere=elsewhere)
    staged = envsync.stage(result, tmp_path / "runs" / "run" / "env.merged", source)
    assert staged.effective["SMTP_SERVER"]["api"] == {"value": SMTP_SERVER, "from": ".env"}
    assert staged.effective["SMTP_PASSWORD"]["worker"] == {"value": "(secret)", "from": ".env"}
    markdown = report.env_markdown("staging", staged.rows, staged.counts, staged.effective)
    assert "## What each service gets, where env files disagree" in markdown
    assert f"| `SMTP_SERVER` | api | {SMTP_SERVER} | .env |" in markdown
    for secret in (SMTP_PASSWORD, COPY_PASSWORD):
        assert secret not in json.dumps(asdict(staged)) + markdown
    fake = fake_old_compose(tmp_path / "bin", "v2.23.0")
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(composeversion.ComposeTooOld, match=r"needs Docker Compose 2\.24\.0 or later .* v2\.23\.0"):
        envsync.elsewhere_at(repo, "HEAD", ["docker/docker-compose.yaml"], scratch=tmp_path)
