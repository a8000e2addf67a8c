"""core.files: whole-file writes, atomic and private."""
from __future__ import annotations

import json
import os
import stat

import pytest

from core import files


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_new_file_is_private_and_holds_exactly_the_text_or_bytes(tmp_path):
    text, raw = tmp_path / "a.env", tmp_path / "b.bin"
    files.write_atomic(text, "K=v\r\nÉ=1\n")
    files.write_atomic(raw, b"\x00\xff")
    assert text.read_bytes() == "K=v\r\nÉ=1\n".encode() and raw.read_bytes() == b"\x00\xff"
    assert mode(text) == mode(raw) == 0o600
    assert leftovers(tmp_path) == []


def test_an_existing_file_gets_the_mode_asked_for_unless_it_keeps_its_own(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")
    os.chmod(path, 0o644)
    files.write_atomic(path, "new")
    assert mode(path) == 0o600, "replaced, the file is private again"
    os.chmod(path, 0o640)
    files.write_atomic(path, "kept", keep_mode=True)
    assert mode(path) == 0o640 and path.read_text() == "kept"
    files.write_atomic(tmp_path / "shared", "x", mode=0o644)
    assert mode(tmp_path / "shared") == 0o644


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    target, link = tmp_path / "real.env", tmp_path / ".env"
    target.write_text("old")
    link.symlink_to(target.name)
    files.write_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_json_is_indented_sorted_and_ends_with_a_newline(tmp_path):
    path = tmp_path / "journal.json"
    files.write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2) + "\n" and mode(path) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "journal.json"
    files.write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        files.write_atomic(path, 12345)  # fails while writing, after the temporary file is made
    assert json.loads(path.read_text()) == {"v": 1} and leftovers(tmp_path) == []
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(OSError):
        files.write_atomic(folder, "x")  # fails at the rename
    assert folder.is_dir() and leftovers(tmp_path) == []
