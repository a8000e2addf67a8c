"""The command line on the real lab, as an operator runs it (`./stackshift …` in a child process, its output not a
terminal): `plan` prints its phases and a short summary (the plan in words, the env diff's changes with secrets
masked, the verdict, the run's URL) and no log line; `-v` adds the log lines; `--json` prints one object;
`--via-deployment --watch` follows a run on a worker; `upgrade`, then `status` and `history` show what runs; a plan
of the version running says "Already at", and so does `upgrade --json`.

The tests share one deployment (v1.0.0 at first) and run in this order.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from lab.demo.releases import HEADS
from tests.conftest import ROOT
from tests.e2e.helpers import head

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("cli")]
MAX_PLAN_LINES = 40
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| ")  # Prefect's console format: `12:00:01.123 | INFO    | …`


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "stackshift"), *args], capture_output=True, text=True, check=False,
                          timeout=900)


@pytest.fixture(scope="module")
def dep(make_module_deployment):
    return make_module_deployment(rows=20_000, migration_probe=False)


def test_plan_prints_phases_and_a_short_summary_without_log_lines(dep):
    done = cli("plan", "-e", dep.name, "-t", "v2.0.0")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    print(f"\n[plan] {len(lines)} lines at default verbosity:\n{done.stdout}")
    assert len(lines) <= MAX_PLAN_LINES
    progress = [line for line in lines if line.startswith("  … ")]  # every 10 s of a phase, the output not a tty
    assert [line for line in lines if line not in progress][0].startswith("  pre-flight ...")
    assert any(line.startswith("  migration check ...") for line in lines)
    assert any(re.fullmatch(r"Finished in \d+\.\d s", line) for line in lines)
    assert any(line.startswith(f"Plan (dry run: nothing changed): {dep.name}: commit ") and "→ v2.0.0" in line
               for line in lines)
    assert any(line.startswith("  downtime: stop") and "migrate" in line for line in lines)
    assert "  ~ DB_HOST: db → db_postgres" in lines, "the env diff's changes"
    assert dep.db_password not in done.stdout + done.stderr, "a secret never printed"
    assert any(line.startswith("Migrations: ") for line in lines)
    assert "Downtime: none (a dry run stops nothing)" in lines
    assert re.fullmatch(r"Run: http://127\.0\.0\.1:4200/runs/flow-run/[0-9a-f-]{36}", lines[-1])
    assert not any(LOG_LINE.match(line) for line in lines + done.stderr.splitlines()), "log lines need -v"
    assert "docker compose" not in done.stdout and "pg_dump" not in done.stdout, "no argv"


def test_plan_verbose_adds_the_log_lines_and_json_is_one_object(dep):
    verbose = cli("plan", "-e", dep.name, "-t", "v2.0.0", "-v")
    assert verbose.returncode == 0, verbose.stderr
    logged = [line for line in (verbose.stdout + verbose.stderr).splitlines() if LOG_LINE.match(line)]
    assert logged and any("docker" in line for line in logged), "with -v, the commands run, timestamped"
    done = cli("plan", "-e", dep.name, "-t", "v2.0.0", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # the whole of stdout is one object
    assert result["outcome"] == "planned" and result["ok"] is True and result["dry_run"] is True
    assert [p["name"] for p in result["phases"]] == ["pre-flight", "migration check"]
    assert "DB_HOST" in [r["key"] for r in result["env"]] and dep.db_password not in done.stdout
    assert result["change"]["heads"] == [HEADS["2.0.0"]] and result["url"].startswith("http://127.0.0.1:4200/")


def test_plan_on_a_worker_is_followed_to_its_end(dep):
    """`--via-deployment --watch`: the run goes to a worker's pool (staging's host's internal deployment, which is
    told the environment: the block names no host), and the command prints its phases as its task runs start, then
    the summary from what the run published."""
    done = cli("plan", "-e", dep.name, "-t", "v2.0.0", "--via-deployment", "--deployment",
               "upgrade/promotion-staging", "--watch")
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"\n[plan on a worker]\n{done.stdout}")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Started upgrade/promotion-staging (plan ") and "/runs/flow-run/" in lines[0]
    phases = [m.group(1) for line in lines if (m := re.fullmatch(r"  (\S.*?) \.{3,} \d+\.\d s", line))]
    assert phases[-2:] == ["pre-flight", "migration check"], phases
    assert f"Plan (dry run: nothing changed): {dep.name} → v2.0.0" in lines
    assert "  ~ DB_HOST: db → db_postgres" in lines and dep.db_password not in done.stdout
    assert any(line.startswith("Migrations: ok: ") for line in lines) and lines[-1].startswith("Run: http://")


def test_upgrade_prints_its_phases_then_status_and_history_show_what_runs(dep):
    done = cli("upgrade", "-e", dep.name, "-t", "v2.0.0")
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"\n[upgrade]\n{done.stdout}")
    lines = done.stdout.splitlines()
    phases = [m.group(1) for line in lines if (m := re.fullmatch(r"  (\S.*?) \.{3,} \d+\.\d s", line))]
    assert phases == ["pre-flight", "migration check", "backup", "pull images", "before the downtime",
                      "cutover (downtime)", "verify", "finish"], phases
    assert any(line.startswith(f"Upgraded: {dep.name}: commit ") for line in lines)
    assert any(re.fullmatch(r"Downtime: \d+\.\d s \(writers stopped → target healthy\)", line) for line in lines)
    assert lines[-1].startswith("Run: http://127.0.0.1:4200/runs/flow-run/")
    assert not any(LOG_LINE.match(line) for line in lines + done.stderr.splitlines()), "log lines need -v"

    status = cli("status", "-e", dep.name)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    print(f"\n[status]\n{status.stdout}")
    assert lines[0] == f"{dep.name}: v2.0.0 (commit {head(dep)[:12]}, database at {HEADS['2.0.0']})"
    assert any(line.startswith("  images: ") and "api sha256:" in line and "(verified for v2.0.0)" in line
               for line in lines)
    assert any(line.startswith("  last run: ") and " v2.0.0  completed in " in line and "Prefect: Completed" in line
               for line in lines)
    assert lines[-1] == "  lock: free"
    [st] = json.loads(cli("status", "-e", dep.name, "--json").stdout)
    assert st["version"]["commit"] == head(dep) and st["last_run"]["status"] == "completed" and st["lock"] is None

    history = cli("history", "-e", dep.name)
    assert history.returncode == 0, history.stderr
    [line] = history.stdout.splitlines()
    assert " v2.0.0  completed in " in line and ", downtime " in line and "/runs/flow-run/" in line


def test_a_plan_of_the_version_running_says_already_at_and_an_upgrade_json_says_so_too(dep):
    done = cli("plan", "-e", dep.name, "-t", "v2.0.0")
    assert done.returncode == 0, done.stderr
    assert f"Already at v2.0.0: nothing to do ({dep.name} runs commit {head(dep)[:12]}" in done.stdout
    assert "Plan (dry run" not in done.stdout
    done = cli("upgrade", "-e", dep.name, "-t", "v2.0.0", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "already-at" and result["ok"] and result["result"]["commit"] == head(dep)
    assert [p["name"] for p in result["phases"]] == ["pre-flight"], "it ends right after the plan"
