"""The clean-up after success (`finish`) and at the end of a rollback: what the run made goes, the backup stays."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from core.backup import rollbackpoint as rp
from core.cutover.steps.base import Step, StepContext
from core.errors import CleanupFailed, StepFailed
from core.io import pgsql


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
                ctx.io.sql([pgsql.terminate(name), pgsql.drop_database(name)])
                gone.append(f"database {name}")
        gone += [f"schema {s}" for s in ctx.io.drop_probe_schemas()]
        for slot in self.slots:
            if ctx.io.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)):
                ctx.io.sql(pgsql.drop_slot(slot))
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

