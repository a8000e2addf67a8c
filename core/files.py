"""Files written whole: atomically and, unless told otherwise, private (0600).

A reader, or a crash, sees the old file or the new one, never a torn one: the data goes to a temporary file in the
same folder (`.<name>.<random>.tmp`, which backup manifests leave out), is flushed to disk, then renamed over the
file, and the folder is flushed so that the rename itself survives a crash. A symlink is written through: its
target is replaced and the link stays. When anything fails, the temporary file is removed and the file is as it
was.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

PRIVATE = 0o600


def write_atomic(path: Path, data: bytes | str, *, mode: int = PRIVATE, keep_mode: bool = False) -> None:
    """Replaces the file at `path` (through a symlink, if it is one) by `data` (text is written as UTF-8, line ends
    as given).

    Args:
        path: the file; its folder must exist.
        data: the whole new content.
        mode: the new file's permission bits.
        keep_mode: an existing file keeps its mode and owner instead (an operator's .env stays theirs).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    real = Path(path).resolve()
    st = real.stat() if keep_mode and real.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), st.st_mode & 0o7777 if st else mode)
            if st:
                os.fchown(f.fileno(), st.st_uid, st.st_gid)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(real.parent)


def write_json(path: Path, data, *, mode: int = PRIVATE) -> None:
    """`write_atomic` of `data` as indented JSON with sorted keys and a final newline."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=mode)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
