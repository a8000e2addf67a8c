"""Issue 18, item 6: one env-sync result per run. Pre-flight merges once and stages the bytes by sha256 in the plan;
the `env-sync` task publishes that result, `install-env` installs exactly those bytes and refuses any others.

The upgrade path runs for real from pre-flight's `gather` to `install-env` (git, `docker compose config`, the
merge, the run folder, the journal, the steps) on Dify's real compose files and templates, 1.0.0 → 1.12.1. Only
what lies past the env merge is a stand-in, each named so: the stack's `compose ps` and image pull (`LocalIO`), the
database (`NoDatabase`, privileges, revision), the registry, the engine's image list and the rollback point's
measurement.
"""
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

import tasks.preflight as tp
from blocks.stack_environment import StackEnvironment
from core.settings import Settings
from core.backup import rollbackpoint as rp
from core.cutover import preflight
from core.cutover import steps as st
from core.cutover.journal import PLAN, Journal
from core.cutover.facts import Facts
from core.cutover.plan import build_plan
from core.env import envmerge, envsecrets, envsync
from core.env.envsync import EnvChangedSincePlan, EnvSyncResult, StagedEnvChanged
from core.errors import EnvWriteFailed
from flows import runbook
from tests.unit._env_helpers import COMPOSE_1_12_1, NEW, OLD
from tests.unit._settings import settings
from tests.unit.test_plan import flat_facts
from tests.unit.test_promotion_env_gate import COMPOSE_1_0_0, git
from tests.unit.test_promotion_env_gate import LocalIO as GateIO

LIVE_PASSWORD = "hunter2-live-pw"  # the operator's own database password (a customized secret)
OLD_DB_PASSWORD = "difyai123456"  # the templates' default


@pytest.fixture()
def checkout(tmp_path, monkeypatch) -> Path:
    """Dify's compose folder as a git checkout at 1.0.0 (tags v1.0.0 and v2.0.0 = 1.12.1) and the operator's .env:
    the 1.0.0 template with its own password, console URL and a key of its own."""
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    repo = tmp_path / "docker"
    repo.mkdir()
    git(repo, "init", "--quiet")
    for tag, compose, template in (("v1.0.0", COMPOSE_1_0_0, OLD), ("v2.0.0", COMPOSE_1_12_1, NEW)):
        (repo / "docker-compose.yaml").write_text(compose.read_text())
        (repo / ".env.example").write_text(template.read_text())
        git(repo, "add", "docker-compose.yaml", ".env.example")
        git(repo, "commit", "--quiet", "-m", tag)
        git(repo, "tag", tag)
    git(repo, "checkout", "--quiet", "v1.0.0")
    env = OLD.read_text().replace(f"DB_PASSWORD={OLD_DB_PASSWORD}\n", f"DB_PASSWORD={LIVE_PASSWORD}\n")
    env = env.replace("CONSOLE_API_URL=\n", "CONSOLE_API_URL=https://dify.example.com\n") + "OPS_NOTE=kept\n"
    (repo / ".env").write_text(env)
    (repo / ".env").chmod(0o600)
    return repo


class LocalIO(GateIO):
    """StackIO without an engine (`compose ps` says the stack runs), whose image pull succeeds at once."""

    def run(self, cmd, **kw):
        if "pull" in cmd.argv:
            return subprocess.CompletedProcess(cmd.argv, 0, "", "")
        return super().run(cmd, **kw)


class NoDatabase:
    """The database pre-flight reads, past the env merge: never connected to here."""


@pytest.fixture()
def cfg(checkout, tmp_path, monkeypatch) -> Settings:
    return settings_with_stand_ins(checkout, tmp_path, monkeypatch)


def settings_with_stand_ins(checkout: Path, tmp_path: Path, monkeypatch) -> Settings:
    """The environment's settings, with stand-ins for everything pre-flight reads after the env merge."""
    monkeypatch.setattr(preflight, "StackIO", LocalIO)
    monkeypatch.setattr(preflight.dbops.DbAccess, "of", staticmethod(lambda cfg: NoDatabase()))
    monkeypatch.setattr(preflight, "check_privileges", lambda db, databases, run_id: {"sizes": {"dify": 0}})
    monkeypatch.setattr(preflight.dbops, "alembic_revisions", lambda db, name: ["r1"])
    monkeypatch.setattr(preflight, "missing_images", lambda client, images, auth: [])
    monkeypatch.setattr(preflight, "migration_sources",
                        lambda client, image, path, stack: {"r1.py": "revision = 'r1'\ndown_revision = None\n"})
    monkeypatch.setattr(preflight, "current_images", lambda client, project: {})
    monkeypatch.setattr(preflight, "choose_rollback_point", lambda *a: (
        rp.Forecast("file-copy", "a unit test's choice", 0, rp.DEFAULT_COPY_MB_S, False, 0.3, 0.05, 0.0), None))
    return StackEnvironment(compose_dir=checkout, project_name="dify", db_name="dify", db_user="postgres",
                            db_password="pw", backup_dir=tmp_path / "backups", db_services=["db", "db_postgres"],
                            writer_services=["api", "worker"], migrate_service="api").settings()


@pytest.fixture()
def merges(monkeypatch) -> list[int]:
    """Counts the three-way merges computed from here on."""
    calls: list[int] = []
    real = envmerge.merge

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(envmerge, "merge", counted)
    return calls


@pytest.fixture()
def published(monkeypatch) -> dict:
    return captured_artifacts(monkeypatch)


def captured_artifacts(monkeypatch) -> dict:
    """The env-sync task's artifacts, as the Prefect API would receive them: key → the table's rows or markdown."""
    out: dict = {}

    def markdown(key, markdown, description):
        out[key] = markdown

    def table(key, table, description):
        out[key] = table

    monkeypatch.setattr(tp, "create_markdown_artifact", markdown)
    monkeypatch.setattr(tp, "create_table_artifact", table)
    return out


def pre_flight(cfg, run_id: str = "run1") -> Facts:
    run_dir = Path(cfg.backup.dir) / "dify" / f"20260101T000000Z-{run_id}"
    return preflight.gather(cfg, preflight.UpgradeRequest("staging", "v2.0.0", run_dir, run_id), client=object())


def opened(cfg, f: Facts) -> tuple[st.StepContext, object]:
    """The run as the upgrade flow opens it, with its backup's first step (the compose files and .env saved)."""
    plan = build_plan(f, f.run.id)
    ctx = runbook.open_run(plan, None)
    st.execute(plan.backup[0], ctx)  # save-config
    return ctx, plan


def install_step(plan) -> st.InstallEnv:
    return next(s for s in plan.cutover if isinstance(s, st.InstallEnv))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_one_merge_per_upgrade_from_pre_flight_to_install_env(cfg, checkout, merges, published):
    f = pre_flight(cfg)
    assert len(merges) == 1, "pre-flight merges once"
    assert not f.run.dir.exists(), "pre-flight writes nothing: a dry run or a refused plan leaves no run folder"
    assert f.env_sync.staged == str(f.run.dir / st.MERGED_ENV) and len(f.env_sync.sha256) == 64
    assert f.env_sync.source_sha256 == sha256((checkout / ".env").read_bytes())

    ctx, plan = opened(cfg, f)
    staged = f.run.dir / st.MERGED_ENV
    assert staged.stat().st_mode & 0o777 == 0o600 and f.run.dir.stat().st_mode & 0o777 == 0o700
    assert sha256(staged.read_bytes()) == f.env_sync.sha256 and staged.stat().st_size == f.env_sync.size
    tp.env_sync.fn(ctx)
    assert published["staging-env-diff-table"] == f.env_sync.rows, "the task publishes pre-flight's result"
    st.execute(install_step(plan), ctx)
    assert len(merges) == 1, "the env-sync task and install-env merge nothing again"
    assert sha256((checkout / ".env").read_bytes()) == f.env_sync.sha256, "exactly the staged bytes are installed"
    assert Facts.load(f.run.dir / PLAN, cfg) == f, "plan.json holds the same result"


def test_the_published_rows_are_the_installed_files_diff(cfg, checkout, published):
    before = envmerge.parse((checkout / ".env").read_text()).values
    f = pre_flight(cfg)
    ctx, plan = opened(cfg, f)
    tp.env_sync.fn(ctx)
    st.execute(install_step(plan), ctx)
    after = envmerge.parse((checkout / ".env").read_text()).values

    rows = {r["key"]: r for r in published["staging-env-diff-table"]}
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= rows.keys(), "every key the installed file changes is a row"
    for key, row in rows.items():
        assert row["before"] == envsecrets.shown(before.get(key), row["secret"]), key
        assert row["after"] == envsecrets.shown(after.get(key), row["secret"]), key
    assert rows["DB_HOST"]["category"] == "default_moved" and after["DB_HOST"] == "db_postgres"
    assert rows["DB_PASSWORD"]["after"] == envsecrets.MASK and after["DB_PASSWORD"] == LIVE_PASSWORD
    assert rows["OPS_NOTE"]["category"] == "user_only"
    for text in (json.dumps(published, default=str), (f.run.dir / PLAN).read_text(), ctx.journal.path.read_text()):
        assert LIVE_PASSWORD not in text and "sk-9f73s3ljTXVcMT3Blb3ljTqtsKiGHXVcMT3BlbkFJLK7U" not in text


def test_install_env_refuses_tampered_staged_bytes(cfg, checkout):
    f = pre_flight(cfg)
    ctx, plan = opened(cfg, f)
    staged = f.run.dir / st.MERGED_ENV
    staged.write_bytes(staged.read_bytes().replace(b"DB_HOST=db_postgres", b"DB_HOST=evil.example.com"))
    env_before = (checkout / ".env").read_bytes()

    with pytest.raises(StagedEnvChanged) as caught:
        st.execute(install_step(plan), ctx)
    err = caught.value
    assert isinstance(err, EnvWriteFailed), "install-env's own failure: the cutover rolls back"
    assert str(staged) in str(err) and f.env_sync.sha256[:12] in str(err) and "run the upgrade again" in str(err)
    assert (checkout / ".env").read_bytes() == env_before, "nothing installed"
    assert not (checkout / "env-backup").exists(), "nothing backed up either: the refusal comes first"
    assert (ctx.journal.last.id, ctx.journal.last.state) == ("install-env", "failed")

    staged.unlink()
    with pytest.raises(StagedEnvChanged, match="cannot be read"):
        install_step(plan).apply(ctx)


def test_the_env_sync_task_refuses_an_env_edited_or_a_staged_file_changed_since_pre_flight(cfg, checkout, published):
    f = pre_flight(cfg)
    env = checkout / ".env"
    env.write_text(env.read_text().replace("OPS_NOTE=kept", "OPS_NOTE=edited after the plan"))
    ctx, _ = opened(cfg, f)  # the backup copies the edited file
    with pytest.raises(EnvChangedSincePlan, match="the .env was edited after pre-flight merged it"):
        tp.env_sync.fn(ctx)

    f2 = pre_flight(cfg, "run2")
    ctx2, _ = opened(cfg, f2)
    (f2.run.dir / st.MERGED_ENV).write_text("DB_HOST=elsewhere\n")
    with pytest.raises(EnvChangedSincePlan, match="the staged merge was changed") as caught:
        tp.env_sync.fn(ctx2)
    assert "Nothing was stopped or changed" in str(caught.value)
    assert published == {}, "nothing published for review that would not be installed"


def test_a_run_folder_opens_only_with_the_bytes_pre_flight_staged_in_this_process(tmp_path):
    run_dir = tmp_path / "backups" / "dify" / "20260101T000000Z-run1"
    merged = envmerge.MergeResult("A=1\n", [], 1)
    result = envsync.stage(merged, run_dir / st.MERGED_ENV, "0" * 64)
    other = EnvSyncResult([], {}, result.staged, sha256(b"A=2\n"), 4, "0" * 64)  # a plan.json from elsewhere
    with pytest.raises(EnvChangedSincePlan, match="holds no merge with the plan's sha256"):
        envsync.write_staged(other)
    assert not run_dir.exists()
    envsync.write_staged(result)
    assert (run_dir / st.MERGED_ENV).read_bytes() == b"A=1\n"


def test_an_old_plan_json_loads_and_install_env_installs_the_run_folders_file_as_before(tmp_path, published):
    compose_dir, run_dir = tmp_path / "dify", tmp_path / "backups" / "dify" / "run1"
    compose_dir.mkdir()
    run_dir.mkdir(parents=True)
    (compose_dir / ".env").write_text("DB_HOST=db\n")
    rows = [{"key": "DB_HOST", "category": "default_moved", "before": "db", "after": "db_postgres",
             "new_default": "db_postgres", "secret": False, "note": ""}]
    old = flat_facts(compose_dir=compose_dir, run_dir=run_dir)
    old.pop("env_sync", None)
    old |= {"env_report": rows, "env_counts": {"default_moved": 1, "unchanged": 0}}  # as plan.json was written
    (run_dir / PLAN).write_text(json.dumps(old))

    f = Facts.load(run_dir / PLAN, settings())
    assert f.env_sync == EnvSyncResult(rows, {"default_moved": 1, "unchanged": 0})
    assert f.env_sync.sha256 == "" and f.env_sync.staged == "", "nothing staged: no sha256 to check"
    (run_dir / st.MERGED_ENV).write_text("DB_HOST=db_postgres\n")  # what the env-sync task of then wrote
    journal = Journal(path=run_dir / "journal.json", run="run1", environment="staging", project="dify", target={},
                      previous={}, rollback_points={})
    plan = build_plan(f, "run1")
    assert install_step(plan).apply(st.StepContext(f, io=None, journal=journal)).startswith("backup ")
    assert (compose_dir / ".env").read_text() == "DB_HOST=db_postgres\n"
    assert tp.review_env.fn(plan) == {"default_moved": 1, "unchanged": 0}
    assert published["staging-env-diff-table"] == rows, "its rows are still what is published"
