"""Issue 10: a new required variable left empty (`${VAR:?}` in the target compose file) blocks before the approval.

Prod's dry run (pre-flight's `gather`) is what the promotion waits on before it publishes the summary and pauses; a
PreflightError there ends the prod plan's run Failed, and the promotion stops without asking anyone. Real Dify
compose text: the 1.12.1 file with a required variable added to the api service, as a release would add one.
"""
import json
import subprocess
from types import SimpleNamespace

import pytest

from tests.unit._settings import settings

from core.io import executor

from core.cutover import preflight
from core.env.secretgen import MissingRequiredSecret
from core.errors import PreflightError, PromotionStopped
from tests.unit._env_helpers import COMPOSE_1_12_1, NEW, OLD

pytestmark = pytest.mark.tools("docker compose", "git")

NEW_VAR = "SSO_CLIENT_SECRET"
REQUIRED_LINE = f"      {NEW_VAR}: ${{{NEW_VAR}:?set {NEW_VAR} in .env}}\n"
COMPOSE_1_0_0 = OLD.parent / "docker-compose.1.0.0.yaml"


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def release_with_required_variable() -> tuple[str, str]:
    """Dify 1.12.1's compose file with `${SSO_CLIENT_SECRET:?…}` in the api service, and its template with the
    new key left empty (as upstream templates list a secret the operator must fill in)."""
    compose = COMPOSE_1_12_1.read_text()
    anchor = "    environment:\n      # Use the shared environment variables.\n      <<: *shared-api-worker-env\n" \
             "      # Startup mode, 'api' starts the API server.\n      MODE: api\n"
    assert compose.count(anchor) == 1, "the api service of Dify 1.12.1's compose file"
    compose = compose.replace(anchor, anchor + REQUIRED_LINE)
    template = NEW.read_text() + f"\n# The SSO client's secret (required; no default).\n{NEW_VAR}=\n"
    return compose, template


@pytest.fixture()
def checkout(tmp_path, monkeypatch):
    """A compose checkout at Dify 1.0.0 with the operator's .env (the 1.0.0 template as copied), tagged releases
    v1.0.0 and v2.0.0 (the latter requiring the new variable)."""
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    monkeypatch.delenv(NEW_VAR, raising=False)  # the process environment would fill the variable for compose
    repo = tmp_path / "docker"
    repo.mkdir()
    git(repo, "init", "--quiet")
    compose2, template2 = release_with_required_variable()
    for tag, compose, template in (("v1.0.0", COMPOSE_1_0_0.read_text(), OLD.read_text()),
                                   ("v2.0.0", compose2, template2)):
        (repo / "docker-compose.yaml").write_text(compose)
        (repo / ".env.example").write_text(template)
        git(repo, "add", "docker-compose.yaml", ".env.example")
        git(repo, "commit", "--quiet", "-m", tag)
        git(repo, "tag", tag)
    git(repo, "checkout", "--quiet", "v1.0.0")
    (repo / ".env").write_text(OLD.read_text())
    return repo


class ReachedDatabase(Exception):
    """Pre-flight got past the env checks (the next thing it reads is the database)."""


class LocalIO:
    """StackIO without an engine: `compose ps` says the stack runs; every other command (git, `compose config`)
    runs for real."""

    def __init__(self, cfg, project):
        pass

    def run(self, cmd, **_):
        if "ps" in cmd.argv:
            return subprocess.CompletedProcess(cmd.argv, 0, json.dumps(
                {"Service": "api", "Name": "dify-api-1", "State": "running"}) + "\n", "")
        return executor.run(cmd)


def gather_prod(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "StackIO", LocalIO)

    def no_database(cfg):
        raise ReachedDatabase()

    monkeypatch.setattr(preflight.dbops.DbAccess, "of", staticmethod(no_database))
    cfg = settings(compose_dir=repo, project_name="dify")
    run_dir = tmp_path / "backups" / "dify" / "run1"
    return preflight.gather(cfg, preflight.UpgradeRequest("prod", "v2.0.0", run_dir, "run1"), client=object())


def test_a_new_required_variable_left_empty_fails_prods_plan_and_names_it(checkout, tmp_path, monkeypatch):
    before = (checkout / ".env").read_bytes()
    with pytest.raises(MissingRequiredSecret) as caught:  # a secret's name: refused before compose is asked
        gather_prod(checkout, tmp_path, monkeypatch)
    assert isinstance(caught.value, PreflightError), "a pre-flight error: the dry run ends Failed, nothing changed"
    assert NEW_VAR in str(caught.value)
    secret = "sk-9f73s3ljTXVcMT3Blb3ljTqtsKiGHXVcMT3BlbkFJLK7U"  # SECRET_KEY of the operator's .env
    assert secret in before.decode() and secret not in str(caught.value)
    assert (checkout / ".env").read_bytes() == before
    assert not list((tmp_path / "backups" / "dify").glob(".scratch-*")), "its scratch folder is removed"


def test_the_same_release_passes_the_env_checks_once_the_variable_is_set(checkout, tmp_path, monkeypatch):
    env = checkout / ".env"
    env.write_text(env.read_text() + f"{NEW_VAR}=filled-in-by-the-operator\n")
    with pytest.raises(ReachedDatabase):
        gather_prod(checkout, tmp_path, monkeypatch)


def test_a_failed_prod_plan_ends_the_promotion_before_the_approval(monkeypatch):
    """The promotion never pauses (nor announces an approval) when prod's dry run did not complete."""
    import flows.promote as fp

    class Run:
        def __init__(self, id):
            self.id = id

    calls = []

    def run_on_pool(what, deployment, parameters, timeout_minutes, key):
        calls.append(parameters)
        if parameters.get("dry_run"):
            raise PromotionStopped(what, "Failed", f"ComposeRejectsEnv: {NEW_VAR} …", "http://ui/runs/flow-run/2")
        return Run("1")

    def never(*a, **kw):
        raise AssertionError("asked for an approval although prod's plan failed")

    monkeypatch.setattr(fp, "get_run_logger", lambda: SimpleNamespace(info=lambda *a, **kw: None))
    # prod's settings
    monkeypatch.setattr(fp, "load_environment", lambda name: SimpleNamespace(stack=SimpleNamespace(host=None)))
    monkeypatch.setattr(fp.pt, "latest_rows", lambda key: [])
    monkeypatch.setattr(fp.pt, "run_on_pool", run_on_pool)
    monkeypatch.setattr(fp.pt, "run_artifacts", lambda run_id: {"staging-digests": SimpleNamespace(
        data=[{"service": "api", "digest": "r/app@sha256:" + "1" * 64, "release": "v2.0.0"}])})
    monkeypatch.setattr(fp.pt, "rows_of", lambda a: a.data)
    for name in ("publish_summary", "announce_approval_needed", "publish_timeline"):
        monkeypatch.setattr(fp.pt, name, never)
    monkeypatch.setattr(fp, "pause_flow_run", never)
    with pytest.raises(PromotionStopped, match=NEW_VAR):
        fp.promote.fn(release="v2.0.0")
    assert [p.get("dry_run", False) for p in calls] == [False, True], "staging upgraded, then prod's plan only"
