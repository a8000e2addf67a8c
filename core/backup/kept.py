"""Command output handed from pre-flight to a later step of the same run, in this process's memory.

Pre-flight reads the deployment's resolved compose config (`compose config --format json`); the backup records
that same text. Asking compose again costs a process start and a parse while `pg_dump` needs both cores, so the
backup takes pre-flight's copy instead — once, and only while every file compose read (the compose files and the
`.env`) is byte for byte what it was. Otherwise the backup runs the command itself.

The text holds the resolved environment, secrets included: it never goes into facts, flow parameters, task results
or artifacts, only into this module's memory and then the backup's private file. At most one entry per compose
project lives here (the key is its `compose config` argv): a dry run's is replaced by the next pre-flight's.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from core.backup.bundle import sha256

_kept: dict[tuple[str, ...], tuple[dict[str, str | None], str]] = {}
_lock = threading.Lock()


def _fingerprint(files: Iterable[Path]) -> dict[str, str | None]:
    return {str(p): (sha256(p) if p.is_file() else None) for p in files}


def keep(argv: list[str] | tuple[str, ...], reads: Iterable[Path], output: str) -> None:
    """Keeps the output of `argv`, valid while the files it `reads` stay as they are now."""
    with _lock:
        _kept[tuple(argv)] = (_fingerprint(reads), output)


def take(argv: list[str] | tuple[str, ...]) -> str | None:
    """The kept output of `argv` (and forgets it), or None if none was kept or a file it read has changed since."""
    with _lock:
        entry = _kept.pop(tuple(argv), None)
    if entry is None:
        return None
    reads, output = entry
    return output if _fingerprint(Path(p) for p in reads) == reads else None
