"""`stackshift check`: pre-flight's own readers on an environment as it runs now, with no target and no change.

Each finding names what was read and what was found: the Docker engine answers; the checkout is clean and the stack
runs; the database takes the role's connection and the rollback point; the migrate image's revision files contain
the database's revision; the backup folder is writable; the HTTP checks pass. A reader that fails says why in its
error's words (what to do), and the readers that need its result are not run.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.cutover import preflight
from core.cutover.inputs import check_backup_dir
from core.errors import UnknownMigrationService, UpgradeError
from core.io import db as dbops
from core.io.compose import image_tag
from core.io.engine import current_images
from core.settings import Settings
from core.stackio import StackIO


@dataclass(frozen=True)
class Finding:
    """One reader's result: what it read, whether it passed, and what it found (or why it failed)."""

    what: str
    ok: bool | None  # None: not checked, because a reader it needs failed
    detail: str


@dataclass
class _Readings:
    cfg: Settings
    io: StackIO
    found: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def read(self, what: str, reader: Callable[[], str | tuple[bool, str]], needs: tuple[str, ...] = ()) -> None:
        """Runs `reader` (a detail, or whether it passed and the detail) unless a reading it needs is missing."""
        missing = [n for n in needs if n not in self.found]
        if missing:
            self.findings.append(Finding(what, None, f"not checked: needs {', '.join(missing)}"))
            return
        try:
            got = reader()
            ok, detail = got if isinstance(got, tuple) else (True, got)
            self.findings.append(Finding(what, ok, detail))
        except UpgradeError as exc:
            self.findings.append(Finding(what, False, str(exc)))


def check(cfg: Settings) -> list[Finding]:
    """Every reader's finding, in order (see the module's docstring); changes nothing."""
    r = _Readings(cfg, StackIO(cfg, cfg.stack.project_name))
    r.read("Docker engine", lambda: _engine(r))
    r.read("stack", lambda: _stack(r), needs=("engine",))
    r.read("database", lambda: _database(r))
    r.read("migrations", lambda: _migrations(r), needs=("engine", "deployed", "revision"))
    r.read("backup folder", lambda: _backup(r))
    r.read("HTTP checks", lambda: _http(r), needs=("engine",))
    return r.findings


def _engine(r: _Readings) -> str:
    r.found["engine"] = r.io.endpoint.client()
    return f"answers at {r.io.endpoint.host}"


def _stack(r: _Readings) -> str:
    deployed = preflight.read_deployed(r.io, r.cfg, "HEAD")
    r.found["deployed"] = deployed
    return (f"{r.cfg.stack.compose_dir} at commit {deployed.current_commit[:12]}, no local changes; running: "
            f"{', '.join(deployed.running)}")


def _database(r: _Readings) -> str:
    db = dbops.DbAccess.of(r.cfg)
    facts, privileges = preflight.read_database(db, r.cfg, "")
    r.found["revision"] = facts.revision
    size = sum(privileges["sizes"].values()) / 1e6
    return (f"{r.cfg.database.user}@{r.cfg.database.host}:{r.cfg.database.port} may take the rollback point; "
            f"{', '.join(facts.names)} ({size:.0f} MB) at revision {', '.join(facts.revision) or 'none'}")


def _migrations(r: _Readings) -> str:
    service, deployed = r.cfg.migration.service, r.found["deployed"]
    if service not in deployed.config.services:
        raise UnknownMigrationService(service, deployed.config.services)
    running = current_images(r.found["engine"], r.cfg.stack.project_name).get(service)
    image = running["image"] if running else deployed.config.image(service)
    r.found["image"] = image
    state, _ = preflight.read_revisions(r.found["engine"], r.cfg, image, r.found["revision"])
    where = "at the head" if not state.pending else f"{len(state.pending)} revision(s) behind its head"
    return (f"{image} holds the revision files at {r.cfg.migration.versions_path}; the database is {where} "
            f"({state.head})")


def _backup(r: _Readings) -> str:
    folder = Path(r.cfg.backup.dir)
    check_backup_dir(folder)
    free = preflight.free_bytes(folder)
    return f"{folder} can be written" + (f" ({free / 1e9:.1f} GB free)" if free is not None else "")


def _http(r: _Readings) -> str | tuple[bool, str]:
    if not r.cfg.health.http_checks:
        return "none in the block (the upgrade still waits for the containers' health)"
    version = image_tag(r.found.get("image") or "")
    results = r.io.http_checks(version)
    return all(c.ok for c in results), "; ".join(f"{c.name}: {c.detail}" for c in results)
