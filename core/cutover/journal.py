"""The run's journal: what a crashed runner leaves for the next one to read.

Before every step that changes the stack, and after it, the journal is written atomically (write, fsync, rename,
fsync of the folder) to `<run folder>/journal.json`. It names the run, the phase and step, the previous commit,
image digests and revision, the rollback-point databases and the target: enough for `recover` to put the stack
back, or to finish the upgrade, with no help from the process that died.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core import files

log = logging.getLogger("stackshift")
JOURNAL = "journal.json"
PLAN = "plan.json"

OPEN = "running"
_WRITING = threading.RLock()  # steps applied together (`core.cutover.steps.Together`) journal from several threads
CLOSED = ("completed", "rolled-back", "recovered-forward", "abandoned", "dry-run")


@dataclass
class StepRecord:
    id: str
    phase: str
    state: str  # started | done | failed
    started: float
    ended: float | None = None
    detail: str = ""
    kind: str = ""  # the step's type name (core.cutover.steps), so readers ask about kinds of step, not ids


@dataclass
class Journal:
    """One run's record. `path` is its file; every mutation is saved before the method returns."""

    path: Path
    run: str
    environment: str
    project: str
    target: dict
    previous: dict
    rollback_points: dict[str, str]
    flow_run_id: str | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    phase: str = "backup"
    status: str = OPEN
    outcome: str = ""
    steps: list[StepRecord] = field(default_factory=list)

    # --- reading -------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> Journal:
        data = json.loads(path.read_text())
        data["steps"] = [StepRecord(**s) for s in data.get("steps", [])]
        return cls(path=path, **{k: v for k, v in data.items() if k != "path"})

    @classmethod
    def open_runs(cls, project_dir: Path) -> list[Journal]:
        """Journals of a project's runs that did not end (oldest first). One that cannot be read stops everything:
        it may be a run that stopped halfway."""
        from core.errors import JournalUnreadable

        if not project_dir.is_dir():
            return []
        found = []
        for p in sorted(project_dir.glob(f"*/{JOURNAL}")):
            try:
                j = cls.load(p)
            except (OSError, ValueError, TypeError) as exc:
                raise JournalUnreadable(str(p), f"{type(exc).__name__}: {exc}") from None
            if j.status not in CLOSED:
                found.append(j)
        return found

    def record(self, step_id: str, phase: str | None = None) -> StepRecord | None:
        """The latest record of a step (of `phase`, if given)."""
        for r in reversed(self.steps):
            if r.id == step_id and (phase is None or r.phase == phase):
                return r
        return None

    def kind_started(self, kind: type, phase: str) -> bool:
        return any(r.kind == kind.__name__ and r.phase == phase for r in self.steps)

    def kind_done(self, kind: type, phase: str) -> bool:
        return any(r.kind == kind.__name__ and r.phase == phase and r.state == "done" for r in self.steps)

    def ever_done(self, step_id: str, phase: str | None = None) -> bool:
        """Whether any record of the step (of `phase`) completed, in this attempt or an earlier one."""
        return any(r.id == step_id and r.state == "done" and (phase is None or r.phase == phase) for r in self.steps)

    @property
    def cutover_started(self) -> bool:
        return any(r.phase == "cutover" for r in self.steps)

    @property
    def last(self) -> StepRecord | None:
        return self.steps[-1] if self.steps else None

    def runner_gone(self) -> bool:
        """Whether the process that wrote this journal has ended, as far as this host can tell: a runner on another
        host, or a process of that id still there, is never taken for gone."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    # --- writing -------------------------------------------------------------------------------------------
    def save(self) -> None:
        data = asdict(self)
        data.pop("path")
        try:
            files.write_json(self.path, data)
        except OSError as exc:
            if self.phase != "rollback":
                raise
            # a full disk must not stop a rollback: the stack matters more than its record
            log.error("Could not write the journal %s (%s); the rollback goes on.", self.path, exc)

    def begin(self, step_id: str, phase: str, kind: str = "") -> None:
        with _WRITING:
            self.phase = phase
            self.steps.append(StepRecord(step_id, phase, "started", time.time(), kind=kind))
            self.save()

    def end(self, step_id: str, ok: bool, detail: str = "") -> None:
        with _WRITING:
            r = self.record(step_id)
            if r is None:
                raise KeyError(f"the journal has no record of step {step_id} (it ends only a step it started)")
            r.state, r.ended, r.detail = ("done" if ok else "failed"), time.time(), detail[:2000]
            self.save()

    def enter(self, phase: str) -> None:
        with _WRITING:
            self.phase = phase
            self.save()

    def close(self, status: str, outcome: str) -> None:
        if status not in CLOSED and status != "rollback-failed":
            raise ValueError(f"not a final journal status: {status!r}")
        with _WRITING:
            self.status, self.outcome = status, outcome
            self.save()

    def summary(self) -> str:
        last = self.last
        at = f"{last.phase} step {last.id!r} ({last.state})" if last else "before its first step"
        return f"run {self.run} to {self.target.get('ref')} stopped during {at}"


def partial_files(run_dir: Path, backup_whole: bool) -> list[Path]:
    """What a run stopped before its cutover leaves that nobody can use: the temporary files of writes cut short
    (`.<name>.<random>.tmp`) and, when its backup did not complete, the backup's files (a backup cut short restores
    nothing). The plan and the journal stay: they are the run's record."""
    if not run_dir.is_dir():
        return []
    out = []
    for p in sorted(run_dir.iterdir()):
        temporary = p.name.startswith(".") and p.name.endswith(".tmp")
        if temporary or (not backup_whole and p.name not in (JOURNAL, PLAN)):
            out.append(p)
    return out


def downtime(journal: Journal) -> dict[str, float]:
    """Measured downtime (writers stopped → target healthy: the whole cutover) and its parts, in seconds."""
    recs = [(r, r.ended) for r in journal.steps
            if r.phase == "cutover" and r.ended is not None and r.kind != "Together"]
    if not recs:
        return {}
    parts = {r.id: round(ended - r.started, 3) for r, ended in recs}
    parts["total"] = round(recs[-1][1] - recs[0][0].started, 3)
    return parts
