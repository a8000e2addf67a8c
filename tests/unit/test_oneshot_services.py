"""One-shot services (init, migrate, setup jobs): one definition of done, for the wait and for the verification,
and Dify 1.12.1's real compose file read through compose itself."""
import json

import pytest

from core.cutover.verify import services_check
from core.io import commands as c
from core.io.compose import ResolvedConfig, parse_ps, service_verdict
from core.io.executor import run
from core.stackio import health_verdict
from tests.conftest import DIFY

pytestmark = pytest.mark.tools("docker compose")

# (compose ps state, health, exit code) → verdict of a long-running service, verdict of a job
CASES = [
    (("running", "", None), "ok", "wait"),
    (("running", "healthy", None), "ok", "wait"),
    (("running", "starting", None), "wait", "wait"),
    (("running", "unhealthy", None), "failed", "wait"),
    (("exited", "", 0), "failed", "ok"),
    (("exited", "", 3), "failed", "failed"),
    (("created", "", None), "wait", "wait"),
]


@pytest.mark.parametrize(("state", "service", "job"), CASES)
def test_the_wait_and_the_verification_judge_alike(state, service, job):
    status, health, code = state
    inspected = {"Status": status, "ExitCode": code, "Restarting": False} | ({"Health": {"Status": health}}
                                                                             if health else {})
    row = parse_ps(json.dumps({"Service": "s", "Name": "p-s-1", "State": status, "Health": health, "Image": "i",
                               "ExitCode": code}))[0]
    assert service_verdict(status, health, code, job=False) == health_verdict(inspected) == row.verdict(False) \
        == service
    assert service_verdict(status, health, code, job=True) == health_verdict(inspected, job=True) \
        == row.verdict(True) == job


def ps(*rows: tuple[str, str, int]) -> list:
    return parse_ps("\n".join(json.dumps({"Service": s, "Name": f"p-{s}-1", "State": state, "Health": "",
                                          "Image": "i", "ExitCode": code}) for s, state, code in rows))


def test_a_job_that_exited_0_passes_the_verification():
    statuses = ps(("api", "running", 0), ("init_permissions", "exited", 0))
    result = services_check(statuses, ["api", "init_permissions"], {}, jobs=["init_permissions"])
    assert result.ok, result.detail
    assert "init_permissions exited 0" in result.detail
    assert not services_check(statuses, ["api", "init_permissions"], {}).ok  # not a job: an ended service fails


def test_a_failed_job_fails_with_its_exit_code_and_last_lines():
    statuses = ps(("api", "running", 0), ("init_permissions", "exited", 3))
    asked = []
    result = services_check(statuses, ["api", "init_permissions"], {}, jobs=["init_permissions"],
                            last_lines=lambda s: asked.append(s) or ["chown: /app/storage: Operation not permitted"])
    assert not result.ok
    assert "job init_permissions is exited, exit code 3" in result.detail
    assert "chown: /app/storage: Operation not permitted" in result.detail and asked == ["init_permissions"]


def test_jobs_by_compose_shape_or_by_name():
    cfg = ResolvedConfig({"services": {
        "setup": {"restart": "no"}, "api": {"restart": "always", "depends_on": {
            "setup": {"condition": "service_completed_successfully"}, "cache": {"condition": "service_started"},
            "daemon": {"condition": "service_completed_successfully"}}},
        "cache": {}, "daemon": {"restart": "always"}, "seed": {}}})
    assert cfg.jobs() == ["setup"]  # `daemon` restarts, `cache` is only started: neither is a job
    assert cfg.jobs(["seed"]) == ["seed", "setup"]


def test_dify_1_12_1_init_permissions_is_a_job(tmp_path):
    env = tmp_path / ".env"
    env.write_text("")
    project = c.ComposeProject(tmp_path, (DIFY / "docker-compose.1.12.1.yaml",), env, "dify")
    cfg = ResolvedConfig.parse(run(c.Command(c.compose_config_json(project))).stdout)
    assert {"api", "worker", "worker_beat", "init_permissions"} <= set(cfg.services)
    assert cfg.jobs() == ["init_permissions"]
