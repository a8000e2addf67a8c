"""The backup's steps, the old version still serving: config copies, dumps, the PITR base backup, the checkpoint
right before the downtime, the state record and the manifest."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from core.backup import bundle as bk
from core.backup import kept
from core.cutover.steps.base import CommandStep, Step, StepContext
from core.errors import BackupFailed, UpgradeError
from core.io import commands as c
from core.io import pgsql


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
        assert self.stdout_file, "the plan names the file the resolved config is saved to"
        out = ctx.facts.run.dir / self.stdout_file
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
        ctx.io.sql(pgsql.drop_slot(self.slot))
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
        out = ctx.facts.run.dir / f"{self.database}.dump"
        if out.exists():  # a retried backup starts again: pg_dump -Fd wants a new folder
            shutil.rmtree(out)
        counts = ctx.io.dump_in_snapshot(self.database, c.Command(list(self.argv), timeout=self.timeout))
        bk.write_json(ctx.facts.run.dir / f"{self.database}.counts.json", counts)
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
        copied = bk.save_config(f.settings.stack.compose_dir, list(self.names), f.run.dir / "compose")
        return ", ".join(copied)


@dataclass(frozen=True)
class WriteState(Step):
    error: ClassVar = BackupFailed

    def apply(self, ctx: StepContext) -> str:
        f = ctx.facts
        bk.write_json(f.run.dir / "state.json", {
            "environment": f.run.environment, "project": f.settings.stack.project_name, "git_commit": f.current.commit,
            "alembic_revision": f.database.revision, "images": f.current.images, "databases": f.database.names,
            "target": {"ref": f.target.ref, "commit": f.target.commit, "heads": f.target.heads},
        })
        return "state.json"


@dataclass(frozen=True)
class WriteManifest(Step):
    error: ClassVar = BackupFailed

    def apply(self, ctx: StepContext) -> str:
        manifest = bk.write_manifest(ctx.facts.run.dir)
        return f"{len(manifest['files'])} files"

