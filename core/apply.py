"""Walks a plan's steps: the only place a plan touches the world. Backup, cutover and rollback all go
through `Runner.apply`, and every step lands in the timeline with its measured duration."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from core import backup as bk
from core import commands as c
from core import db as dbops
from core import envfile, envsync
from core.compose import image_tag, parse_ps
from core.errors import CommandFailed, HealthCheckFailed, MigrationFailed, UpgradeError, error_line
from core.executor import run
from core.plan import Plan, Step, old_project, target_project
from core.verify import CheckResult, Verification, http_probe, poll, revision_check, services_check

log = logging.getLogger("stackshift")


@dataclass
class Event:
    step: str
    phase: str
    title: str
    started: float  # time.monotonic() at the step's start
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class Runner:
    """Applies steps of `plan` for the environment `cfg` (a StackEnvironment block or anything shaped like it)."""

    plan: Plan
    cfg: object
    timeline: list[Event] = field(default_factory=list)
    rollback_points: dict[str, str] = field(default_factory=dict)
    verifications: dict[str, Verification] = field(default_factory=dict)
    cutover_started: bool = False
    env_backup: str | None = None

    @property
    def db(self) -> dbops.DbAccess:
        return dbops.DbAccess.of(self.cfg)

    def docker_env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.cfg.docker_host} if getattr(self.cfg, "docker_host", None) else {}

    def walk(self, steps: list[Step]) -> None:
        for step in steps:
            self.apply(step)

    def apply(self, step: Step) -> None:
        if step.phase == "cutover":
            self.cutover_started = True
        t0 = time.monotonic()
        try:
            detail = getattr(self, "_" + step.kind.replace("-", "_"))(step) or ""
        except Exception as exc:
            self.timeline.append(Event(step.id, step.phase, step.title, t0, time.monotonic() - t0, False, str(exc)))
            f = self.plan.facts
            if step.id == "migrate" and isinstance(exc, CommandFailed):
                raise MigrationFailed(
                    f"The migration (`{' '.join(f.migrate_command)}` in a one-off {f.migrate_service} container, "
                    f"run once) failed: {error_line(exc.stderr)}") from None
            if isinstance(exc, CommandFailed) and step.id in ("start-target", "start-db", "start-previous"):
                raise HealthCheckFailed(
                    f"Services did not turn healthy within {f.health_timeout} s: {error_line(exc.stderr)}") from None
            raise
        self.timeline.append(Event(step.id, step.phase, step.title, t0, time.monotonic() - t0, True, detail))
        log.info("%s: %s (%.2f s)", step.id, step.title, time.monotonic() - t0)

    # --- step kinds -------------------------------------------------------------------------------
    def _command(self, step: Step) -> str:
        env = dict(step.env) | self.docker_env()
        if step.needs_db_password:
            env["PGPASSWORD"] = self.cfg.db_password.get_secret_value()
        out = self.plan.facts.run_dir / step.stdout_file if step.stdout_file else None
        done = run(c.Command(step.argv, env=env, stdout_path=out, ok_codes=step.ok_codes))
        return f"exit {done.returncode}"

    _checkout = _command

    def _copy_config(self, step: Step) -> str:
        f = self.plan.facts
        f.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # a retried backup writes every file again
        copied = bk.save_config(f.compose_dir, [*f.compose_files, f.env_file, f.env_template], f.run_dir / "compose")
        return ", ".join(copied)

    def _write_state(self, step: Step) -> str:
        f = self.plan.facts
        bk.write_json(f.run_dir / "state.json", {
            "environment": f.environment, "project": f.project, "git_commit": f.current_commit,
            "alembic_revision": f.db_revision, "images": f.current_images, "databases": f.databases,
            "target": {"ref": f.target_ref, "commit": f.target_commit, "heads": f.target_heads},
        })
        return "state.json"

    def _manifest(self, step: Step) -> str:
        manifest = bk.write_manifest(self.plan.facts.run_dir)
        return f"{len(manifest['files'])} files"

    def _rollback_point(self, step: Step) -> str:
        for source, point in step.params["databases"].items():
            dbops.create_rollback_point(self.db, source, point)
            self.rollback_points[source] = point
        return ", ".join(self.rollback_points.values())

    def merged_env(self) -> str:
        f = self.plan.facts
        saved = f.run_dir / "compose"
        old_template = (saved / f.env_template).read_text() if (saved / f.env_template).exists() else \
            envsync.template_at(f.compose_dir, f.current_commit, f.env_template)
        new_template = envsync.template_at(f.compose_dir, f.target_commit, f.env_template)
        return envsync.merge_for(saved / f.env_file, old_template, new_template).text

    def _write_env(self, step: Step) -> str:
        path = self.plan.facts.compose_dir / self.plan.facts.env_file
        text = self.merged_env()
        self.env_backup = str(envfile.backup(path))
        envfile.write_atomic(path, text)
        return f"backup {self.env_backup}"

    def _restore_env(self, step: Step) -> str:
        f = self.plan.facts
        envfile.write_atomic(f.compose_dir / f.env_file, (f.run_dir / "compose" / f.env_file).read_text())
        return "restored"

    def _pin_images(self, step: Step) -> str:
        f = self.plan.facts
        pins = {s: (i["repo_digest"] or i["id"]) for s, i in f.current_images.items()}
        services = {s: {"image": ref} for s, ref in pins.items() if s in f.current_services}
        (f.run_dir / "rollback-pins.yaml").write_text(json.dumps({"services": services}, indent=2) + "\n")
        return ", ".join(f"{s}={r}" for s, r in sorted(pins.items()))

    def _restore_db(self, step: Step) -> str:
        done = []
        for source, (point, failed) in step.params["databases"].items():
            if source not in self.rollback_points:
                continue
            self.db.wait_until_reachable(dbops.MAINTENANCE_DB)
            dbops.restore_rollback_point(self.db, source, point, failed)
            done.append(f"{source} restored (failed state kept as {failed})")
        return "; ".join(done) or "no rollback point was taken; database untouched"

    def _verify(self, step: Step) -> str:
        f = self.plan.facts
        rollback = step.phase == "rollback"
        project = old_project(f, pinned=True) if rollback else target_project(f)
        images = step.params["images"]
        statuses = parse_ps(run(c.Command(c.compose_ps_json(project), env=self.docker_env())).stdout)
        result = Verification([services_check(statuses, step.params["services"], {} if rollback else images)])
        expected_version = image_tag(images.get(f.migrate_service, ""))
        for check in self.cfg.http_checks:
            probe = http_probe(check.name, check.url, check.expect_status, check.expect_version_field, expected_version)
            result.checks.append(poll(probe, deadline_seconds=min(30, self.cfg.health_timeout_seconds)))
        try:
            revision = dbops.alembic_revisions(self.db, f.db_name)
            result.checks.append(revision_check(revision, step.params["heads"]))
        except UpgradeError as exc:
            result.checks.append(CheckResult("database revision", False, str(exc)))
        self.verifications[step.id] = result
        if not result.ok:
            raise HealthCheckFailed("Verification failed: " + "; ".join(result.failures()))
        return "; ".join(ch.detail for ch in result.checks)

    # --- after the run ----------------------------------------------------------------------------
    def drop_rollback_points(self) -> None:
        for point in list(self.rollback_points.values()):
            dbops.drop_database(self.db, point)

    def downtime(self) -> dict[str, float]:
        """Measured downtime (writers stopped → target healthy) and its parts, in seconds."""
        ev = {e.step: e for e in self.timeline}
        if "stop-writers" not in ev:
            return {}
        parts = {k: round(ev[k].seconds, 3) for k in ("stop-writers", "rollback-point", "checkout-target", "write-env",
                                                       "remove-retired", "start-db", "migrate", "start-target") if k in ev}
        last = ev.get("start-target") or self.timeline[-1]
        parts["total"] = round(last.started + last.seconds - ev["stop-writers"].started, 3)
        return parts
