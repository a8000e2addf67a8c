"""The rollback point's cost model and names, and the file work of a point-in-time restore.

The methods themselves (what each adds to the plan, and the choice between them) are strategies in
`core.cutover.rollback_methods`; this module holds what they share below the plan:

- `Forecast`: what pre-flight says about the rollback point (the method chosen, why, and what each would cost);
- the names a run's point uses (restore point, replication slot, base-backup and failed-state folders);
- the data directory of the cluster (`DataDir`, `data_dir`) and the swap a PITR restore does on it
  (`swap_in_base_backup`: the failed data directory moves aside, the base backup takes its place, two renames on one
  filesystem, and the WAL is replayed up to the restore point, so every write made after the online backup is
  there).

Nothing here talks to a server; the functions that touch the data directory take paths and are idempotent.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

RESTORE_POINT_SECONDS = 0.05  # pg_create_restore_point plus its WAL flush, measured well under this
DEFAULT_COPY_MB_S = 200.0  # used only when the probe is off
RECOVERY_KEYS = ("restore_command", "recovery_target_name", "recovery_target_action")
SIGNAL = "recovery.signal"


def slot_name(run_id: str) -> str:
    """Physical replication slot of a run (lower-case letters, digits and underscores only)."""
    return "stackshift_" + "".join(ch if ch.isalnum() else "_" for ch in run_id.lower())


def restore_point_name(run_id: str) -> str:
    return f"stackshift_{run_id}"


def base_dir_name(run_id: str) -> str:
    return f"ss-base-{run_id}"


def failed_dir_name(run_id: str) -> str:
    return f"ss-failed-{run_id}"


@dataclass(frozen=True)
class DataDir:
    """Where the cluster's data directory is: on the engine's host (`host`) and inside the database container
    (`container`). PITR needs it to be a sub-directory of its mount (Dify's `./volumes/db/data` with
    `PGDATA=…/pgdata`), so the base backup lands next to it on the same filesystem and the restore only renames."""

    service: str
    host: Path
    container: PurePosixPath

    def host_sibling(self, name: str) -> Path:
        return self.host.parent / name

    def container_sibling(self, name: str) -> str:
        return str(self.container.parent / name)


def data_dir(service_config: dict, service: str, volume_mountpoint=None) -> tuple[DataDir | None, str]:
    """The data directory of `service` from its resolved compose config (`config --format json`): PGDATA (default
    /var/lib/postgresql/data) under a bind mount or a volume (`volume_mountpoint(name)` gives a named volume's
    host path on a local engine). Returns (None, why) when PITR cannot use it."""
    env = service_config.get("environment") or {}
    pgdata = PurePosixPath(env.get("PGDATA") or "/var/lib/postgresql/data")
    for vol in service_config.get("volumes") or []:
        target = PurePosixPath(vol.get("target", "/nonexistent"))
        if pgdata != target and target not in pgdata.parents:
            continue
        if pgdata == target:
            return None, (f"PGDATA ({pgdata}) is the mount point itself; put it in a sub-directory of the mount "
                          f"(as Dify does with PGDATA=/var/lib/postgresql/data/pgdata)")
        if vol.get("type") == "bind":
            root = Path(vol["source"])
        elif vol.get("type") == "volume" and volume_mountpoint:
            found = volume_mountpoint(vol.get("source", ""))
            if not found:
                return None, f"the volume {vol.get('source')!r} has no mount point this host can reach"
            root = Path(found)
        else:
            return None, f"the data directory's mount ({vol.get('type')}) is not a bind mount or a local volume"
        host = root / pgdata.relative_to(target)
        return DataDir(service, host, pgdata), ""
    return None, f"no volume holds PGDATA ({pgdata}) of {service}: the data would not survive the container"


@dataclass(frozen=True)
class Forecast:
    """What pre-flight says about the rollback point: the method, why, and what each would cost."""

    method: str
    reason: str
    database_bytes: int
    copy_mb_s: float
    copy_measured: bool
    file_copy_seconds: float
    pitr_seconds: float
    base_backup_seconds: float  # online, before the downtime
    pitr_unavailable: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        rate = f"{self.copy_mb_s:.0f} MB/s {'measured' if self.copy_measured else 'assumed'}"
        out = (f"rollback point: {self.method} ({self.reason}); databases {self.database_bytes / 1e6:.0f} MB, "
               f"copy rate {rate}: FILE_COPY would add {self.file_copy_seconds:.2f} s of downtime")
        if self.pitr_unavailable:
            return out + f"; PITR unavailable: {self.pitr_unavailable}"
        return out + (f", PITR {self.pitr_seconds:.2f} s (its base backup, about {self.base_backup_seconds:.1f} s, "
                      f"runs online before the downtime)")


# --- the data directory, for a point-in-time restore (run with the database stopped) ---------------------------
def recovery_settings(run_id: str, failed_wal_dir_in_container: str) -> dict[str, str]:
    """Recovery settings for the restored cluster: fetch WAL from the failed cluster's pg_wal (kept by the slot),
    stop at the run's restore point, and promote. PostgreSQL runs `restore_command` itself."""
    return {
        "restore_command": f"cp {failed_wal_dir_in_container}/%f %p",
        "recovery_target_name": restore_point_name(run_id),
        "recovery_target_action": "promote",
    }


def _conf_line(key: str, value: str) -> str:
    return f"{key} = '" + value.replace("'", "''") + "'\n"


@dataclass(frozen=True)
class Observed:
    """What the data directories show of a PITR restore (read with the database stopped, or replaying)."""

    base: bool  # the run's base backup is beside the data directory: not swapped in yet
    failed: bool  # the failed state is beside it: moved aside
    live: bool  # the data directory exists
    cluster: bool  # it holds a cluster (`PG_VERSION`)
    signal: bool  # `recovery.signal` is in it: set to replay (or replaying)
    reached: bool  # a timeline history file in its `pg_wal` says it stopped at the run's restore point: promoted


SWAP, COMPLETE_SWAP, CONFIGURE, PROMOTED = "swap", "complete-swap", "configure", "promoted"


def restore_action(o: Observed) -> str:
    """What is left of the restore, from what the directories show (never from what a journal says was started).
    A cluster promoted at the restore point is never set to replay again: its new timeline no longer has the restore
    point, and PostgreSQL would refuse to start ("recovery ended before configured recovery target was reached").
    Raises FileNotFoundError when the state is none a restore leaves."""
    if o.cluster and o.reached:
        return PROMOTED
    if o.base and not o.failed and o.live:
        return SWAP
    if o.base and o.failed and not o.live:
        return COMPLETE_SWAP
    if not o.base and o.failed and o.cluster:
        return CONFIGURE
    raise FileNotFoundError("the data directories are in no state a restore leaves (base backup "
                            f"{'there' if o.base else 'gone'}, failed state {'beside' if o.failed else 'absent'}, "
                            f"data directory {'a cluster' if o.cluster else 'there' if o.live else 'absent'})")


def history_reason(line: str) -> str:
    """The reason of a timeline history file's line (`<tli>\\t<lsn>\\t<reason>`), '' for a comment or blank."""
    _tli, _lsn, reason = (line.split("\t", 2) + ["", ""])[:3]
    return "" if line.startswith("#") else reason.strip()


def promoted_at(run_id: str, history_files: list[str]) -> bool:
    """Whether one of a cluster's timeline history files (their text) records a switch at the run's restore point
    (PostgreSQL writes `at restore point "<name>"` when it promotes there)."""
    wanted = f'at restore point "{restore_point_name(run_id)}"'
    return any(history_reason(line) == wanted for text in history_files for line in text.splitlines())


def observe(data: DataDir, run_id: str) -> Observed:
    live = data.host
    wal = live / "pg_wal"
    histories = [p.read_text(errors="replace") for p in sorted(wal.glob("*.history"))] if wal.is_dir() else []
    return Observed(base=data.host_sibling(base_dir_name(run_id)).exists(),
                    failed=data.host_sibling(failed_dir_name(run_id)).exists(), live=live.exists(),
                    cluster=(live / "PG_VERSION").exists(), signal=(live / SIGNAL).exists(),
                    reached=promoted_at(run_id, histories))


def swap_in_base_backup(data: DataDir, run_id: str) -> str:
    """Moves the failed data directory aside and the base backup into its place (two renames, one filesystem), then
    writes the recovery settings and `recovery.signal`, owned like the data directory. Idempotent by what it sees
    (`restore_action`): each state a crash can leave, before, between or after the renames, replaying or promoted."""
    live, base, failed = data.host, data.host_sibling(base_dir_name(run_id)), data.host_sibling(failed_dir_name(run_id))
    seen = observe(data, run_id)
    try:
        action = restore_action(seen)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}: {live}, the base backup {base}, the failed state {failed}") from None
    if action == PROMOTED:
        if seen.signal:  # written into the promoted cluster by an earlier stackshift: it would not start
            (live / SIGNAL).unlink()
            _write_recovery_settings(live, {})
            return f"{live} had already replayed to the restore point and been promoted; the stray recovery.signal " \
                   f"is removed"
        return f"{live} had already replayed to the restore point and been promoted: nothing to do"
    if action == SWAP:
        os.rename(live, failed)
    if action in (SWAP, COMPLETE_SWAP):
        os.rename(base, live)
    settings = recovery_settings(run_id, str(PurePosixPath(data.container_sibling(failed_dir_name(run_id))) / "pg_wal"))
    _write_recovery_settings(live, settings)
    (live / SIGNAL).write_text("")
    _own_like(failed, live / SIGNAL)
    return f"{live} is the base backup of run {run_id}; the failed state is in {failed}"


def _write_recovery_settings(live: Path, settings: dict[str, str]) -> None:
    """`postgresql.auto.conf` with its recovery settings replaced by `settings` (none: removed)."""
    auto = live / "postgresql.auto.conf"
    kept = [ln for ln in (auto.read_text().splitlines(keepends=True) if auto.exists() else [])
            if ln.split("=", 1)[0].strip() not in RECOVERY_KEYS]
    auto.write_text("".join(kept) + "".join(_conf_line(k, v) for k, v in settings.items()))
    _own_like(live, auto)


def _own_like(model: Path, path: Path) -> None:
    st = os.stat(model)
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, 0o600)


def remove_folders(paths: list[Path]) -> list[str]:
    gone = []
    for p in paths:
        if p.exists():
            shutil.rmtree(p)
            gone.append(str(p))
    return gone
