"""The verification of the target once the downtime is over (and of the previous version after a rollback)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

from core.cutover.steps.base import Step, StepContext
from core.cutover.verify import revision_check, services_check, version_output_check
from core.errors import CommandFailed, CommandTimedOut, HealthCheckFailed, UpgradeError
from core.io import commands as c
from core.io.compose import image_tag, parse_ps
from core.io.engine import current_images
from core.io.http import CheckResult, Verification


@dataclass(frozen=True)
class Verify(Step):
    """Compose health states, the environment's HTTP checks (with the app's version) and the database revision."""

    project: c.ComposeProject | None = None
    heads: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()  # the one-shot services among them: done when exited 0 (`ResolvedConfig.jobs`)
    images: tuple[tuple[str, str], ...] = ()
    check_images: bool = True
    version_argv: tuple[str, ...] = ()  # a command whose output must name the app's version (empty: none)
    error: ClassVar = HealthCheckFailed
    task: ClassVar = "verify-health"

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        assert self.project is not None, "the plan builds every Verify with the compose project it verifies"
        images = dict(self.images)
        # the app may answer before docker's next health check: wait for it here
        with contextlib.suppress(UpgradeError):
            ctx.io.wait_healthy(self.project.name, list(self.services), float(f.settings.health.timeout_seconds),
                                jobs=self.jobs)
        statuses = parse_ps(ctx.io.run(c.Command(c.compose_ps_json(self.project))).stdout)
        project = self.project.name if self.project is not None else f.settings.stack.project_name
        result = Verification([services_check(statuses, list(self.services), images if self.check_images else {},
                                              self.jobs, lambda s: ctx.io.last_log_lines(project, s))])
        expected_version = image_tag(images.get(f.settings.migration.service, ""))
        result.checks += ctx.io.http_checks(expected_version)
        if self.version_argv:
            try:
                out = ctx.io.run(c.Command(list(self.version_argv))).stdout
                result.checks.append(version_output_check("version command", out, expected_version))
            except (CommandFailed, CommandTimedOut) as exc:
                result.checks.append(CheckResult("version command", False, str(exc)))
        try:
            result.checks.append(revision_check(ctx.io.revisions(f.settings.database.name), list(self.heads)))
        except UpgradeError as exc:
            result.checks.append(CheckResult("database revision", False, str(exc)))
        ctx.verifications[self.id] = result
        if not result.ok:
            raise HealthCheckFailed(self.id, "; ".join(result.failures()))
        return "; ".join(ch.detail for ch in result.checks)

    def render(self) -> str:
        version = f"; `{' '.join(self.version_argv)}` names the version" if self.version_argv else ""
        jobs = f" (job(s) {', '.join(self.jobs)}: exited 0)" if self.jobs else ""
        return (f"compose health of {', '.join(self.services)}{jobs}; HTTP checks{version}; database at "
                f"{', '.join(self.heads) or '(none)'}")



@dataclass(frozen=True)
class VerifyDigests(Step):
    """The running containers' images are exactly the pinned digests (what staging verified)."""

    digests: tuple[tuple[str, str], ...] = ()  # (service, repo@sha256:…)
    error: ClassVar = HealthCheckFailed
    task: ClassVar = "verify-digests"

    def apply(self, ctx: StepContext) -> str:
        images = current_images(ctx.io.endpoint.client(), ctx.facts.settings.stack.project_name)
        running = {s: i["repo_digests"] for s, i in images.items()}
        wrong = [f"{s} runs {', '.join(running.get(s, [])) or 'no container'}, expected {d}"
                 for s, d in self.digests if d not in running.get(s, [])]
        if wrong:
            raise HealthCheckFailed(self.id, "; ".join(wrong))
        return f"{len(self.digests)} services run the pinned digests"

    def render(self) -> str:
        return "running containers' image digests: " + ", ".join(f"{s} `{d.split('@')[-1][:19]}`"
                                                                for s, d in self.digests)

