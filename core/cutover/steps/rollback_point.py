"""The rollback point of the cutover, one step kind per method (`core.cutover.rollback_methods` says which a plan
takes): a file-level copy of each database, a named restore point over an online base backup, or the environment's
snapshot command."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.backup import rollbackpoint as rp
from core.cutover.steps.base import CommandStep, Step, StepContext
from core.errors import RollbackPointFailed
from core.io import pgsql


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

    def statements(self, source: str, point: str) -> list[pgsql.Statement]:
        return [pgsql.terminate(source), pgsql.drop_database(point),
                pgsql.create_database(point, source, file_copy=True)]

    def names(self) -> dict[str, str]:
        return dict(self.databases)

    def apply(self, ctx: StepContext) -> str:
        for source, point in self.databases:
            ctx.io.sql(self.statements(source, point))
        return ", ".join(p for _, p in self.databases)

    def render(self) -> str:
        return "<br>".join(f"`{pgsql.as_text(s)}`" for src, pt in self.databases for s in self.statements(src, pt))


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

    def statement(self) -> pgsql.Statement:
        return pgsql.restore_point(rp.restore_point_name(self.run_id))

    def names(self) -> dict[str, str]:
        point = rp.restore_point_name(self.run_id)
        return {"cluster": f"restore point {point} over the base backup {self.base_backup}"}

    def apply(self, ctx: StepContext) -> str:
        held = ctx.io.query("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
        if not held or not held[0][0]:
            raise RollbackPointFailed(self.id, f"the replication slot {self.slot} that keeps the WAL since the base "
                                               f"backup is missing, so a restore point would not be restorable")
        lsn = ctx.io.query(self.statement())[0][0]
        ctx.io.query(FLUSH_WAL)
        return f"restore point {rp.restore_point_name(self.run_id)} at {lsn} (WAL kept from {held[0][0]})"

    def render(self) -> str:
        return f"`{pgsql.as_text(self.statement())}` (the slot {self.slot} keeps the WAL since the base backup)"


@dataclass(frozen=True)
class TakeSnapshot(CommandStep, RollbackPoint):
    """The environment's own snapshot command (a managed database's provider snapshot)."""

    point: str = ""

    def names(self) -> dict[str, str]:
        return {"cluster": f"snapshot {self.point}"}

