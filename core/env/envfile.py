"""Writing an env file safely: backup first, atomic replace (`core.files`), mode and owner kept, symlinks written
through."""
from __future__ import annotations

import os
import time
from pathlib import Path

from core import files


def backup(path: Path) -> Path:
    """Copies `path` to `env-backup/<name>.<UTC time>.<random>` next to it (0600, never overwriting one)."""
    import secrets

    real = path.resolve()
    folder = real.parent / "env-backup"
    folder.mkdir(mode=0o700, exist_ok=True)
    data = real.read_bytes()
    while True:
        name = f"{real.name}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.{secrets.token_hex(4)}"
        try:
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return folder / name


def _backup_dir(path: Path) -> Path:
    return path.resolve().parent / "env-backup"


def check_writable(path: Path) -> None:
    """Raises EnvFileUnwritable when `path` (through a symlink) or its env-backup/ folder cannot be written.

    A first look, before anything is written; `replace_with_backup` still handles a write failing later.
    """
    from core.errors import EnvFileUnwritable

    real, folder = path.resolve(), _backup_dir(path)
    if not os.access(real.parent, os.W_OK | os.X_OK):
        raise EnvFileUnwritable(str(path), f"its folder {real.parent} is not writable", str(folder))
    if folder.exists() and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise EnvFileUnwritable(str(path), f"{folder} is not a writable folder", str(folder))


def replace_with_backup(path: Path, text: str) -> Path:
    """Backs `path` up to env-backup/, then replaces it by `text` atomically; returns the backup's path.

    Raises EnvFileUnwritable if either step fails; then the file is unchanged, and neither the backup nor an
    env-backup/ folder made for it is left behind.
    """
    from core.errors import EnvFileUnwritable

    check_writable(path)
    folder = _backup_dir(path)
    made_folder = not folder.exists()
    saved = None
    try:
        saved = backup(path)
        files.write_atomic(path, text, keep_mode=True)
    except OSError as exc:
        if saved is not None:
            saved.unlink(missing_ok=True)
        if made_folder and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise EnvFileUnwritable(str(path), exc.strerror or str(exc), str(folder)) from None
    return saved
