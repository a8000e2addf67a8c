"""The rollback's steps: put the previous files, images and databases back. Each is safe to run again after a
crash at any point: a restore decides what is left from what it sees (which databases exist; which data directories,
and whether the restored cluster has promoted), never from what the journal says was started; and it is skipped when
the journal shows the migration never started."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from core import files
from core.backup import rollbackpoint as rp
from core.cutover.steps.base import CommandStep, Step, StepContext
from core.cutover.steps.cutover import Migrate
from core.cutover.steps.rollback_point import TakeRestorePoint, TakeRollbackPoint, TakeSnapshot
from core.errors import RestoreFailed
from core.io import pgsql


class RestoreEnv(Step):
    """Puts the env files back as the backup holds them, byte for byte: the `.env`, and with Dify's split layout
    every `envs/**.env` copy the target loads (one the operator did not have is removed)."""

    error: ClassVar = RestoreFailed

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        stack = f.settings.stack
        saved = f.run.dir / "compose"
        files.write_atomic(stack.compose_dir / stack.env_file, (saved / stack.env_file).read_bytes(), keep_mode=True)
        removed = 0
        for copy in f.env_sync.copies:
            path = stack.compose_dir / copy["path"]
            if copy["existed"]:
                files.write_atomic(path, (saved / copy["path"]).read_bytes(), keep_mode=True)
            elif path.is_file() or path.is_symlink():  # a copy made since; a folder there is none
                path.unlink()
                removed += 1
        restored = len(f.env_sync.existing_copies)
        more = f" and {restored} envs/ env file(s)" if restored else ""
        return f"restored from the backup{more}" + (f"; removed {removed} that did not exist" if removed else "")


@dataclass(frozen=True)
class PinImages(Step):
    """Writes a compose override pinning every previous service to the image digest it ran."""

    error: ClassVar = RestoreFailed

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        pins = {s: (i["repo_digest"] or i["id"]) for s, i in f.current.images.items()}
        services = {s: {"image": ref} for s, ref in pins.items() if s in f.current.services}
        (f.run.dir / "rollback-pins.yaml").write_text(json.dumps({"services": services}, indent=2) + "\n")
        return ", ".join(f"{s}={r}" for s, r in sorted(pins.items()))


SWAP, REPLACE_STALE, COMPLETE, RESTORED = "swap", "replace-stale", "complete", "restored"


def rename_back(point: bool, source: bool, failed: bool, restored_before: bool) -> str:
    """What is left of putting one database back by rename, from which of its names exist now: the rollback point,
    the database, the failed state (`restored_before`: a journal record of this restore completing, the one thing
    that tells a clean-up's work from a lost point). Raises LookupError (saying what is missing) when neither the
    point nor a restored database is there."""
    if point and source:
        return REPLACE_STALE if failed else SWAP  # the database is the migrated one: it moves aside
    if point:
        return COMPLETE  # moved aside already (the failed state), or gone: the point becomes the database
    if source and (failed or restored_before):
        return RESTORED
    raise LookupError("is missing" if source else "and the database itself are missing")


@dataclass(frozen=True)
class RestoreDatabase(Step):
    """Puts each database back at its rollback point by renaming (no copy): the point becomes the database. Safe to
    run again after a crash halfway (`rename_back` reads which names exist); skipped when the journal shows the
    migration never started."""

    databases: tuple[tuple[str, str, str], ...] = ()  # (database, rollback point, name for the failed state)
    error: ClassVar = RestoreFailed
    task: ClassVar = "restore-db"

    @staticmethod
    def statements(source: str, point: str, failed: str, action: str = SWAP) -> list[pgsql.Statement]:
        out: list[pgsql.Statement] = [pgsql.terminate(source), pgsql.terminate(point)]
        if action == REPLACE_STALE:
            out.append(pgsql.drop_database(failed))
        if action in (SWAP, REPLACE_STALE):
            out.append(pgsql.rename_database(source, failed))
        return [*out, pgsql.rename_database(point, source)]

    def apply(self, ctx: StepContext) -> str:
        if _migration_never_started(ctx, TakeRollbackPoint, self.id):
            return "the migration never started: the databases are as they were"
        ctx.io.wait_for_database()
        done = []
        for source, point, failed in self.databases:
            existing = ctx.io.databases()
            try:
                action = rename_back(point in existing, source in existing, failed in existing,
                                     ctx.journal.ever_done(self.id, "rollback"))
            except LookupError as exc:
                raise RestoreFailed(self.id, f"the rollback point {point} of {source} {exc}") from None
            if action == RESTORED:
                done.append(f"{source} already restored")
                continue
            ctx.io.sql(self.statements(source, point, failed, action))
            done.append(f"{source} restored from {point}")
        return "; ".join(done)

    def render(self) -> str:
        return "<br>".join(f"`{pgsql.as_text(s)}`" for src, pt, fl in self.databases
                           for s in self.statements(src, pt, fl))


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

