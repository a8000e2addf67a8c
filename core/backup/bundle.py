"""The per-run backup folder: saved config, state record, sha256 manifest, retention."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MANIFEST = "manifest.json"
LIVE = ("journal.json",)  # written on through the run: not part of the checked backup


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_config(compose_dir: Path, names: list[str], into: Path) -> list[str]:
    """Copies the named files of the compose directory into `into` (0600); returns the names copied."""
    into.mkdir(mode=0o700, exist_ok=True)
    copied = []
    for name in names:
        src = compose_dir / name
        if src.exists():
            dest = into / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            os.chmod(dest, 0o600)
            copied.append(name)
    return copied


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.chmod(path, 0o600)


def write_manifest(run_dir: Path, threads: int | None = None) -> dict:
    """sha256 and size of every file in the run folder; every file and folder made private (0600/0700). The files
    are hashed on every core (hashlib lets go of the GIL): a dump's big table file and the volumes' archive at once."""
    todo = []
    for p in sorted(run_dir.rglob("*")):
        if p.is_dir():
            os.chmod(p, 0o700)
            continue
        if p.name == MANIFEST or p.name in LIVE or p.name.endswith(".tmp"):
            continue
        os.chmod(p, 0o600)
        todo.append((p, p.stat().st_size))
    biggest_first = [p for p, _ in sorted(todo, key=lambda t: -t[1])]  # a free thread takes the next biggest
    with ThreadPoolExecutor(max(1, threads or os.cpu_count() or 1)) as pool:
        digests = dict(zip(biggest_first, pool.map(sha256, biggest_first), strict=True))
    files = {str(p.relative_to(run_dir)): {"sha256": digests[p], "bytes": size} for p, size in todo}
    manifest = {"run_dir": str(run_dir), "files": files}
    write_json(run_dir / MANIFEST, manifest)
    return manifest


def verify_manifest(run_dir: Path) -> list[str]:
    """Names of files whose checksum no longer matches (empty when the backup is intact)."""
    manifest = json.loads((run_dir / MANIFEST).read_text())
    return [name for name, meta in manifest["files"].items()
            if not (run_dir / name).exists() or sha256(run_dir / name) != meta["sha256"]]


def prune(project_dir: Path, keep: int) -> list[Path]:
    """Removes all but the newest `keep` run folders of a project; returns what it removed."""
    runs = sorted((p for p in project_dir.iterdir() if p.is_dir() and (p / MANIFEST).exists()), key=lambda p: p.name)
    doomed = runs[:-keep] if keep > 0 else runs
    for p in doomed:
        shutil.rmtree(p)
    return doomed
