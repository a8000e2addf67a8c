"""Issue 22 in the upgrade flow: pre-flight's one env merge covers the operator's `envs/**.env` copies (Dify 1.14+),
the env-sync task shows them for review, `install-env` installs exactly what was reviewed, the rollback puts every
copy back byte for byte (one that did not exist is removed); the block's `stack.env_slim` and
`stack.generate_missing_secrets` are honoured, and a generated secret is never in the plan, an artifact, a log or the
manifest; a bad `envs/**` template or an old Compose stops pre-flight with nothing written.

Runs for real from `gather` to `install-env` and `restore-env` (git, `docker compose config`, the merge, the run
folder, the steps) on the 1.15.0 split release's files. The deployed release is an earlier split release made for
these tests (the 1.12.1 root template and an older `shared.env.example`). Past the env merge, the stand-ins of
tests/unit/test_env_sync_once.py (each named there).
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest

import tasks.preflight as tp
from core import report
from core.cutover import steps as st
from core.cutover.journal import PLAN
from core.promotion import fingerprint
from core.env import composeversion, envdoc, envsecrets
from core.env.envdoc import EnvParseError
from core.env.envlayout import EnvTemplatesMissing
from core.env.envstage import COPIES_DIR, EnvChangedSincePlan, StagedEnvChanged
from core.env.secretgen import MissingRequiredSecret
from core.settings import Settings
from tests.conftest import DIFY
from tests.unit._env_helpers import fake_old_compose, snapshot
from tests.unit.test_env_split_layout import SMTP_PASSWORD, SMTP_SERVER, SPLIT
from tests.unit.test_env_split_sync import COPY_PASSWORD, COPY_SMTP, REQUIRED_SECRET, requiring_a_secret
from tests.unit.test_env_sync_once import captured_artifacts, opened, pre_flight, settings_with_stand_ins
from tests.unit.test_promotion_env_gate import git

pytestmark = pytest.mark.tools("docker compose", "git")

COPY = "envs/core-services/shared.env"
ABSENT = "envs/core-services/api.env"  # loaded by the api service; the operator has no such copy
OLD_MILVUS, NEW_MILVUS = "MILVUS_URI=http://127.0.0.1:19530", "MILVUS_URI=http://host.docker.internal:19530"


def make_checkout(tmp_path: Path, target_requires_secret: bool = False) -> Path:
    """A git checkout of the stack's compose folder: v1.0.0, an earlier split release (the 1.12.1 root template, a
    shared.env.example whose MILVUS_URI default differs), then v2.0.0, the 1.15.0 split release; checked out at
    v1.0.0, with the operator's .env (from 1.12.1's template: secrets, a customized SMTP server) and shared.env
    copy (made from v1.0.0's template: a customized SMTP server, a secret, a key of its own)."""
    repo = tmp_path / "docker"
    shutil.copytree(SPLIT, repo)
    git(repo, "init", "--quiet")
    shared = repo / (COPY + ".example")
    new_shared, new_root = shared.read_text(), (repo / ".env.example").read_text()
    assert NEW_MILVUS in new_shared
    old_shared = new_shared.replace(NEW_MILVUS, OLD_MILVUS)
    shared.write_text(old_shared)
    (repo / ".env.example").write_text((DIFY / "env.example.1.12.1").read_text())
    for tag in ("v1.0.0", "v2.0.0"):
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "-m", tag)
        git(repo, "tag", tag)
        shared.write_text(new_shared)
        (repo / ".env.example").write_text(new_root)
        if target_requires_secret:
            requiring_a_secret(repo)
    git(repo, "checkout", "--quiet", "--force", "v1.0.0")
    env = (DIFY / "env.example.1.12.1").read_text()
    env = re.sub(r"(?m)^SMTP_SERVER=.*$", f"SMTP_SERVER={SMTP_SERVER}", env)
    env = re.sub(r"(?m)^SMTP_PASSWORD=.*$", f"SMTP_PASSWORD={SMTP_PASSWORD}", env)
    (repo / ".env").write_text(env)
    copy = re.sub(r"(?m)^SMTP_SERVER=.*$", f"SMTP_SERVER={COPY_SMTP}", old_shared)
    copy = re.sub(r"(?m)^SMTP_PASSWORD=.*$", f"SMTP_PASSWORD={COPY_PASSWORD}", copy)
    (repo / COPY).write_text(copy + "MY_COPY_ONLY=from-the-copy\n")
    return repo


@pytest.fixture()
def checkout(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    return make_checkout(tmp_path)


@pytest.fixture()
def cfg(checkout, tmp_path, monkeypatch) -> Settings:
    """The environment's settings, with the stand-ins of tests/unit/test_env_sync_once.py past the env merge."""
    return settings_with_stand_ins(checkout, tmp_path, monkeypatch)


@pytest.fixture()
def published(monkeypatch) -> dict:
    return captured_artifacts(monkeypatch)


def with_stack(cfg: Settings, **changes) -> Settings:
    return cfg.model_copy(update={"stack": cfg.stack.model_copy(update=changes)})


def copy_record(f, path: str = COPY) -> dict:
    return next(c for c in f.env_sync.copies if c["path"] == path)


def step(plan, phase: str, kind: type):
    return next(s for s in getattr(plan, phase) if isinstance(s, kind))


def test_a_copy_is_merged_reviewed_installed_as_reviewed_and_restored_byte_for_byte(cfg, checkout, published):
    before = {p: (checkout / p).read_bytes() for p in (".env", COPY)}
    f = pre_flight(cfg)
    record = copy_record(f)
    assert record["existed"] and record["staged"] == str(f.run.dir / COPIES_DIR / COPY)
    assert {r["key"]: r["category"] for r in record["rows"]}["MILVUS_URI"] == "default_moved"
    assert copy_record(f, ABSENT)["existed"] is False and not copy_record(f, ABSENT)["sha256"]
    assert f"the merged {COPY} differs from the one in place" in f.differences()

    ctx, plan = opened(cfg, f)  # the backup's first step holds the copy too
    assert (f.run.dir / "compose" / COPY).read_bytes() == before[COPY]
    tp.env_sync.fn(ctx)
    markdown = published["staging-env-diff"]
    assert f"## {COPY}" in markdown and "| **~** | `MILVUS_URI` |" in markdown
    table = {r["key"]: r for r in published["staging-env-copies-table"] if r["env_file"] == COPY}
    st.execute(step(plan, "cutover", st.InstallEnv), ctx)
    installed = envdoc.parse((checkout / COPY).read_text()).values
    old = envdoc.parse(before[COPY].decode()).values
    for key in old.keys() | installed.keys():  # every change installed is a reviewed row, as reviewed
        if old.get(key) != installed.get(key):
            row = table[key]
            assert row["after"] == envsecrets.shown(installed.get(key), row["secret"]), key
    assert NEW_MILVUS in (checkout / COPY).read_text() and installed["SMTP_SERVER"] == COPY_SMTP
    assert installed["SMTP_PASSWORD"] == COPY_PASSWORD and installed["MY_COPY_ONLY"] == "from-the-copy"
    for text in (json.dumps(published), (f.run.dir / PLAN).read_text(), ctx.journal.path.read_text()):
        assert COPY_PASSWORD not in text and SMTP_PASSWORD not in text

    (checkout / ABSENT).write_text("CREATED=during the upgrade\n")  # a copy that did not exist before
    st.execute(step(plan, "rollback", st.RestoreEnv), ctx)
    assert {p: (checkout / p).read_bytes() for p in (".env", COPY)} == before
    assert not (checkout / ABSENT).exists()


def test_a_copy_edited_or_created_after_pre_flight_stops_the_run_before_the_cutover(cfg, checkout, published):
    f = pre_flight(cfg)
    (checkout / COPY).write_text((checkout / COPY).read_text() + "EDITED=after the plan\n")
    ctx, _ = opened(cfg, f)
    with pytest.raises(EnvChangedSincePlan, match="the copy was edited after pre-flight merged it"):
        tp.env_sync.fn(ctx)

    f2 = pre_flight(cfg, "run2")
    (checkout / ABSENT).write_text("X=1\n")
    ctx2, _ = opened(cfg, f2)
    with pytest.raises(EnvChangedSincePlan, match="created after pre-flight"):
        tp.env_sync.fn(ctx2)
    assert published == {}

    approved = fingerprint(pre_flight(cfg, "run3"))
    (checkout / COPY).write_text((checkout / COPY).read_text() + "EDITED_AGAIN=after the approval\n")
    assert fingerprint(pre_flight(cfg, "run4")) != approved, "a promotion's approval covers the copies"


def test_install_env_refuses_a_tampered_staged_copy_before_writing_any_file(cfg, checkout):
    f = pre_flight(cfg)
    ctx, plan = opened(cfg, f)
    staged = Path(copy_record(f)["staged"])
    staged.write_text(staged.read_text().replace(NEW_MILVUS, "MILVUS_URI=http://evil.example.com"))
    before = {p: (checkout / p).read_bytes() for p in (".env", COPY)}
    with pytest.raises(StagedEnvChanged):
        st.execute(step(plan, "cutover", st.InstallEnv), ctx)
    assert {p: (checkout / p).read_bytes() for p in (".env", COPY)} == before
    assert not (checkout / "env-backup").exists()


def test_the_block_generates_a_required_secret_that_is_never_shown(tmp_path, cfg, monkeypatch, published, caplog):
    repo = make_checkout(tmp_path / "secret", target_requires_secret=True)
    cfg = with_stack(cfg, compose_dir=repo)
    before = snapshot(tmp_path)
    with pytest.raises(MissingRequiredSecret, match=f"{REQUIRED_SECRET}.*generate_missing_secrets"):
        pre_flight(cfg)
    assert snapshot(tmp_path) == before, "refused before anything is written"

    caplog.set_level(logging.DEBUG)
    cfg = with_stack(cfg, generate_missing_secrets=True)
    f = pre_flight(cfg)
    ctx, plan = opened(cfg, f)
    tp.env_sync.fn(ctx)
    st.execute(step(plan, "cutover", st.InstallEnv), ctx)
    st.execute(step(plan, "backup", st.WriteManifest), ctx)
    value = envdoc.parse((repo / ".env").read_text()).values[REQUIRED_SECRET]
    assert len(value) == 43
    row = next(r for r in f.env_sync.rows if r["key"] == REQUIRED_SECRET)
    assert row["category"] == "generated" and row["after"] == envsecrets.MASK
    shown = [json.dumps(published), (f.run.dir / PLAN).read_text(), ctx.journal.path.read_text(), caplog.text,
             (f.run.dir / "manifest.json").read_text(), "\n".join(report.plan_commands(plan)),
             report.plan_markdown(plan), json.dumps(cfg.snapshot())]
    assert all(value not in text for text in shown)
    assert value.encode() not in pickle.dumps(plan), "nor in the plan task's result"


def test_the_block_slims_the_env_as_env_sync_slim_does(cfg, checkout):
    full = pre_flight(cfg, "run0")
    assert "moved_out" not in {r["category"] for r in full.env_sync.rows}, "off: the .env is never split"
    f = pre_flight(with_stack(cfg, env_slim=True))
    rows = {r["key"]: r for r in f.env_sync.rows}
    assert rows["UPLOAD_FILE_SIZE_LIMIT"]["category"] == "moved_out"
    assert "--slim: at the target's default" in rows["UPLOAD_FILE_SIZE_LIMIT"]["note"]
    ctx, plan = opened(cfg, f)
    st.execute(step(plan, "cutover", st.InstallEnv), ctx)
    values = envdoc.parse((checkout / ".env").read_text()).values
    assert "UPLOAD_FILE_SIZE_LIMIT" not in values and values["SMTP_SERVER"] == SMTP_SERVER
    assert not (checkout / ABSENT).exists(), "no copy is created"


def _target_edited(repo: Path, edit) -> None:
    """The target commit (v2.0.0) replaced by one with `edit` applied to its files."""
    git(repo, "checkout", "--quiet", "v2.0.0")
    env, copy = (repo / ".env").read_bytes(), (repo / COPY).read_bytes()
    edit(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "edited")
    git(repo, "tag", "--force", "v2.0.0")
    git(repo, "checkout", "--quiet", "v1.0.0")
    (repo / ".env").write_bytes(env)
    (repo / COPY).write_bytes(copy)


@pytest.mark.parametrize("bad", ["missing template", "malformed template", "old compose"])
def test_bad_envs_templates_or_an_old_compose_stop_pre_flight_with_nothing_written(tmp_path, cfg, checkout, bad,
                                                                                  monkeypatch):
    template = checkout / (COPY + ".example")
    if bad == "missing template":
        _target_edited(checkout, lambda repo: template.unlink())
        error, match = EnvTemplatesMissing, f"{COPY}.example.*nothing was written"
    elif bad == "malformed template":
        _target_edited(checkout, lambda repo: template.write_text(template.read_text() + "NOT A LINE\n"))
        error, match = EnvParseError, "shared.env.example"
    else:
        fake = fake_old_compose(tmp_path / "bin", "v2.23.0")  # a mock: see there
        monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
        error, match = composeversion.ComposeTooOld, r"2\.24\.0 or later .* v2\.23\.0.*nothing was written"
    before = snapshot(tmp_path)
    with pytest.raises(error, match=match):
        pre_flight(cfg)
    assert snapshot(tmp_path) == before
