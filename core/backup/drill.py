"""The restore drill (`./stackshift verify-backup`): proves a backup bundle restores, not only that it exists.

It checks every file against the bundle's sha256 manifest, lists the volumes' archive to its end (zstd checks its
own frames), restores each database's dump into a scratch database on the same server with `pg_restore -j`, and
compares every table's row count with the counts taken in the dump's own snapshot (`<db>.counts.json`). The
scratch databases are dropped whatever happens.
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from core.backup import bundle as bk
from core.io import commands as c
from core.io import db as dbops
from core.io import pgsql
from core.errors import BackupCheckFailed, CommandFailed, UpgradeError
from core.stackio import StackIO

DRILL_TAG = "__ss_drill_"
LISTED_AT_MOST = 10  # files named in a checksum problem; the rest are summed up as "…"


def backups(project_dir: Path) -> list[Path]:
    """The project's complete backup bundles (with a manifest), oldest first."""
    if not project_dir.is_dir():
        return []
    return sorted((p for p in project_dir.iterdir() if p.is_dir() and (p / bk.MANIFEST).exists()), key=lambda p: p.name)


def scratch_name(db: str) -> str:
    return f"{db[:40]}{DRILL_TAG}{secrets.token_hex(4)}"


def restore_drill(io: StackIO, run_dir: Path, jobs: int) -> dict:
    """Runs the drill on one bundle; returns what it found per database. Raises BackupCheckFailed with every
    problem found (the drill goes on past the first one, so the report is whole)."""
    problems: list[str] = []
    report: dict = {"backup": str(run_dir), "databases": {}}
    bad = bk.verify_manifest(run_dir)
    if bad:
        more = " …" if len(bad) > LISTED_AT_MOST else ""
        problems.append(f"checksum mismatch or missing: {', '.join(bad[:LISTED_AT_MOST])}{more}")
    archive = run_dir / "volumes.tar.zst"
    if archive.exists():
        try:
            io.run(c.Command(c.tar_list(archive), timeout=io.cfg.migration.timeout_seconds))
        except CommandFailed as exc:
            problems.append(f"volumes.tar.zst does not read to its end ({exc.stderr.strip()[-200:]})")
    state = json.loads((run_dir / "state.json").read_text())
    for db in state.get("databases", []):
        report["databases"][db] = _restore_one(io, run_dir, db, jobs, problems)
    report["problems"] = problems
    if problems:
        raise BackupCheckFailed(str(run_dir), problems)
    return report


def _restore_one(io: StackIO, run_dir: Path, db: str, jobs: int, problems: list[str]) -> dict:
    dump, counts_file = run_dir / f"{db}.dump", run_dir / f"{db}.counts.json"
    if not dump.exists() or not counts_file.exists():
        problems.append(f"{db}: no {dump.name} with its {counts_file.name} (a backup older than the drill?)")
        return {}
    expected = json.loads(counts_file.read_text())
    scratch = scratch_name(db)
    access = io.db
    t0 = time.monotonic()
    try:
        io.sql([pgsql.create_database(scratch, "template0")])
        io.run(c.Command(c.pg_restore(access.host, access.port, access.user, scratch, dump, jobs=jobs),
                         timeout=io.cfg.migration.timeout_seconds), db_password=True)
        with access.connect(scratch) as conn:
            got = dbops.count_rows(conn)
    except (CommandFailed, UpgradeError) as exc:
        problems.append(f"{db}: the dump does not restore ({str(exc)[-300:]})")
        return {}
    finally:
        io.sql([pgsql.drop_database(scratch, force=True)])
    differ = {t: (expected.get(t), got.get(t)) for t in sorted(set(expected) | set(got))
              if expected.get(t) != got.get(t)}
    for table, (want, have) in differ.items():
        problems.append(f"{db}.{table}: {want} rows in the dump's snapshot, {have} restored")
    return {"tables": len(got), "rows": sum(got.values()), "restore_seconds": round(time.monotonic() - t0, 2),
            "mismatches": len(differ)}


def drop_leftover_scratch(io: StackIO, databases: list[str]) -> list[str]:
    """Scratch databases of a drill of these databases that was killed (the drill runs under the stack's lock)."""
    prefixes = tuple(f"{db[:40]}{DRILL_TAG}" for db in databases)
    names = [n for n in io.databases() if n.startswith(prefixes)]
    for name in names:
        io.sql([pgsql.drop_database(name, force=True)])
    return names
