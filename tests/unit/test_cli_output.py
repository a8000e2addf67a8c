"""What the command line prints, from canned inputs: the phase lines and the live line, the summary of a plan (in
words, env changes only, secrets masked, the verdict, the URL) and of an upgrade, "Already at", `--json`, the
phases a watched run's task runs make, `status` and `history` from real journal files, the approval's fingerprint
check. No Prefect server, no Docker: the run itself is the e2e tests' subject (tests/e2e/test_cli.py)."""
from __future__ import annotations

import argparse
import io
import json
import os

import pytest

from cli import render
from cli.live import Phases
from cli.observe import InProcess, phase_of_task
from cli.promotion import fingerprint_matches
from cli.run import Ended, summarise
from cli.status import lock_of, runs_of, status_lines, version_of
from core.cutover.journal import JOURNAL, Journal
from core.cutover.plan import build_plan
from tests.unit.test_plan import facts

SECRET_VALUE = "s3cr3t-planted-value"
ENV_ROWS = [
    {"key": "DB_HOST", "category": "default_moved", "before": "db", "after": "db_postgres",
     "new_default": "db_postgres", "secret": False, "note": "", "file": ""},
    {"key": "NEW_FLAG", "category": "added", "before": "(unset)", "after": "true", "new_default": "true",
     "secret": False, "note": "", "file": ""},
    {"key": "OLD_KEY", "category": "dropped", "before": "1", "after": "(unset)", "new_default": "(unset)",
     "secret": False, "note": "", "file": ""},
    {"key": "SECRET_KEY", "category": "default_moved", "before": SECRET_VALUE, "after": SECRET_VALUE + "2",
     "new_default": SECRET_VALUE + "2", "secret": True, "note": "", "file": ""},
    {"key": "LOG_LEVEL", "category": "customized", "before": "DEBUG", "after": "DEBUG", "new_default": "INFO",
     "secret": False, "note": "", "file": ""},
]
COUNTS = {"added": 1, "default_moved": 2, "customized": 1, "dropped": 1, "unchanged": 40}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_phase_with_its_duration_and_a_plain_progress_line_when_not_a_terminal():
    out, clock = io.StringIO(), Clock()
    phases = Phases(out, tty=False, clock=clock, every=10)
    phases.begin("pre-flight")
    clock.now += 3.14
    phases.begin("backup")
    phases.step("pg-dump-app")
    clock.now += 4
    phases.tick()  # under 10 s: nothing yet
    clock.now += 8
    phases.tick()
    phases.begin("backup")  # the same phase again: nothing printed, nothing restarted
    clock.now += 1
    phases.end("failed")
    lines = out.getvalue().splitlines()
    assert lines[0] == "  pre-flight ........ 3.1 s"
    assert lines[1] == "  … backup: pg-dump-app (12.0 s so far)"
    assert lines[2] == "  backup ............ 13.0 s  FAILED"
    assert [(p.name, p.seconds, p.state) for p in phases.done] == [("pre-flight", 3.14, "ok"),
                                                                   ("backup", 13.0, "failed")]
    assert "\r" not in out.getvalue()
    clock.now = 1000.0  # whole seconds from here: no rounding in the sums
    phases.begin("cutover (downtime)")
    for _ in range(60):  # ten minutes, a tick every 10 s: 5 lines in the first minute, 8 until 5 min, 5 after
        clock.now += 10
        phases.tick()
    assert len(out.getvalue().splitlines()) == 3 + 5 + 8 + 5


def test_on_a_terminal_the_live_line_is_redrawn_in_place_and_cleared_before_a_phase_line():
    out, clock = io.StringIO(), Clock()
    phases = Phases(out, tty=True, clock=clock)
    phases.begin("cutover (downtime)")
    phases.step("migrate")
    clock.now += 2
    phases.tick()
    assert out.getvalue().startswith("\r\033[K  ") and "cutover (downtime): migrate … 2.0 s" in out.getvalue()
    phases.end()
    assert out.getvalue().endswith("\r\033[K  cutover (downtime) ... 2.0 s\n")


def _args(dry_run: bool) -> argparse.Namespace:
    return argparse.Namespace(environment="staging", target="v2", dry_run=dry_run)


def _seen(plan, migrations=None) -> InProcess:
    seen = InProcess(Phases(io.StringIO(), tty=False))
    seen.plan, seen.migrations = plan, migrations
    return seen


def _plan_summary(**over) -> render.RunSummary:
    plan = build_plan(facts(env_report=ENV_ROWS, env_counts=COUNTS, **over), "run1")
    phases = Phases(io.StringIO(), tty=False, clock=Clock())
    phases.begin("pre-flight")
    phases.end()
    return summarise(_args(True), _seen(plan, {"pending": 1, "gate": []}), phases,
                     Ended({"dry_run": True}, {}, "http://ui/runs/flow-run/1"))


def test_the_plan_reads_in_words_with_the_env_changes_masked_the_verdict_and_the_url():
    text = render.text(_plan_summary())
    lines = text.splitlines()
    assert len(lines) <= 40, text
    assert "Plan (dry run: nothing changed): staging: commit aaaaaaaaaaaa → v2 (bbbbbbbbbbbb); database r1 → r2 " \
           "(1 pending revision(s))" in lines
    assert "  downtime: stop and check out, rollback point, install env, stop retired, start db, migrate, " \
           "start target" in lines
    assert "  on failure: roll back to commit aaaaaaaaaaaa and the database at the rollback point, verified (" in text
    assert "  ~ DB_HOST: db → db_postgres" in lines and "  + NEW_FLAG=true" in lines and "  - OLD_KEY (was 1)" in lines
    assert "  ~ SECRET_KEY: (secret) → (secret)" in lines
    assert SECRET_VALUE not in text
    assert "LOG_LEVEL" not in text, "a setting kept as it was is no change"
    assert "Env: 4 change(s), secrets masked; 1 of your settings kept" in lines
    assert "Migrations: ok: 1 pending revision(s) within the environment's limits" in lines
    assert "Downtime: none (a dry run stops nothing)" in lines
    assert lines[-1] == "Run: http://ui/runs/flow-run/1"
    assert not any(word in text for word in ("docker", "pg_dump --", "StopContainers", "TakeRollbackPoint"))


def test_json_is_one_object_with_the_same_masking():
    data = json.loads(render.as_json(_plan_summary()))
    assert data["outcome"] == "planned" and data["ok"] is True and data["url"] == "http://ui/runs/flow-run/1"
    assert [r["key"] for r in data["env"]] == ["DB_HOST", "NEW_FLAG", "OLD_KEY", "SECRET_KEY"]
    assert SECRET_VALUE not in json.dumps(data)
    assert data["phases"] == [{"name": "pre-flight", "seconds": 0.0, "state": "ok"}]
    assert data["change"]["pending"] == ["r2"]


def test_a_plan_of_what_already_runs_says_already_at():
    same = dict(target_commit="a" * 40, target_services=["api", "db", "worker"], pending_revisions=[],
                target_heads=["r1"], target_images={"api": "r/app:1", "worker": "r/app:1", "db": "r/pg:15"},
                current_images={s: {"image": i} for s, i in
                                (("api", "r/app:1"), ("worker", "r/app:1"), ("db", "r/pg:15"))})
    s = _plan_summary(**same)
    assert s.outcome == "already-at"
    text = render.text(s)
    assert "Already at v2: nothing to do (staging runs commit aaaaaaaaaaaa" in text
    assert "Plan" not in text and "Env" not in text


def test_an_upgrade_summary_gives_the_downtime_and_no_plan():
    plan = build_plan(facts(env_report=ENV_ROWS, env_counts=COUNTS), "run1")
    phases = Phases(io.StringIO(), tty=False, clock=Clock())
    s = summarise(_args(False), _seen(plan), phases,
                  Ended({"target": "v2", "downtime": {"total": 4.25}, "migrations": {"pending": 1, "gate": []}}, {},
                        "u"))
    text = render.text(s)
    assert "Upgraded: staging: commit aaaaaaaaaaaa → v2" in text and "Downtime: 4.2 s (writers stopped → target " \
                                                                     "healthy)" in text
    assert "downtime:" not in text and "Finished in 0.0 s" in text


def test_a_failure_is_said_as_such_with_the_verdict_of_a_gate():
    phases = Phases(io.StringIO(), tty=False, clock=Clock())
    s = summarise(_args(False), _seen(None, {"pending": 2, "gate": ["data loss in r2"]}), phases,
                  Ended({}, {"name": "MigrationRiskTooHigh", "message": "x"}, ""))
    text = render.text(s)
    assert "Finished in 0.0 s (failed)" in text and "FAILED: staging → v2" in text
    assert "Migrations: BLOCKED: data loss in r2" in text
    assert json.loads(render.as_json(s))["error"]["name"] == "MigrationRiskTooHigh"


def test_steps_of_a_run_in_this_process_make_its_phases_and_a_rollback_fails_the_cutover():
    plan = build_plan(facts(), "run1")
    phases = Phases(io.StringIO(), tty=False, clock=Clock())
    seen = InProcess(phases)
    phases.begin("pre-flight")
    seen.on_task_running("analyze-migrations")
    for step in plan.backup[:2]:
        seen.on_step(step, "before")
    seen.on_task_running("pull")
    for step in plan.prepare + plan.cutover[:3] + plan.rollback[:2]:
        seen.on_step(step, "before")
        seen.on_step(step, "after")
    phases.end("ok")
    assert [(p.name, p.state) for p in phases.done] == [
        ("pre-flight", "ok"), ("migration check", "ok"), ("backup", "ok"), ("pull images", "ok"),
        ("before the downtime", "ok"), ("cutover (downtime)", "failed"), ("rollback", "ok")]


@pytest.mark.parametrize(("names", "phases"), [
    (["plan", "analyze-migrations", "env-sync", "publish-approval-facts"], ["pre-flight", "migration check"]),
    (["plan", "analyze-migrations", "backup", "env-sync", "pull", "checkpoint", "stop-and-check-out", "migrate",
      "compose-up", "remove-retired", "verify-health", "drop-rollback-point", "publish-report"],
     ["pre-flight", "migration check", "backup", "pull images", "before the downtime", "cutover (downtime)", "verify",
      "finish"]),
    (["plan", "backup", "pull", "migrate", "rollback-restore-db", "rollback-verify-health"],
     ["pre-flight", "backup", "pull images", "cutover (downtime)", "rollback"]),
])
def test_the_task_runs_of_a_watched_run_make_its_phases(names, phases):
    seen: list[str] = []
    for name in names:
        phase = phase_of_task(name, seen[-1] if seen else None)
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
    assert seen == phases


def _journal(project_dir, stamp: str, status: str, ref: str, flow_run_id: str | None = None) -> Journal:
    run_dir = project_dir / f"{stamp}-{ref}"
    run_dir.mkdir(parents=True)
    j = Journal(path=run_dir / JOURNAL, run=f"r{stamp[-2:]}", environment="prod", project="p",
                target={"ref": ref, "commit": ref.replace(".", "") * 8, "heads": [f"h{ref}"], "images": {}},
                previous={"commit": "0" * 40, "images": {}, "revision": ["h-before"]}, rollback_points={},
                flow_run_id=flow_run_id)
    j.begin("stop-writers", "cutover", "StopContainers")
    j.end("stop-writers", True)
    if status != "running":
        j.close(status, f"{status} to {ref}")
    return j


def test_status_and_history_read_the_journals(tmp_path):
    _journal(tmp_path, "20261201T100000Z", "completed", "v1.1.0")
    _journal(tmp_path, "20261202T100000Z", "rolled-back", "v2.0.0")
    runs = runs_of(tmp_path)
    assert [(r.target, r.status) for r in runs] == [("v2.0.0", "rolled-back"), ("v1.1.0", "completed")]
    assert version_of(runs) == {"version": "v1.1.0", "commit": "v110" * 8, "revision": ["hv1.1.0"]}
    st = {"environment": "prod", "version": version_of(runs), "last_run": runs[0].__dict__, "lock": None,
          "digests": {"api": "r/app@sha256:" + "1" * 64}, "digests_release": "v1.1.0",
          "last_run_state": "Failed", "last_run_url": "http://ui/runs/flow-run/9"}
    lines = status_lines(st)
    assert lines[0] == "prod: v1.1.0 (commit v110v110v110, database at hv1.1.0)"
    assert lines[1] == "  images: api sha256:111111111111 (verified for v1.1.0)"
    assert "rolled-back" in lines[2] and "Prefect: Failed" in lines[2] and lines[2].endswith("flow-run/9")
    assert lines[3].strip() == "rolled-back to v2.0.0" and lines[-1] == "  lock: free"
    _journal(tmp_path, "20261203T100000Z", "running", "v3.0.0")  # its runner died: the version is not known
    assert status_lines({"environment": "prod", "version": version_of(runs_of(tmp_path))})[0] == (
        "prod: unknown: run r0Z did not end (`stackshift recover -e prod` finishes or rolls it back); before it: "
        "commit 000000000000, database at h-before")


def test_the_lock_names_a_live_holder_and_not_a_dead_one(tmp_path):
    lock = tmp_path / ".stackshift.lock"
    lock.write_text(json.dumps({"run": "r1", "host": "h1", "pid": 4242, "since": "t"}))
    assert lock_of(lock, here="h1", alive=lambda pid: True)["run"] == "r1"
    assert lock_of(lock, here="h1", alive=lambda pid: False) is None, "a killed holder left its name behind"
    assert lock_of(lock, here="h2", alive=lambda pid: False)["run"] == "r1", "another host's holder is taken as said"
    lock.write_text("")
    assert lock_of(lock) is None
    assert lock_of(tmp_path / "none") is None
    lock.write_text(json.dumps({"run": "me", "host": "h", "pid": os.getpid()}))
    assert lock_of(lock, here="h")["run"] == "me"


def test_an_approval_needs_the_reviewed_fingerprint():
    fp = "ab12" * 16
    assert fingerprint_matches(fp, fp) and fingerprint_matches(fp[:12].upper(), fp)
    assert not fingerprint_matches(fp[:11], fp), "too short to mean a review"
    assert not fingerprint_matches("cd34" * 16, fp)


def test_the_new_verbs_parse():
    from cli.main import parser

    p = parser()
    assert p.parse_args(["status"]).fn.__name__ == "status_cmd"
    assert p.parse_args(["history", "-e", "prod", "-n", "3"]).limit == 3
    args = p.parse_args(["upgrade", "-e", "prod", "-t", "v2", "--via-deployment", "--watch", "--json", "-v"])
    assert args.via_deployment and args.watch and args.json and args.verbose
    assert p.parse_args(["approve", "RUN", "--approver", "me", "--fingerprint", "ab" * 8]).verb == "approve"
    assert p.parse_args(["reject", "--approver", "me"]).run is None
    assert p.parse_args(["promote", "--release", "v2.0.0", "--watch"]).release == "v2.0.0"


def test_analyze_migrations_says_what_it_is_doing_on_stderr(tmp_path, capsys):
    from cli.main import main

    sql = tmp_path / "m.sql"
    sql.write_text("BEGIN;\nALTER TABLE events ALTER COLUMN total_tokens TYPE bigint;\nCOMMIT;\n")
    assert main(["analyze-migrations", "--sql", str(sql), "--json"]) == 0
    out, err = capsys.readouterr()
    assert any(s["table"] == "events" for s in json.loads(out)["statements"]), "stdout is the report alone"
    lines = err.splitlines()
    assert [line.split(" .")[0] for line in lines[:2]] == ["  read m.sql", "  analyse the statements"], err
    assert lines[-1].startswith("Finished in ")


def test_a_changed_envs_copy_is_named_in_the_summary_with_its_count_and_no_secret():
    s = _plan_summary()
    s.env_copies = [{"path": "docker/envs/core-services/api.env",
                     "rows": [{"key": "API_WORKERS", "category": "default_moved", "before": "1", "after": "2"},
                              {"key": "API_KEY", "category": "kept", "before": "x", "after": "x"},
                              {"key": "MAIL_PASSWORD", "category": "added", "before": None, "after": "hunter2",
                               "secret": True}]},
                    {"path": "docker/envs/security.env", "rows": [{"key": "A", "before": "1", "after": "1",
                                                                   "category": "kept"}]}]
    lines = render.text(s).splitlines()
    assert "Env docker/envs/core-services/api.env: 2 change(s), in the run's env-diff artifact" in lines
    assert not any("security.env" in line for line in lines), "a copy the merge leaves as it is is no change"
    assert json.loads(render.as_json(s))["env_copies"][0]["path"] == "docker/envs/core-services/api.env"
    assert "hunter2" not in render.as_json(s), "a row marked secret is masked once more"
