"""The database trap with a customized COMPOSE_PROFILES (issue 9, defect 3): a merged .env that leaves a service
the target needs outside the active profiles is refused, in the CLI and in the flow's plan, before anything
changes; `--accept-conflicts` / `accept_env_conflicts` goes ahead and says so."""
import json
import subprocess

import pytest

from core import envcheck, envmerge, envsync
from core.errors import NeededServiceInactive, PreflightError
from core.report import env_markdown
from tests.unit._env_helpers import CLEAN_ENV, COMPOSE_1_12_1, NEW, OLD, operator_env, snapshot, sync

pytestmark = pytest.mark.tools("docker compose", "git")

UNSTRUCTURED = "COMPOSE_PROFILES=${VECTOR_STORE:-weaviate},unstructured\n"  # what Dify 1.0.0's template suggests
FIX = "COMPOSE_PROFILES=${VECTOR_STORE:-weaviate},unstructured,postgresql"


def unstructured_env(tmp_path, template=OLD):
    text = template.read_text()
    assert "COMPOSE_PROFILES=${VECTOR_STORE:-weaviate}\n" in text
    return operator_env(tmp_path, text.replace("COMPOSE_PROFILES=${VECTOR_STORE:-weaviate}\n", UNSTRUCTURED))


def active_services(env, compose=COMPOSE_1_12_1) -> list[str]:
    done = subprocess.run(["docker", "compose", "--project-directory", str(compose.parent), "-f", str(compose),
                           "--env-file", str(env), "config", "--format", "json"], capture_output=True, text=True,
                          env=CLEAN_ENV, check=True)
    return sorted(json.loads(done.stdout)["services"])


@pytest.mark.parametrize("release", ["0.15.3", "1.0.0"])
def test_customized_compose_profiles_that_drops_the_database_is_refused_with_key_conflict_and_fix(tmp_path, release):
    old = OLD.parent / f"env.example.{release}"
    env = unstructured_env(tmp_path, old)
    before = snapshot(tmp_path)
    done = sync(env, "--compose-file", str(COMPOSE_1_12_1), old=old)
    assert done.returncode == 2, done.stdout + done.stderr
    err = done.stderr
    assert "COMPOSE_PROFILES=${VECTOR_STORE:-weaviate},unstructured (you customized it, and the new template's " \
           "default is now ${VECTOR_STORE:-weaviate},${DB_TYPE:-postgresql})" in err
    assert "leave out db_postgres (profile postgresql: the database service)" in err
    assert f"Set {FIX} in the env file, or rerun with --accept-conflicts" in err
    assert snapshot(tmp_path) == before


def test_without_the_check_the_same_merge_would_not_start_the_database(tmp_path):
    """Why the check exists: compose accepts this result, and db_postgres is simply not started."""
    env = unstructured_env(tmp_path)
    assert sync(env).returncode == 0
    services = active_services(env)
    assert "unstructured" in services and "db_postgres" not in services


def test_the_suggested_fix_starts_the_database(tmp_path):
    env = unstructured_env(tmp_path)
    env.write_text(env.read_text().replace(UNSTRUCTURED, FIX + "\n"))
    done = sync(env, "--compose-file", str(COMPOSE_1_12_1))
    assert done.returncode == 0, done.stderr
    assert {"db_postgres", "unstructured", "weaviate"} <= set(active_services(env))


def test_accept_conflicts_writes_and_notes_the_conflict(tmp_path):
    env = unstructured_env(tmp_path)
    done = sync(env, "--compose-file", str(COMPOSE_1_12_1), "--accept-conflicts")
    assert done.returncode == 0, done.stderr
    assert "accepted: COMPOSE_PROFILES=" in done.stdout and FIX + " would start it" in done.stdout
    assert envmerge.parse(env.read_text()).values["DB_HOST"] == "db_postgres"
    again = json.loads(sync(env, "--compose-file", str(COMPOSE_1_12_1), "--accept-conflicts", "--json").stdout)
    assert again["accepted_conflicts"] == ["COMPOSE_PROFILES"] and again["changed"] is False


def test_deleted_compose_profiles_is_caught_too(tmp_path):
    env = operator_env(tmp_path, OLD.read_text().replace("COMPOSE_PROFILES=${VECTOR_STORE:-weaviate}\n", ""))
    before = snapshot(tmp_path)
    done = sync(env, "--compose-file", str(COMPOSE_1_12_1))
    assert done.returncode == 2 and "COMPOSE_PROFILES=(unset) (you deleted it from the file" in done.stderr
    assert "Set COMPOSE_PROFILES=postgresql" in done.stderr and snapshot(tmp_path) == before


def test_untouched_env_passes_the_check(tmp_path):
    env = operator_env(tmp_path)
    done = sync(env, "--compose-file", str(COMPOSE_1_12_1), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted_conflicts"] == []
    assert "db_postgres" in active_services(env)


def test_without_compose_file_a_changed_compose_profiles_gets_a_hint(tmp_path):
    done = sync(unstructured_env(tmp_path), "--dry-run")
    assert done.returncode == 0 and "note: COMPOSE_PROFILES is yours" in done.stdout and "--compose-file" in done.stdout


def test_required_depends_on_target_left_out_is_refused_and_optional_ones_are_not(tmp_path):
    compose = tmp_path / "docker-compose.yaml"
    compose.write_text("services:\n"
                       "  api:\n    image: busybox\n    depends_on:\n"
                       "      cache: {condition: service_started}\n"
                       "      search: {condition: service_started, required: false}\n"
                       "  cache:\n    image: busybox\n    profiles: [cache]\n"
                       "  search:\n    image: busybox\n    profiles: [search]\n")
    template = tmp_path / "t.example"
    template.write_text("COMPOSE_PROFILES=cache\nA=1\n")
    env = operator_env(tmp_path, "COMPOSE_PROFILES=search\nA=1\n")
    before = snapshot(tmp_path)
    done = sync(env, "--compose-file", str(compose), old=template, new=template)
    assert done.returncode == 2 and "leave out cache (profile cache: needed by api)" in done.stderr
    assert "Set COMPOSE_PROFILES=search,cache" in done.stderr and snapshot(tmp_path) == before
    env.write_text("COMPOSE_PROFILES=cache\nA=1\n")
    assert sync(env, "--compose-file", str(compose), old=template, new=template).returncode == 0


def test_db_service_names_the_database(tmp_path):
    compose = tmp_path / "docker-compose.yaml"
    compose.write_text("services:\n  app:\n    image: busybox\n  pg:\n    image: busybox\n    profiles: [sql]\n")
    template = tmp_path / "t.example"
    template.write_text("COMPOSE_PROFILES=sql\nA=1\n")
    env = operator_env(tmp_path, "COMPOSE_PROFILES=\nA=1\n")
    assert sync(env, "--compose-file", str(compose), old=template, new=template, *()).returncode == 0
    done = sync(env, "--compose-file", str(compose), "--db-service", "pg", old=template, new=template)
    assert done.returncode == 2 and "leave out pg (profile sql: the database service)" in done.stderr
    no_compose = sync(env, "--db-service", "pg", old=template, new=template)
    assert no_compose.returncode == 2 and "--db-service needs --compose-file" in no_compose.stderr


def test_compose_messages_lose_secret_values(tmp_path):
    compose = tmp_path / "docker-compose.yaml"
    compose.write_text("services:\n  app:\n    image: busybox\n")
    template = tmp_path / "t.example"
    template.write_text("A=1\nMY_PASSWORD=x\n")
    env = operator_env(tmp_path, "A=1\nMY_PASSWORD=sup3r-s3cret-value${oops\n")
    done = sync(env, "--compose-file", str(compose), old=template, new=template)
    assert done.returncode == 2 and "rejects the merged env" in done.stderr
    assert "sup3r-s3cret" not in done.stderr and "***" in done.stderr


# Pure parts: no compose run.

def model(active: str, **services) -> envcheck.StackModel:
    config = {"services": {name: spec for name, spec in services.items()} | {
        envcheck.PROBE_SERVICE: {"environment": {"COMPOSE_PROFILES": active}}}}
    return envcheck.StackModel.parse(json.dumps(config))


def test_stack_model_reads_profiles_required_dependencies_and_active_profiles():
    m = model("weaviate, unstructured", api={"depends_on": {"redis": {"required": True},
                                                             "db_postgres": {"required": False}}},
              redis={}, db_postgres={"profiles": ["postgresql"]}, weaviate={"profiles": ["weaviate"]})
    assert m.active_profiles == ("weaviate", "unstructured") and m.needs["api"] == ("redis",)
    assert [s for s in m.services if m.is_active(s)] == ["api", "redis", "weaviate"]
    needs = envcheck.inactive_needs(m, ["db", "db_postgres"])
    assert [(n.service, n.why) for n in needs] == [("db_postgres", "the database service")]
    assert envcheck.fixed_profiles("weaviate,unstructured", needs) == "weaviate,unstructured,postgresql"
    assert envcheck.fixed_profiles(None, needs) == "postgresql"
    assert envcheck.inactive_needs(model("*", db={"profiles": ["x"]}), ["db"]) == []


def test_required_variables_are_read_from_the_compose_text():
    text = "a: ${A:?set A}\nb: ${B?x}\nc: ${C:-d}\nd: $${E:?escaped}\ne: ${F}\n"
    assert envcheck.required_variables(text) == {"A", "B"}


# The flow: the same checks in the plan, from the git checkout, before anything changes.

def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


@pytest.fixture()
def dify_checkout(tmp_path):
    repo = tmp_path / "docker"
    repo.mkdir()
    git(repo, "init", "--quiet")
    for tag, release in (("1.0.0", "1.0.0"), ("1.12.1", "1.12.1")):
        (repo / "docker-compose.yaml").write_bytes((OLD.parent / f"docker-compose.{release}.yaml").read_bytes())
        (repo / ".env.example").write_bytes((OLD.parent / f"env.example.{release}").read_bytes())
        git(repo, "add", "docker-compose.yaml", ".env.example")
        git(repo, "commit", "--quiet", "-m", release)
        git(repo, "tag", tag)
    return repo


def test_flow_plan_stops_on_the_trap_before_anything_changes(dify_checkout, tmp_path, monkeypatch):
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    env = unstructured_env(dify_checkout)
    before = snapshot(tmp_path)
    old, new = (envsync.template_at(dify_checkout, t, ".env.example") for t in ("1.0.0", "1.12.1"))
    required = envsync.required_at(dify_checkout, "1.12.1", ["docker-compose.yaml"])
    merged = envsync.merge_for(env, old, new, required)
    with envsync.target_tree(dify_checkout, "1.12.1", ["docker-compose.yaml"]) as target:
        with pytest.raises(NeededServiceInactive) as caught:
            envsync.check_startable(target, merged, ["db", "db_postgres"], accept=False)
        staging = target.root
    assert isinstance(caught.value, PreflightError) and "plan again with accept_env_conflicts=true" in str(caught.value)
    assert "leave out db_postgres" in str(caught.value)
    assert not staging.exists() and snapshot(tmp_path) == before


def test_flow_plan_with_accept_env_conflicts_notes_it_in_the_env_diff(dify_checkout, monkeypatch):
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    env = unstructured_env(dify_checkout)
    old, new = (envsync.template_at(dify_checkout, t, ".env.example") for t in ("1.0.0", "1.12.1"))
    merged = envsync.merge_for(env, old, new)
    with envsync.target_tree(dify_checkout, "1.12.1", ["docker-compose.yaml"]) as target:
        envsync.check_startable(target, merged, ["db", "db_postgres"], accept=True)
    rows = envmerge.masked_changes(merged)
    row = {r["key"]: r for r in rows}["COMPOSE_PROFILES"]
    assert row["category"] == "conflict" and row["note"].startswith("accepted: COMPOSE_PROFILES=")
    assert "## Notes\n\n- `COMPOSE_PROFILES`: accepted:" in env_markdown("prod", rows, merged.counts())


def test_flow_merge_refuses_an_empty_target_template(dify_checkout):
    env = operator_env(dify_checkout)
    with pytest.raises(PreflightError, match="new template: it has no KEY=value line"):
        envsync.merge_for(env, OLD.read_text(), "")
    assert NEW.exists()


def test_no_docker_is_a_clear_error_not_a_traceback(tmp_path, monkeypatch):
    from tests.unit._env_helpers import sync_in_process

    env = operator_env(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    code, out, err = sync_in_process(["--env-file", str(env), "--old-template", str(OLD), "--new-template", str(NEW),
                                      "--compose-file", str(COMPOSE_1_12_1)])
    assert code == 2 and "Cannot run `docker compose`" in err and "leave out --compose-file" in err
    assert snapshot(tmp_path) == before
