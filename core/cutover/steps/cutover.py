"""The cutover's steps, in the downtime: stop the writers, check out the target, install the merged env, start the
database, migrate once, start the target."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from core import files
from core.cutover.steps.base import CommandStep, CreateAhead, Phase, Step, StepContext, start_created_ahead
from core.env import envfile
from core.env.envstage import read_checked
from core.errors import (CheckoutFailed, CommandFailed, EnvWriteFailed, HealthCheckFailed, MigrationFailed,
                         ServiceRemovalFailed, ServicesNotHealthy, StopFailed, error_line)

MERGED_ENV = "env.merged"  # the env-sync result, staged in the run folder before the cutover installs it


@dataclass(frozen=True)
class StopServices(CommandStep):
    """`docker compose down` of the target (in a rollback). If the engine refuses only to remove the project's
    network ("has active endpoints") while no container of the project is left, the stack is down: the network keeps
    a stale endpoint (seen with Debian's dockerd 20.10 under load; `network disconnect -f` did not clear it), and the
    next start reuses the network. Any other failure, or a container still there, fails the step."""

    project_name: str = ""
    error: ClassVar = StopFailed

    def apply(self, ctx: StepContext) -> str:
        try:
            return super().apply(ctx)
        except CommandFailed as exc:
            if ("has active endpoints" not in exc.stderr or not self.project_name
                    or ctx.io.service_containers(self.project_name, None)):
                raise
            return ("every container removed; the engine kept the project's network (\"has active endpoints\" with "
                    "no container left: a stale endpoint), which the next start reuses")


@dataclass(frozen=True)
class StopContainers(Step):
    """Stops services' containers through the engine API, all at once (compose's CLI costs its own start-up and
    loads the project first); each with its own stop signal and grace period. Removing them waits until after the
    downtime."""

    project_name: str = ""
    services: tuple[str, ...] = ()
    timeouts: tuple[tuple[str, int], ...] = ()  # the block's per-service stop timeouts (seconds before the kill)
    ahead: CreateAhead | None = None
    error: ClassVar = StopFailed

    def apply(self, ctx: StepContext) -> str:
        stop = lambda: ctx.io.stop_containers(self.project_name, list(self.services), dict(self.timeouts))  # noqa: E731
        return self.ahead.alongside(ctx, stop) if self.ahead else stop()

    def render(self) -> str:
        timed = "".join(f"; {s} killed after {t} s" for s, t in self.timeouts)
        return (f"engine API: stop the containers of {', '.join(self.services) or 'no service'} of project "
                f"`{self.project_name}`, in parallel{timed}" + (self.ahead.render() if self.ahead else ""))


@dataclass(frozen=True)
class Checkout(CommandStep):
    error: ClassVar = CheckoutFailed
    task: ClassVar = "checkout"


@dataclass(frozen=True)
class RemoveServices(CommandStep):
    error: ClassVar = ServiceRemovalFailed


@dataclass(frozen=True)
class StartServices(CommandStep):
    """`docker compose up`: fails when a service does not turn healthy in time. With `wait_for`, the command does
    not wait (`--wait` and `depends_on` conditions cost compose's 500 ms ticks) and the step polls every 50 ms
    instead (`wait`): the dependencies were started and waited for by an earlier step."""

    project_name: str = ""
    wait_for: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()  # the one-shot services among `wait_for`: done when exited 0
    wait_timeout: float = 120.0
    created_ahead: str = ""  # the record of a `CreateAhead` whose containers this step starts, if it succeeded
    error: ClassVar = HealthCheckFailed
    task: ClassVar = "compose-up"
    serving_first: ClassVar = False  # start the services behind the HTTP checks first, the rest while waiting

    def apply(self, ctx: StepContext) -> str:
        try:
            return self._start(ctx)
        except CommandFailed as exc:  # compose refused to go on: a job its `depends_on` waits for failed?
            failed = ctx.io.failed_jobs(self.project_name, self.jobs) if self.jobs else []
            if not failed:
                raise
            said = error_line(exc.stderr) if exc.stderr.strip() else str(exc)
            raise ServicesNotHealthy(f"{said}: job {'; job '.join(failed)}") from exc

    def _start(self, ctx: StepContext) -> str:
        wait = (lambda: self.wait(ctx)) if self.wait_for else None
        if self.created_ahead:
            started = start_created_ahead(ctx, self.project_name, self.created_ahead, wait, self.serving_first)
            if started is not None:
                return started
        out = super().apply(ctx)
        return f"{out}; {wait()}" if wait else out

    def wait(self, ctx: StepContext) -> str:
        """The containers' health, read through the Docker SDK."""
        return ctx.io.wait_healthy(self.project_name, list(self.wait_for), self.wait_timeout, jobs=self.jobs)

    def render(self) -> str:
        how = super().render()
        if self.created_ahead:
            how = f"engine API: start the containers created ahead, in `depends_on` order (else {how})"
        return how + (f"; then {self.waits_for()}, polled every 50 ms" if self.wait_for else "")

    def waits_for(self) -> str:
        return f"health of {', '.join(self.wait_for)}"

    @property
    def task_name(self) -> str:
        """`compose-up every service`; the database's start `compose-up db` (the UI tells the two apart)."""
        return super().task_name if self.phase == Phase.ROLLBACK else f"{self.task} {self.starts()}"

    def starts(self) -> str:
        return "every service"


@dataclass(frozen=True)
class StartDatabase(StartServices):
    """Starts the database service; ready when it takes connections at the environment's address (what the
    migration needs), which comes before the container's next health check."""

    def wait(self, ctx: StepContext) -> str:
        return ctx.io.wait_for_database(every=0.05)

    def starts(self) -> str:
        return ", ".join(self.wait_for) or "the database"

    def waits_for(self) -> str:
        return "a connection to the database"


@dataclass(frozen=True)
class StartApp(StartServices):
    """Starts every service; the downtime ends when the environment's HTTP checks answer (the app serves), before
    the containers' next health check. `Verify` then waits for every container's health. Without HTTP checks,
    the containers' health. Containers created ahead start serving ones first: the services publishing the HTTP
    checks' ports, with their dependencies; the others while the checks are polled."""

    serving_first: ClassVar = True

    def wait(self, ctx: StepContext) -> str:
        return (ctx.io.wait_answering(self.project_name, list(self.wait_for), self.wait_timeout, jobs=self.jobs)
                or super().wait(ctx))

    def waits_for(self) -> str:
        return f"the HTTP checks answering (else health of {', '.join(self.wait_for)})"


@dataclass(frozen=True)
class Migrate(CommandStep):
    """The migration, once, in a one-off container of the target image (labelled with the run, so a recovery finds
    it if the runner dies while it runs); meanwhile, `ahead` may create the containers the start needs."""

    ahead: CreateAhead | None = None
    error: ClassVar = MigrationFailed
    task: ClassVar = "migrate"

    def apply(self, ctx: StepContext) -> str:
        return self.ahead.alongside(ctx, lambda: super(Migrate, self).apply(ctx)) if self.ahead else super().apply(ctx)

    def render(self) -> str:
        return super().render() + (self.ahead.render() if self.ahead else "")


@dataclass(frozen=True)
class InstallEnv(Step):
    """Installs the env merge pre-flight staged in the run folder as the stack's env file (backup first, atomic):
    exactly the bytes whose sha256 the plan holds, or none (StagedEnvChanged); then each `envs/**.env` copy the merge
    changed, the same way. A plan.json from before the sha256 was recorded names none: then the run folder's staged
    file is installed unchecked, as it was then."""

    error: ClassVar = EnvWriteFailed
    task: ClassVar = "install-env"

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        path = f.settings.stack.compose_dir / f.settings.stack.env_file
        result = f.env_sync
        text = result.read_staged(self.id) if result.sha256 else (f.run.dir / MERGED_ENV).read_text()
        copies = [(f.settings.stack.compose_dir / c["path"], read_checked(self.id, Path(c["staged"]), c["sha256"]))
                  for c in result.changed_copies]  # every staged file checked before the first is written
        done = [_install(path, text)]
        done += [f"{copy.name}: {_install(copy, merged)}" for copy, merged in copies]
        return "; ".join(done) + (f"; {result.size} bytes, sha256 as planned" if result.sha256 else "")


def _install(path: Path, text: str) -> str:
    """Writes `text` to the env file `path` (backup first, atomically), unless it holds it already."""
    if path.exists() and path.read_bytes() == text.encode("utf-8"):
        return "already installed"
    saved = envfile.backup(path)
    files.write_atomic(path, text, keep_mode=True)
    return f"backup {saved}"
