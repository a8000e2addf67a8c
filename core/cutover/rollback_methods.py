"""The rollback point as a strategy: one class per method says what it adds to the backup, how the cutover takes the
point, how a rollback restores it (and where the previous database service starts), what the clean-ups remove, and
the names of what it makes. Nothing outside this module branches on the method: the plan asks `for_run(facts,
run_id)`, pre-flight asks `choose(…)` and `by_name(…)`.

| method | `name` (in plan.json) | the point | the restore |
|---|---|---|---|
| `FileCopy` | `file-copy` | a copy of each database in the same server | renames it back |
| `Pitr` | `pitr` | a named restore point over an online base backup and a slot | swaps the data directory, replays |
| `Snapshot` | `snapshot-command` | the environment's snapshot command | its restore command |

The data-directory work and the cost model are in `core.backup.rollbackpoint`; the step kinds in
`core.cutover.steps.rollback_point` and `core.cutover.steps.rollback`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ClassVar

from core.backup import rollbackpoint as rp
from core.cutover import steps as st
from core.cutover.steps import Phase
from core.errors import RollbackPointUnavailable, UpgradeError
from core.io import commands as c

if TYPE_CHECKING:
    from core.cutover.facts import Facts

AUTO = "auto"


class UnknownRollbackMethod(UpgradeError):
    def __init__(self, name: str):
        super().__init__(f"The rollback method {name!r} is none of {', '.join(METHODS)}: the plan (plan.json) was not "
                         f"written by this stackshift. Recover or roll back that run with the version that made it.")


@dataclass(frozen=True)
class Request:
    """What the environment asks of the rollback point (its block's settings)."""

    method: str = AUTO
    snapshot_command: tuple[str, ...] = ()
    snapshot_restore_command: tuple[str, ...] = ()
    file_copy_max_seconds: float = 0.3
    probe: bool = True  # measure FILE_COPY's rate on the server (for `auto`)


@dataclass(frozen=True)
class Probes:
    """Pre-flight's looks at the server, taken only when the choice needs them."""

    data_dir: Callable[[], tuple[rp.DataDir | None, str]]  # the cluster's data directory, or why PITR cannot work
    copy_rate: Callable[[], tuple[float, float]]  # FILE_COPY's MB/s and fixed seconds on the server


@dataclass(frozen=True)
class RollbackMethod(ABC):
    """How one run's rollback point is made, restored and removed. Bound to the run's facts; pure (steps as data)."""

    f: Facts
    run_id: str

    name: ClassVar[str]
    chosen_because: ClassVar[str] = "set in the environment"  # why, when the environment names it
    needs_data_dir: ClassVar[bool] = False  # pre-flight records the cluster's data directory in the facts

    def backup_steps(self, old: c.ComposeProject) -> list[st.Step]:
        """What the backup adds, the old version still serving."""
        return []

    @abstractmethod
    def point_step(self) -> st.RollbackPoint:
        """The cutover's `rollback-point`, with the writers stopped."""

    @abstractmethod
    def restore_steps(self, start_old_db: Sequence[st.Step]) -> list[st.Step]:
        """The rollback's `restore-db` and its company, with the previous database service's start where it must be
        (`start_old_db`: that start, or nothing when the previous version had no database service)."""

    def leftovers(self, rolled_back: bool) -> dict[str, tuple[str, ...]]:
        """What a `Cleanup` removes of this point: after success (`finish`), or after a rollback (then the failed
        state too, unless the environment keeps it). Keys are `Cleanup`'s fields."""
        return {}

    @classmethod
    def availability(cls, request: Request, probes: Probes) -> tuple[rp.DataDir | None, str]:
        """(the data directory it needs, why it cannot work here: '' when it can)."""
        return None, ""

    @classmethod
    def point_bytes(cls, database_bytes: int, cluster_bytes: Callable[[], int]) -> int:
        """What the point takes beside the server's data directory (pre-flight's disk check)."""
        return 0


class FileCopy(RollbackMethod):
    """A copy of each database inside the same server, taken with the writers stopped (its cost grows with the
    size); a rollback renames it back (no copy), keeping the failed state under another name."""

    name = "file-copy"

    @staticmethod
    def point_name(db: str, run_id: str) -> str:
        """`<db>__ss_rb_<run>`; pre-flight refuses names that would pass PostgreSQL's 63 bytes (no truncation)."""
        return f"{db}__ss_rb_{run_id}"

    @staticmethod
    def failed_name(db: str, run_id: str) -> str:
        return f"{db}__ss_failed_{run_id}"

    def points(self) -> tuple[str, ...]:
        return tuple(self.point_name(db, self.run_id) for db in self.f.database.names)

    def failed(self) -> tuple[str, ...]:
        return tuple(self.failed_name(db, self.run_id) for db in self.f.database.names)

    def point_step(self) -> st.RollbackPoint:
        points = tuple(zip(self.f.database.names, self.points(), strict=True))
        return st.TakeRollbackPoint("rollback-point", Phase.CUTOVER, "Take the rollback point (file-level copy of each "
                                    "database, same server)", databases=points)

    def restore_steps(self, start_old_db: Sequence[st.Step]) -> list[st.Step]:
        return [*start_old_db,
                st.RestoreDatabase("restore-db", Phase.ROLLBACK, "Put each database back at the rollback point (by "
                                   "rename: no copy)", databases=tuple(zip(self.f.database.names, self.points(),
                                                                           self.failed(), strict=True)))]

    def leftovers(self, rolled_back: bool) -> dict[str, tuple[str, ...]]:
        return {"drop": self.points(), **({"failed": self.failed()} if rolled_back else {})}

    @classmethod
    def point_bytes(cls, database_bytes: int, cluster_bytes: Callable[[], int]) -> int:
        return database_bytes


class Pitr(RollbackMethod):
    """A named restore point in the WAL, taken with the writers stopped in constant time, over a base backup taken
    online beside the data directory and a replication slot that keeps every WAL segment since. A rollback swaps
    the data directory for the base backup (two renames) and replays the WAL to the restore point."""

    name = "pitr"
    needs_data_dir = True

    @property
    def data(self) -> rp.DataDir | None:
        d = self.f.rollback.data_dir
        return rp.DataDir(d["service"], Path(d["host"]), PurePosixPath(d["container"])) if d else None

    @property
    def slot(self) -> str:
        return rp.slot_name(self.run_id)

    def base_backup(self) -> Path | None:
        return self.data.host_sibling(rp.base_dir_name(self.run_id)) if self.data else None

    def backup_steps(self, old: c.ComposeProject) -> list[st.Step]:
        """The online base backup, taken in the running database container, beside its data directory."""
        d, s = self.data, self.f.settings
        if d is None:
            return []
        into = d.container_sibling(rp.base_dir_name(self.run_id))
        return [st.BaseBackup("base-backup", Phase.BACKUP, f"Base backup of the cluster beside its data directory, "
                              f"with the replication slot {self.slot} keeping the WAL from now on (online)",
                              argv=tuple(c.pg_basebackup(old, d.service, s.database.user, into, self.slot)),
                              timeout=s.migration.timeout_seconds, host_dir=str(self.base_backup()), slot=self.slot)]

    def point_step(self) -> st.RollbackPoint:
        base = self.base_backup()
        return st.TakeRestorePoint("rollback-point", Phase.CUTOVER, "Take the rollback point (a named restore point "
                                   "in the WAL, over the online base backup: constant time)", run_id=self.run_id,
                                   base_backup=str(base) if base else "")

    def restore_steps(self, start_old_db: Sequence[st.Step]) -> list[st.Step]:
        """The data directory is swapped while the database is down; the start then replays the WAL."""
        d = self.f.rollback.data_dir or {}
        return [st.RestoreBaseBackup("restore-db", Phase.ROLLBACK, "Put the base backup in place of the data "
                                     "directory (by rename: no copy) and set it to replay to the restore point",
                                     service=d.get("service", ""), host=d.get("host", ""),
                                     container=d.get("container", ""), run_id=self.run_id),
                *start_old_db,
                st.AwaitRecovery("await-recovery", Phase.ROLLBACK, "Wait for the WAL replay to the restore point and "
                                 "the promotion", timeout=float(self.f.settings.migration.timeout_seconds))]

    def leftovers(self, rolled_back: bool) -> dict[str, tuple[str, ...]]:
        if self.data is None:
            return {}
        failed = str(self.data.host_sibling(rp.failed_dir_name(self.run_id)))
        return {"slots": (self.slot,), "folders": (str(self.base_backup()),),
                **({"failed_folders": (failed,)} if rolled_back else {})}

    @classmethod
    def availability(cls, request: Request, probes: Probes) -> tuple[rp.DataDir | None, str]:
        return probes.data_dir()

    @classmethod
    def point_bytes(cls, database_bytes: int, cluster_bytes: Callable[[], int]) -> int:
        return cluster_bytes()


class Snapshot(RollbackMethod):
    """The environment's own commands (a managed database's provider snapshot), `{point}` replaced by the run's
    snapshot name."""

    name = "snapshot-command"
    chosen_because = "the environment's snapshot command"

    @property
    def point(self) -> str:
        return rp.restore_point_name(self.run_id)

    def argv(self, template: Sequence[str]) -> tuple[str, ...]:
        return tuple(a.replace("{point}", self.point) for a in template)

    def point_step(self) -> st.RollbackPoint:
        s = self.f.settings
        return st.TakeSnapshot("rollback-point", Phase.CUTOVER, "Take the rollback point (the environment's snapshot "
                               "command)", argv=self.argv(s.rollback_point.snapshot_command),
                               timeout=s.migration.timeout_seconds, point=self.point)

    def restore_steps(self, start_old_db: Sequence[st.Step]) -> list[st.Step]:
        s = self.f.settings
        return [*start_old_db,
                st.RestoreSnapshot("restore-db", Phase.ROLLBACK, "Restore the database from the environment's "
                                   "snapshot", argv=self.argv(s.rollback_point.snapshot_restore_command),
                                   timeout=s.migration.timeout_seconds)]

    @classmethod
    def availability(cls, request: Request, probes: Probes) -> tuple[rp.DataDir | None, str]:
        if request.snapshot_command and request.snapshot_restore_command:
            return None, ""
        return None, "snapshot_command and snapshot_restore_command must both be set"


METHODS: dict[str, type[RollbackMethod]] = {m.name: m for m in (FileCopy, Pitr, Snapshot)}


def by_name(name: str) -> type[RollbackMethod]:
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownRollbackMethod(name) from None


def for_run(f: Facts, run_id: str) -> RollbackMethod:
    """The method of a plan's facts, bound to them."""
    return by_name(f.rollback.method)(f, run_id)


# --- the choice (pre-flight) ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    forecast: rp.Forecast
    data_dir: rp.DataDir | None  # the cluster's data directory when the method needs it


def choose(request: Request, database_bytes: int, probes: Probes) -> Choice:
    """Which rollback point this upgrade takes and what it will cost. An explicit method that cannot work here is
    refused (`RollbackPointUnavailable`); `auto` takes the cheapest that works (`forecast`), measuring FILE_COPY's
    copy rate on the server when the environment's probe is on."""
    snapshot = bool(request.snapshot_command)
    data, blocker = None, ""
    if request.method != AUTO:
        data, blocker = by_name(request.method).availability(request, probes)
        if blocker:
            raise RollbackPointUnavailable(request.method, blocker)
    elif not snapshot:
        data, blocker = Pitr.availability(request, probes)
    measured = request.probe and request.method == AUTO and not snapshot
    rate, fixed = probes.copy_rate() if measured else (rp.DEFAULT_COPY_MB_S, 0.3)
    chosen = forecast(request.method, database_bytes, copy_mb_s=rate, copy_fixed_seconds=fixed, measured=measured,
                      pitr_unavailable=blocker, file_copy_max_seconds=request.file_copy_max_seconds,
                      snapshot_configured=snapshot)
    return Choice(chosen, data if by_name(chosen.method).needs_data_dir else None)


def forecast(  # noqa: PLR0913 (the cost model's inputs, each named at the call; they share no object of their own)
    requested: str, database_bytes: int, *, copy_mb_s: float, copy_fixed_seconds: float, measured: bool,
    pitr_unavailable: str, file_copy_max_seconds: float, snapshot_configured: bool,
) -> rp.Forecast:
    """Picks the method. `auto` takes the snapshot command when the environment has one; else FILE_COPY while its
    forecast stays within `file_copy_max_seconds` (it is the cheapest to restore and needs nothing of the server),
    PITR beyond that when the server and host allow it, else FILE_COPY with the reason. An explicit method is kept
    (`choose` refuses it first if it cannot work)."""
    fc = copy_fixed_seconds + database_bytes / (copy_mb_s * 1e6)
    base = database_bytes / (copy_mb_s * 1e6)
    limit = f"file_copy_max_seconds {file_copy_max_seconds:g}"
    if requested != AUTO:
        method, why = requested, by_name(requested).chosen_because
    elif snapshot_configured:
        method, why = Snapshot.name, Snapshot.chosen_because
    elif fc <= file_copy_max_seconds:
        method, why = FileCopy.name, f"its forecast {fc:.2f} s is within {limit}"
    elif not pitr_unavailable:
        method, why = Pitr.name, f"FILE_COPY would add {fc:.2f} s, over {limit}"
    else:
        method, why = FileCopy.name, f"PITR is unavailable, so FILE_COPY's {fc:.2f} s is taken"
    return rp.Forecast(method, why, database_bytes, copy_mb_s, measured, fc, rp.RESTORE_POINT_SECONDS, base,
                       pitr_unavailable)
