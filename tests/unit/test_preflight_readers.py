"""Pre-flight's readers, each on its own, over a fake I/O port (real git in a scratch checkout where a reader runs
git itself; `compose` answers are canned JSON, the way compose prints them)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from core.backup import rollbackpoint as rp
from core.cutover import preflight
from core.cutover import rollback_methods as rm
from core.errors import ComposeDirDirty, NotDeployed, UnsupportedServer
from core.io.compose import ResolvedConfig
from tests.unit._settings import settings

pytestmark = pytest.mark.tools("git")


class FakeIO:
    """The port's `run`, answering `compose ps` and `compose config` with canned JSON."""

    def __init__(self, ps: list[dict], config: dict):
        self.ps, self.config, self.argvs = ps, config, []

    def run(self, cmd, **_):
        self.argvs.append(cmd.argv)
        out = "\n".join(json.dumps(s) for s in self.ps) if "ps" in cmd.argv else json.dumps(self.config)
        return subprocess.CompletedProcess(cmd.argv, 0, out, "")


def _checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "stack"
    repo.mkdir()
    (repo / "docker-compose.yaml").write_text("services: {}\n")
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1"],
                 ["tag", "v1.0.0"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True)
    (repo / ".env").write_text("LOG_LEVEL=INFO\n")  # the operator's, untracked (pre-flight parses it first)
    return repo


CONFIG = {"services": {"api": {"image": "r/app:1"}, "db": {"image": "r/pg:15", "volumes": [
    {"type": "bind", "source": "/srv/stack/volumes/db/data", "target": "/var/lib/postgresql/data"}]}}}


def test_read_deployed_reads_both_commits_and_what_runs(tmp_path):
    repo = _checkout(tmp_path)
    io = FakeIO([{"Service": "api", "Name": "s-api-1", "State": "running"},
                 {"Service": "db", "Name": "s-db-1", "State": "running"}], CONFIG)
    found = preflight.read_deployed(io, settings(compose_dir=repo), "v1.0.0")
    assert found.current_commit == found.target_commit and len(found.current_commit) == 40
    assert found.running == ["api", "db"] and found.config.services == ["api", "db"]


def test_a_one_shot_job_that_exited_0_is_up_as_it_should_be_and_one_that_failed_is_not(tmp_path):
    """A stack at its target with a completed init job has nothing to do (`Facts.differences` reads `running`)."""
    repo = _checkout(tmp_path)
    config = {"services": CONFIG["services"] | {
        "init": {"image": "r/busybox:1", "restart": "no"},
        "api": {"image": "r/app:1", "depends_on": {"init": {"condition": "service_completed_successfully"}}}}}
    rows = [{"Service": "api", "Name": "s-api-1", "State": "running"},
            {"Service": "db", "Name": "s-db-1", "State": "running"}]
    done = {"Service": "init", "Name": "s-init-1", "State": "exited", "ExitCode": 0}
    found = preflight.read_deployed(FakeIO([*rows, done], config), settings(compose_dir=repo), "v1.0.0")
    assert found.running == ["api", "db", "init"]
    failed = preflight.read_deployed(FakeIO([*rows, done | {"ExitCode": 1}], config), settings(compose_dir=repo),
                                     "v1.0.0")
    assert failed.running == ["api", "db"]
    not_a_job = preflight.read_deployed(FakeIO([rows[1], done | {"Service": "api", "Name": "s-api-1"}], CONFIG),
                                        settings(compose_dir=repo), "v1.0.0")
    assert not_a_job.running == ["db"], "a long-running service that exited 0 is not up"


def test_read_deployed_refuses_local_edits_and_a_stack_that_does_not_run(tmp_path):
    repo = _checkout(tmp_path)
    (repo / "docker-compose.yaml").write_text("services: {x: {}}\n")
    with pytest.raises(ComposeDirDirty, match="docker-compose.yaml"):
        preflight.read_deployed(FakeIO([], CONFIG), settings(compose_dir=repo), "v1.0.0")
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "."], check=True)
    with pytest.raises(NotDeployed):
        stopped = FakeIO([{"Service": "api", "Name": "s-api-1", "State": "exited"}], CONFIG)
        preflight.read_deployed(stopped, settings(compose_dir=repo), "v1.0.0")


def test_volume_layout_leaves_out_the_database_directory_of_either_release():
    current = ResolvedConfig(CONFIG)
    target = ResolvedConfig({"services": {"db_postgres": {"volumes": [
        {"type": "bind", "source": "/srv/stack/volumes/db/data", "target": "/var/lib/postgresql/data"}]}}})
    excludes, data_dirs = preflight.volume_layout(settings(compose_dir="/srv/stack"), current, target)
    assert excludes == ["./db/data"] and data_dirs == [Path("/srv/stack/volumes/db/data")]


def test_the_request_names_its_scratch_folder_beside_the_run_folders():
    request = preflight.UpgradeRequest("prod", "v2", Path("/b/stack/20260101T000000Z-r1"), "r1")
    assert request.scratch == Path("/b/stack/.scratch-r1")


def test_check_privileges_refuses_an_old_server_and_a_name_too_long_for_the_rollback_point(monkeypatch):
    facts = {"server_version_num": 140000, "createdb": True, "superuser": False, "other_roles": [],
             "signal_backend": False, "member_of_owner": {"app": True}, "owners": {"app": "app"}, "sizes": {"app": 1}}
    monkeypatch.setattr(preflight.dbops, "role_privileges", lambda db, names: facts)
    with pytest.raises(UnsupportedServer, match="PostgreSQL 14"):
        preflight.check_privileges(object(), ["app"], "run1")
    facts["server_version_num"] = preflight.PG_15
    assert preflight.check_privileges(object(), ["app"], "run1") is facts
    with pytest.raises(UnsupportedServer, match="63-byte"):
        preflight.check_privileges(object(), ["a" * 50], "run1")


def test_choose_rollback_point_asks_the_probes_only_what_the_method_needs():
    asked: list[str] = []

    def data_dir():
        asked.append("data-dir")
        return None, "no data directory on this host"

    def rate():
        asked.append("rate")
        return 400.0, 0.2

    probes = rm.Probes(data_dir, rate)
    forecast, where = preflight.choose_rollback_point(settings(rollback_point="file-copy"), 10 << 20, probes)
    assert (forecast.method, where, asked) == ("file-copy", None, [])
    forecast, where = preflight.choose_rollback_point(settings(), 10 << 20, probes)
    assert forecast.method == "file-copy" and sorted(asked) == ["data-dir", "rate"], "auto measures and looks"
    assert isinstance(forecast, rp.Forecast)
