"""The kinds of step an upgrade is made of. Each knows how to apply itself, how it fails and how it reads in the plan.

A step is frozen data (built by `core.cutover.plan.build_plan`, pure); `apply(ctx)` is its only side effect and goes
through the context's executor, database and HTTP probe, which tests replace. `execute(step, ctx)` is the one
walker: it journals the step before and after, times it, and turns any failure into the step's own error class
(`StepFailed` subclasses, each saying what to do next).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from core.backup import bundle as bk
from core.io import commands as c
from core.env import envfile
from core.backup import kept
from core.backup import rollbackpoint as rp
from core.io.compose import image_tag, parse_ps
from core.io.engine import current_images
from core.io.pgsql import drop_slot_sql, quote_ident, quote_literal, terminate_sql
from core.errors import (BackupFailed, CheckoutFailed, CleanupFailed, CommandFailed, CommandTimedOut, EnvWriteFailed,
                         HealthCheckFailed, MigrationFailed, RestoreFailed, RollbackPointFailed, ServiceRemovalFailed,
                         StepFailed, StopFailed, UpgradeError, error_line)
from core.parallel import all_at_once, first_failure
from core.cutover.verify import revision_check, services_check, version_output_check
from core.io.http import CheckResult, Verification

if TYPE_CHECKING:
    from core.cutover.journal import Journal
    from core.cutover.plan import Facts
    from core.stackio import StackIO

log = logging.getLogger("stackshift")

MERGED_ENV = "env.merged"  # the env-sync result, staged in the run folder before the cutover installs it
FAULT_VAR = "STACKSHIFT_INJECT_FAULT"


@dataclass
class StepContext:
    """What a step acts on: the facts of the run, the environment's settings, the journal and the I/O."""

    facts: Facts
    io: StackIO
    journal: Journal
    keep_failed_database: bool = False
    verifications: dict[str, Verification] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    step: str
    phase: str
    title: str
    seconds: float
    detail: str


# --- the base types -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One step of a plan. Subclasses set `error` (raised on failure) and `task` (its task run's name)."""

    id: str
    phase: str  # backup | cutover | verify | rollback | finish
    title: str

    error: ClassVar[type[StepFailed]] = StepFailed
    task: ClassVar[str] = ""

    @property
    def task_name(self) -> str:
        name = self.task or self.id
        return f"rollback-{self.id}" if self.phase == "rollback" else name

    def apply(self, ctx: StepContext) -> str:
        raise NotImplementedError

    def render(self) -> str:
        """How the step reads in the plan artifact (markdown)."""
        return f"_{type(self).__name__}_"

    @property
    def error_class(self) -> type[StepFailed]:
        """A step's own error, except while putting things back (any rollback step's failure means the rollback
        failed) and in the clean-up after success."""
        return {"rollback": RestoreFailed, "finish": CleanupFailed}.get(self.phase, self.error)

    def failure(self, exc: BaseException) -> StepFailed:
        """The error this step raises for `exc`: its own class, with the detail a person needs."""
        if isinstance(exc, StepFailed) and isinstance(exc, self.error_class):
            return exc
        if isinstance(exc, StepFailed):
            return self.error_class(self.id, exc.detail)
        if isinstance(exc, CommandTimedOut):
            detail = str(exc)
        elif isinstance(exc, CommandFailed):
            detail = error_line(exc.stderr) if exc.stderr.strip() else str(exc)
        elif isinstance(exc, UpgradeError):
            detail = str(exc)
        else:
            detail = f"unexpected {type(exc).__name__}: {exc}"
        return self.error_class(self.id, detail)


@dataclass(frozen=True)
class CommandStep(Step):
    """A step that is one command (argv as data); `env` holds no secret (the password is added at the last call)."""

    argv: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    needs_db_password: bool = False
    stdout_file: str | None = None
    ok_codes: tuple[int, ...] = (0,)
    timeout: float | None = None

    def apply(self, ctx: StepContext) -> str:
        out = ctx.facts.run_dir / self.stdout_file if self.stdout_file else None
        done = ctx.io.run(c.Command(list(self.argv), env=dict(self.env), stdout_path=out, ok_codes=self.ok_codes,
                                    timeout=self.timeout), db_password=self.needs_db_password)
        return f"exit {done.returncode}"

    def render(self) -> str:
        keys = sorted(k for k, _ in self.env) + (["PGPASSWORD"] if self.needs_db_password else [])
        env = f" (env: {', '.join(keys)})" if keys else ""
        return f"`{' '.join(self.argv)}`{env}"


@dataclass(frozen=True)
class CreateAhead:
    """`compose create` of services the next start step needs, run alongside a step that mostly waits (a stop, the
    migration): creating a container starts nothing, and takes that work out of the start. It records the
    containers it made (service → id) in the run folder; the start step starts exactly those through the engine
    API. If it fails, nothing is recorded, and the start runs `compose up` as usual."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    project_name: str
    services: tuple[str, ...]
    record: str  # file name in the run folder

    def alongside(self, ctx: StepContext, main: Callable[[], str]) -> str:
        path = ctx.facts.run_dir / self.record
        path.unlink(missing_ok=True)  # only this attempt's containers may be started as created

        def create() -> None:
            ctx.io.run(c.Command(list(self.argv), env=dict(self.env)))
            ids = ctx.io.service_containers(self.project_name, list(self.services))
            missing = sorted(set(self.services) - set(ids))
            if missing:
                raise RuntimeError(f"no container for {', '.join(missing)}")
            envfile.write_atomic(path, json.dumps(ids))

        (out, failed), (_, not_created) = all_at_once([main, create], ["main", "compose-create"])
        if failed is not None:
            raise failed
        if not_created is not None:
            log.warning("Creating the containers of %s ahead failed (%s); their start runs compose up.",
                        ", ".join(self.services), not_created)
            return f"{out}; {', '.join(self.services)} not created ahead"
        return f"{out}; {', '.join(self.services)} created meanwhile"

    def render(self) -> str:
        return f"; meanwhile `{' '.join(self.argv)}`"


def start_created_ahead(ctx: StepContext, project: str, record: str, meanwhile: Callable[[], str] | None,
                        serving_first: bool = False) -> str | None:
    """Starts the containers a `CreateAhead` recorded, running `meanwhile` (the wait) once the serving ones are
    started; None (nothing started) when there is no record or they are not startable as created."""
    path = ctx.facts.run_dir / record
    if not record or not path.exists():
        return None
    return ctx.io.start_created(project, json.loads(path.read_text()), meanwhile, serving_first)


# --- backup ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackupCommand(CommandStep):
    error: ClassVar = BackupFailed


@dataclass(frozen=True)
class SaveResolvedConfig(BackupCommand):
    """Records the resolved compose config: pre-flight's output of the same command when it kept one and the files
    compose read are unchanged since (`core.backup.kept`), else the command's own output."""

    def apply(self, ctx: StepContext) -> str:
        text = kept.take(self.argv)
        if text is None:
            return super().apply(ctx)
        out = ctx.facts.run_dir / self.stdout_file
        with os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
            f.write(text)
        return "pre-flight's output (the compose files and .env unchanged since)"


@dataclass(frozen=True)
class BaseBackup(BackupCommand):
    """`pg_basebackup` in the database's own container (local socket), next to the data directory, with a new
    physical replication slot that keeps every WAL segment from the backup on: the base of a PITR rollback point.
    A retry starts clean: a half-written folder and the slot of an earlier attempt are removed first."""

    host_dir: str = ""
    slot: str = ""

    def apply(self, ctx: StepContext) -> str:
        ctx.io.sql(drop_slot_sql(self.slot))
        if self.host_dir and Path(self.host_dir).exists():
            shutil.rmtree(self.host_dir)
        super().apply(ctx)
        return f"{self.host_dir}; WAL kept by the slot {self.slot}"


@dataclass(frozen=True)
class DumpDatabase(BackupCommand):
    """`pg_dump` in directory format with parallel jobs, in a snapshot exported by a session that also counts every
    table's rows in that same snapshot (`<db>.counts.json`): the restore drill compares against exactly what the
    dump holds."""

    database: str = ""

    def apply(self, ctx: StepContext) -> str:
        out = ctx.facts.run_dir / f"{self.database}.dump"
        if out.exists():  # a retried backup starts again: pg_dump -Fd wants a new folder
            shutil.rmtree(out)
        counts = ctx.io.dump_in_snapshot(self.database, c.Command(list(self.argv), timeout=self.timeout))
        bk.write_json(ctx.facts.run_dir / f"{self.database}.counts.json", counts)
        return f"{len(counts)} tables, {sum(counts.values())} rows"


@dataclass(frozen=True)
class Checkpoint(Step):
    """`CHECKPOINT` right before the cutover, the old version still serving: the dirty buffers (the pre-flight
    probes', the app's) are written now, not by the shutdown checkpoint or FILE_COPY's inside the downtime. An
    optimisation only: a role that may not (PostgreSQL 15: superuser or pg_checkpoint) skips it with a note."""

    error: ClassVar = BackupFailed
    task: ClassVar = "checkpoint"

    def apply(self, ctx: StepContext) -> str:
        try:
            ctx.io.sql(["CHECKPOINT"])
        except UpgradeError:
            raise
        except Exception as exc:  # psycopg's InsufficientPrivilege and the like
            return f"skipped ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        return "dirty buffers written before the downtime"

    def render(self) -> str:
        return "`CHECKPOINT`"


@dataclass(frozen=True)
class SaveConfig(Step):
    """Copies the compose files, `.env` and the env template into the run folder (0600)."""

    names: tuple[str, ...] = ()
    error: ClassVar = BackupFailed

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        copied = bk.save_config(f.compose_dir, list(self.names), f.run_dir / "compose")
        return ", ".join(copied)


@dataclass(frozen=True)
class WriteState(Step):
    error: ClassVar = BackupFailed

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        bk.write_json(f.run_dir / "state.json", {
            "environment": f.environment, "project": f.project, "git_commit": f.current_commit,
            "alembic_revision": f.db_revision, "images": f.current_images, "databases": f.databases,
            "target": {"ref": f.target_ref, "commit": f.target_commit, "heads": f.target_heads},
        })
        return "state.json"


@dataclass(frozen=True)
class WriteManifest(Step):
    error: ClassVar = BackupFailed

    def apply(self, ctx: StepContext) -> str:
        manifest = bk.write_manifest(ctx.facts.run_dir)
        return f"{len(manifest['files'])} files"


# --- cutover --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StopServices(CommandStep):
    error: ClassVar = StopFailed


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
    wait_timeout: float = 120.0
    created_ahead: str = ""  # the record of a `CreateAhead` whose containers this step starts, if it succeeded
    error: ClassVar = HealthCheckFailed
    task: ClassVar = "compose-up"
    serving_first: ClassVar = False  # start the services behind the HTTP checks first, the rest while waiting

    def apply(self, ctx: StepContext) -> str:
        wait = (lambda: self.wait(ctx)) if self.wait_for else None
        if self.created_ahead:
            started = start_created_ahead(ctx, self.project_name, self.created_ahead, wait, self.serving_first)
            if started is not None:
                return started
        out = super().apply(ctx)
        return f"{out}; {wait()}" if wait else out

    def wait(self, ctx: StepContext) -> str:
        """The containers' health, read through the Docker SDK."""
        return ctx.io.wait_healthy(self.project_name, list(self.wait_for), self.wait_timeout)

    def render(self) -> str:
        how = super().render()
        if self.created_ahead:
            how = f"engine API: start the containers created ahead, in `depends_on` order (else {how})"
        return how + (f"; then {self.waits_for()}, polled every 50 ms" if self.wait_for else "")

    def waits_for(self) -> str:
        return f"health of {', '.join(self.wait_for)}"


@dataclass(frozen=True)
class StartDatabase(StartServices):
    """Starts the database service; ready when it takes connections at the environment's address (what the
    migration needs), which comes before the container's next health check."""

    def wait(self, ctx: StepContext) -> str:
        return ctx.io.wait_for_database(every=0.05)

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
        return ctx.io.wait_answering(self.project_name, list(self.wait_for), self.wait_timeout) or super().wait(ctx)

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
class RollbackPoint(Step):
    """The state a rollback returns the databases to, taken with the writers stopped. One subclass per method
    (`core.backup.rollbackpoint`): a file-level copy, a named restore point over an online base backup, or a provider's
    snapshot."""

    error: ClassVar = RollbackPointFailed
    task: ClassVar = "rollback-point"

    def names(self) -> dict[str, str]:
        """What the journal records as the rollback point, per database (or for the whole cluster)."""
        raise NotImplementedError


@dataclass(frozen=True)
class TakeRollbackPoint(RollbackPoint):
    """A file-level copy of each database inside the same server (`FILE_COPY`); its cost grows with the size."""

    databases: tuple[tuple[str, str], ...] = ()  # (source, rollback point)

    def statements(self, source: str, point: str) -> list[str]:
        return [terminate_sql(source), f"DROP DATABASE IF EXISTS {quote_ident(point)}",
                f"CREATE DATABASE {quote_ident(point)} TEMPLATE {quote_ident(source)} STRATEGY FILE_COPY"]

    def names(self) -> dict[str, str]:
        return dict(self.databases)

    def apply(self, ctx: StepContext) -> str:
        for source, point in self.databases:
            ctx.io.sql(self.statements(source, point))
        return ", ".join(p for _, p in self.databases)

    def render(self) -> str:
        return "<br>".join(f"`{s}`" for src, pt in self.databases for s in self.statements(src, pt))


FLUSH_WAL = "SELECT txid_current()::text"
"""A committed transaction with an xid: its commit flushes the WAL up to it, the restore point record included
(`pg_create_restore_point` itself only inserts the record)."""


@dataclass(frozen=True)
class TakeRestorePoint(RollbackPoint):
    """A named restore point in the WAL (`pg_create_restore_point`): constant time whatever the size. The base
    backup taken online and the replication slot that has kept every WAL segment since make it restorable."""

    run_id: str = ""
    base_backup: str = ""  # host path, for the journal

    @property
    def slot(self) -> str:
        return rp.slot_name(self.run_id)

    def statement(self) -> str:
        return f"SELECT pg_create_restore_point({quote_literal(rp.restore_point_name(self.run_id))})::text"

    def names(self) -> dict[str, str]:
        return {"cluster": f"restore point {rp.restore_point_name(self.run_id)} over the base backup {self.base_backup}"}

    def apply(self, ctx: StepContext) -> str:
        held = ctx.io.query("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
        if not held or not held[0][0]:
            raise RollbackPointFailed(self.id, f"the replication slot {self.slot} that keeps the WAL since the base "
                                               f"backup is missing, so a restore point would not be restorable")
        lsn = ctx.io.query(self.statement())[0][0]
        ctx.io.query(FLUSH_WAL)
        return f"restore point {rp.restore_point_name(self.run_id)} at {lsn} (WAL kept from {held[0][0]})"

    def render(self) -> str:
        return f"`{self.statement()}` (the slot {self.slot} keeps the WAL since the base backup)"


@dataclass(frozen=True)
class TakeSnapshot(CommandStep, RollbackPoint):
    """The environment's own snapshot command (a managed database's provider snapshot)."""

    point: str = ""

    def names(self) -> dict[str, str]:
        return {"cluster": f"snapshot {self.point}"}


@dataclass(frozen=True)
class InstallEnv(Step):
    """Installs the env merge pre-flight staged in the run folder as the stack's env file (backup first, atomic):
    exactly the bytes whose sha256 the plan holds, or none (StagedEnvChanged). A plan.json from before the sha256 was
    recorded names none: then the run folder's staged file is installed unchecked, as it was then."""

    error: ClassVar = EnvWriteFailed
    task: ClassVar = "install-env"

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        path = f.compose_dir / f.env_file
        result = f.env_sync
        text = result.read_staged(self.id) if result.sha256 else (f.run_dir / MERGED_ENV).read_text()
        if path.exists() and path.read_bytes() == text.encode("utf-8"):
            return "already installed"
        saved = envfile.backup(path)
        envfile.write_atomic(path, text)
        return f"backup {saved}" + (f"; {result.size} bytes, sha256 as planned" if result.sha256 else "")


@dataclass(frozen=True)
class Verify(Step):
    """Compose health states, the environment's HTTP checks (with the app's version) and the database revision."""

    project: c.ComposeProject | None = None
    heads: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    images: tuple[tuple[str, str], ...] = ()
    check_images: bool = True
    version_argv: tuple[str, ...] = ()  # a command whose output must name the app's version (empty: none)
    error: ClassVar = HealthCheckFailed
    task: ClassVar = "verify-health"

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        images = dict(self.images)
        if self.project is not None:  # the app may answer before docker's next health check: wait for it here
            with contextlib.suppress(UpgradeError):
                ctx.io.wait_healthy(self.project.name, list(self.services), float(f.health_timeout))
        statuses = parse_ps(ctx.io.run(c.Command(c.compose_ps_json(self.project))).stdout)
        result = Verification([services_check(statuses, list(self.services), images if self.check_images else {})])
        expected_version = image_tag(images.get(f.migrate_service, ""))
        result.checks += ctx.io.http_checks(expected_version)
        if self.version_argv:
            try:
                out = ctx.io.run(c.Command(list(self.version_argv))).stdout
                result.checks.append(version_output_check("version command", out, expected_version))
            except (CommandFailed, CommandTimedOut) as exc:
                result.checks.append(CheckResult("version command", False, str(exc)))
        try:
            result.checks.append(revision_check(ctx.io.revisions(f.db_name), list(self.heads)))
        except UpgradeError as exc:
            result.checks.append(CheckResult("database revision", False, str(exc)))
        ctx.verifications[self.id] = result
        if not result.ok:
            raise HealthCheckFailed(self.id, "; ".join(result.failures()))
        return "; ".join(ch.detail for ch in result.checks)

    def render(self) -> str:
        version = f"; `{' '.join(self.version_argv)}` names the version" if self.version_argv else ""
        return (f"compose health of {', '.join(self.services)}; HTTP checks{version}; database at "
                f"{', '.join(self.heads) or '(none)'}")


# --- rollback -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifyDigests(Step):
    """The running containers' images are exactly the pinned digests (what staging verified)."""

    digests: tuple[tuple[str, str], ...] = ()  # (service, repo@sha256:…)
    error: ClassVar = HealthCheckFailed
    task: ClassVar = "verify-digests"

    def apply(self, ctx: StepContext) -> str:
        running = {s: i["repo_digests"] for s, i in current_images(ctx.io.endpoint.client(), ctx.facts.project).items()}
        wrong = [f"{s} runs {', '.join(running.get(s, [])) or 'no container'}, expected {d}"
                 for s, d in self.digests if d not in running.get(s, [])]
        if wrong:
            raise HealthCheckFailed(self.id, "; ".join(wrong))
        return f"{len(self.digests)} services run the pinned digests"

    def render(self) -> str:
        return "running containers' image digests: " + ", ".join(f"{s} `{d.split('@')[-1][:19]}`"
                                                                for s, d in self.digests)


class RestoreEnv(Step):
    error: ClassVar = RestoreFailed

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        envfile.write_atomic(f.compose_dir / f.env_file, (f.run_dir / "compose" / f.env_file).read_text())
        return "restored from the backup"


@dataclass(frozen=True)
class PinImages(Step):
    """Writes a compose override pinning every previous service to the image digest it ran."""

    error: ClassVar = RestoreFailed

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        pins = {s: (i["repo_digest"] or i["id"]) for s, i in f.current_images.items()}
        services = {s: {"image": ref} for s, ref in pins.items() if s in f.current_services}
        (f.run_dir / "rollback-pins.yaml").write_text(json.dumps({"services": services}, indent=2) + "\n")
        return ", ".join(f"{s}={r}" for s, r in sorted(pins.items()))


@dataclass(frozen=True)
class RestoreDatabase(Step):
    """Puts each database back at its rollback point by renaming (no copy): the point becomes the database. Safe to
    run again after a crash halfway; skipped when the journal shows the migration never started."""

    databases: tuple[tuple[str, str, str], ...] = ()  # (database, rollback point, name for the failed state)
    error: ClassVar = RestoreFailed
    task: ClassVar = "restore-db"

    @staticmethod
    def statements(source: str, point: str, failed: str, source_exists: bool = True) -> list[str]:
        out = [terminate_sql(source), terminate_sql(point), f"DROP DATABASE IF EXISTS {quote_ident(failed)}"]
        if source_exists:
            out.append(f"ALTER DATABASE {quote_ident(source)} RENAME TO {quote_ident(failed)}")
        return out + [f"ALTER DATABASE {quote_ident(point)} RENAME TO {quote_ident(source)}"]

    def apply(self, ctx: StepContext) -> str:
        if _migration_never_started(ctx, TakeRollbackPoint, self.id):
            return "the migration never started: the databases are as they were"
        ctx.io.wait_for_database()
        done = []
        for source, point, failed in self.databases:
            existing = ctx.io.databases()
            if point not in existing:
                if source in existing and (failed in existing or ctx.journal.ever_done(self.id, "rollback")):
                    done.append(f"{source} already restored")
                    continue
                raise RestoreFailed(self.id, f"rollback point {point} of {source} is missing")
            ctx.io.sql(self.statements(source, point, failed, source in existing))
            done.append(f"{source} restored from {point}")
        return "; ".join(done)

    def render(self) -> str:
        return "<br>".join(f"`{s}`" for src, pt, fl in self.databases for s in self.statements(src, pt, fl))


def _migration_never_started(ctx: StepContext, point: type, step_id: str) -> bool:
    """Shared by every restore: nothing to put back if the migration never started; refuse if it started with no
    complete rollback point."""
    if not ctx.journal.kind_started(Migrate, "cutover"):
        return True
    if not ctx.journal.kind_done(point, "cutover"):
        raise RestoreFailed(step_id, "the migration started but the journal has no complete rollback point")
    return False


@dataclass(frozen=True)
class RestoreBaseBackup(Step):
    """With the database stopped, puts the base backup in place of the data directory (the failed state moves
    beside it: two renames, no copy) and sets it to replay the WAL up to the run's restore point, then promote.
    Idempotent; skipped when the journal shows the migration never started."""

    service: str = ""
    host: str = ""
    container: str = ""
    run_id: str = ""
    error: ClassVar = RestoreFailed
    task: ClassVar = "restore-db"

    def apply(self, ctx: StepContext) -> str:
        if _migration_never_started(ctx, TakeRestorePoint, self.id):
            return "the migration never started: the data directory is as it was"
        data = rp.DataDir(self.service, Path(self.host), rp.PurePosixPath(self.container))
        try:
            return rp.swap_in_base_backup(data, self.run_id)
        except OSError as exc:
            raise RestoreFailed(self.id, str(exc)) from None

    def render(self) -> str:
        base, failed = rp.base_dir_name(self.run_id), rp.failed_dir_name(self.run_id)
        return (f"rename `{self.host}` → `{failed}`, `{base}` → `{self.host}`; recovery to the restore point "
                f"`{rp.restore_point_name(self.run_id)}` (`recovery.signal`, WAL from `{failed}/pg_wal`)")


@dataclass(frozen=True)
class AwaitRecovery(Step):
    """Waits until the restored cluster has replayed its WAL to the restore point and promoted itself, then resets
    the recovery settings. PostgreSQL refuses to start at all if the WAL ends before the restore point."""

    timeout: float = 3600.0
    error: ClassVar = RestoreFailed

    def apply(self, ctx: StepContext) -> str:
        if _migration_never_started(ctx, TakeRestorePoint, self.id):
            return "nothing was restored"
        ctx.io.wait_for_database()
        deadline = time.monotonic() + self.timeout
        while ctx.io.query("SELECT pg_is_in_recovery()")[0][0]:
            if time.monotonic() > deadline:
                raise RestoreFailed(self.id, f"the restored cluster is still replaying WAL after {self.timeout:.0f} s")
            time.sleep(0.2)
        try:
            ctx.io.sql([f"ALTER SYSTEM RESET {k}" for k in rp.RECOVERY_KEYS] + ["SELECT pg_reload_conf()"])
            return "recovered to the restore point and promoted"
        except Exception as exc:  # a role without ALTER SYSTEM: harmless leftovers, used only by a recovery
            return f"recovered to the restore point and promoted (recovery settings left in place: {exc})"


@dataclass(frozen=True)
class RestoreSnapshot(CommandStep):
    """The environment's snapshot-restore command; skipped when the migration never started."""

    error: ClassVar = RestoreFailed
    task: ClassVar = "restore-db"

    def apply(self, ctx: StepContext) -> str:
        if _migration_never_started(ctx, TakeSnapshot, self.id):
            return "the migration never started: the database is as it was"
        return super().apply(ctx)


@dataclass(frozen=True)
class StopRunContainers(Step):
    """Removes the stack's one-off containers first (a migration still running must not touch the database while it
    is put back)."""

    error: ClassVar = RestoreFailed

    def apply(self, ctx: StepContext) -> str:
        n = ctx.io.remove_stack_containers()
        return f"removed {n} one-off container(s)" if n else "none running"


@dataclass(frozen=True)
class Cleanup(Step):
    """Leaves nothing behind the report does not name: rollback-point databases (and the failed state, unless the
    environment keeps it), one-off containers of the stack, scratch folders and probe schemas."""

    drop: tuple[str, ...] = ()  # rollback points
    failed: tuple[str, ...] = ()  # failed states (kept when the environment says so)
    scratch: tuple[str, ...] = ()  # folders
    slots: tuple[str, ...] = ()  # replication slots of a PITR rollback point
    folders: tuple[str, ...] = ()  # a PITR base backup
    failed_folders: tuple[str, ...] = ()  # a PITR failed state (kept when the environment says so)
    error: ClassVar = CleanupFailed
    task: ClassVar = "cleanup"

    @property
    def error_class(self) -> type[StepFailed]:
        return CleanupFailed

    def apply(self, ctx: StepContext) -> str:
        gone = []
        containers = ctx.io.remove_stack_containers()
        if containers:
            gone.append(f"{containers} one-off container(s)")
        drop = list(self.drop) + ([] if ctx.keep_failed_database else list(self.failed))
        existing = ctx.io.databases()
        for name in drop:
            if name in existing:
                ctx.io.sql([terminate_sql(name), f"DROP DATABASE IF EXISTS {quote_ident(name)}"])
                gone.append(f"database {name}")
        gone += [f"schema {s}" for s in ctx.io.drop_probe_schemas()]
        for slot in self.slots:
            if ctx.io.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)):
                ctx.io.sql(drop_slot_sql(slot))
                gone.append(f"replication slot {slot}")
        doomed = list(self.folders) + ([] if ctx.keep_failed_database else list(self.failed_folders))
        gone += [f"folder {p}" for p in rp.remove_folders([Path(p) for p in doomed])]
        for folder in self.scratch:
            for p in Path(os.path.dirname(folder)).glob(os.path.basename(folder)):
                shutil.rmtree(p, ignore_errors=True)
                gone.append(f"folder {p}")
        kept = [n for n in self.failed if n in existing and ctx.keep_failed_database]
        kept += [p for p in self.failed_folders if ctx.keep_failed_database and Path(p).exists()]
        return ("removed " + ", ".join(gone) if gone else "nothing to remove") + \
            (f"; kept the failed state {', '.join(kept)}" if kept else "")

    def render(self) -> str:
        return (f"drop {', '.join(self.drop) or 'no database'}"
                + (f" and the failed state {', '.join(self.failed)}" if self.failed else "")
                + (f"; drop the replication slot {', '.join(self.slots)}" if self.slots else "")
                + (f"; remove {', '.join(self.folders + self.failed_folders)}" if self.folders + self.failed_folders
                   else "")
                + "; remove the stack's one-off containers, scratch folders and probe schemas")


@dataclass(frozen=True)
class Together(Step):
    """Steps with no order between them, applied at the same time (one thread each), each journalled, timed and
    failing as itself (`execute`): the check-out beside the writers' stop, the backup's light records beside the
    dump, the dump's check beside the volume archive. Once all have ended, the failure of the first failing step in
    the plan's order is raised."""

    steps: tuple[Step, ...] = ()

    def apply(self, ctx: StepContext) -> str:
        outcomes = all_at_once([lambda step=step: execute(step, ctx) for step in self.steps],
                               [step.id for step in self.steps])
        first_failure(outcomes)  # the first in the plan's order, whichever thread ended first
        return "; ".join(f"{step.id} {done.seconds:.2f} s" for step, (done, _) in zip(self.steps, outcomes))

    @property
    def error_class(self) -> type[StepFailed]:
        return StepFailed  # each part fails with its own class

    def render(self) -> str:
        return "at the same time:<br>" + "<br>".join(f"- {step.id}: {step.render()}" for step in self.steps)


def flat(steps: list[Step]) -> list[Step]:
    """The steps with those of every `Together` in their place."""
    return [sub for step in steps for sub in (flat(list(step.steps)) if isinstance(step, Together) else [step])]


# --- the walker -----------------------------------------------------------------------------------------------
def _inject(step: Step, when: str) -> None:
    """Test-only fault injection, unset in production. `STACKSHIFT_INJECT_FAULT` holds comma-separated
    `<phase>:<step>:<mode>` with mode `fail-before`, `fail-after` (raise) or `hold-after` (write the spec into the
    file `STACKSHIFT_INJECT_FAULT_MARKER` and wait until that file is deleted). The fault-matrix tests use it to make
    a real run fail, or stall where they kill it."""
    for spec in filter(None, os.environ.get(FAULT_VAR, "").split(",")):
        phase, step_id, mode = (spec.split(":") + ["", "", ""])[:3]
        if (phase, step_id) != (step.phase, step.id) or not mode.endswith(when):
            continue
        if mode.startswith("fail"):
            raise RuntimeError(f"injected fault {spec}")
        marker = Path(os.environ[FAULT_VAR + "_MARKER"])
        marker.write_text(spec)
        deadline = time.monotonic() + 600
        while marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def execute(step: Step, ctx: StepContext, on_done: Callable[[Outcome], None] | None = None) -> Outcome:
    """Applies one step: journal first, then the change, then the journal again. A failure of any kind becomes the
    step's own error; an interruption (SIGTERM, cancellation) is journalled and passes through unchanged."""
    ctx.journal.begin(step.id, step.phase, type(step).__name__)
    t0 = time.monotonic()
    try:
        _inject(step, "before")
        detail = step.apply(ctx) or ""
        _inject(step, "after")
    except Exception as exc:
        err = step.failure(exc)
        ctx.journal.end(step.id, False, str(err))
        log.error("%s failed after %.2f s: %s", step.id, time.monotonic() - t0, err)
        raise err from (None if err is exc else exc)
    except BaseException as exc:
        ctx.journal.end(step.id, False, f"interrupted ({type(exc).__name__})")
        raise
    ctx.journal.end(step.id, True, detail)
    outcome = Outcome(step.id, step.phase, step.title, time.monotonic() - t0, detail)
    log.info("%s: %s (%.2f s) %s", step.id, step.title, outcome.seconds, detail)
    if on_done:
        on_done(outcome)
    return outcome
