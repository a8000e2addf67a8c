"""One lock per stack, whoever starts the run: a kernel-held file lock (`flock`) on the stack's host.

The kernel releases it the moment the holding process ends, however it ends (SIGKILL included), so a dead holder
never blocks the next run, and nothing about it depends on the Prefect server. The file also names its holder
(run, flow run, host, pid, since), which a refused run reports. A holder that ends empties it; one that dies leaves
its record, which the next holder finds (`StackLock.previous`): the run that died.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from core.errors import StackLocked

LOCK_FILE = ".stackshift.lock"


def lock_path(backup_dir: Path, project: str) -> Path:
    """Where a stack's lock lives: beside its backups, one folder per compose project."""
    return Path(backup_dir) / project / LOCK_FILE


RECOVERY = "recovery"  # the `purpose` a recovery's lock record carries
# A holder writes its record right after it takes the lock, and empties it right before it lets go. Found busy with
# an empty record, the lock is retried this long (every 50 ms), so a refusal names its holder, and a holder that was
# letting go is not taken for one that holds (seen in the CLI race test under load: "holder unknown").
RECORD_WAIT_SECONDS = 2.0


class StackLock:
    """`with StackLock(path, holder):` holds the lock or raises `StackLocked` at once, naming the holder.

    `wait_for_purpose` (with `wait_seconds`): a holder whose record carries that `purpose` is waited for instead (a
    recovery waits out another recovery of the same stack, then finds nothing left to do), up to `wait_seconds`."""

    def __init__(self, path: Path, holder: dict, wait_for_purpose: str | None = None, wait_seconds: float = 0.0):
        self.path, self.holder = Path(path), dict(holder)
        self.wait_for_purpose, self.wait_seconds = wait_for_purpose, wait_seconds
        self._fd: int | None = None
        self.previous: dict = {}  # the record a holder that died left in the file ({} after a clean exit)
        self.waited = 0.0  # seconds spent waiting for a holder of `wait_for_purpose`

    def _acquire(self, fd: int) -> None:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.waited = time.monotonic() - start
                return
            except BlockingIOError:
                holder = read_holder(self.path)
                waiting = time.monotonic() - start
                if not holder and waiting < RECORD_WAIT_SECONDS:
                    time.sleep(0.05)
                    continue
                if (self.wait_for_purpose is None or holder.get("purpose") != self.wait_for_purpose
                        or waiting >= self.wait_seconds):
                    raise StackLocked(str(self.path), holder) from None
                time.sleep(0.5)

    def __enter__(self) -> StackLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._acquire(fd)
        except BaseException:
            os.close(fd)
            raise
        self.previous = read_holder(self.path)
        self._fd = fd
        self.note(host=socket.gethostname(), pid=os.getpid(),
                  since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return self

    def note(self, **fields: object) -> None:
        """Adds `fields` to the holder's record in the file (what the next holder finds if this one dies)."""
        assert self._fd is not None, "only the holder writes the record"
        self.holder |= fields
        record = (json.dumps(self.holder) + "\n").encode()
        os.pwrite(self._fd, record, 0)  # then cut to its length: the file is never empty in between
        os.ftruncate(self._fd, len(record))
        os.fsync(self._fd)

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def read_holder(path: Path) -> dict:
    """What the holder wrote into the lock file ({} if it has not written yet)."""
    for _ in range(5):
        try:
            text = Path(path).read_text()
            return json.loads(text) if text.strip() else {}
        except ValueError:
            time.sleep(0.05)  # the holder is writing it right now
        except OSError:
            return {}
    return {}


def dead_holder_run(previous: dict, recovered_elsewhere: set[str]) -> str | None:
    """The flow run of a holder that died holding the lock, for the next holder to mark (Prefect would show it
    Running forever): None when it had none, or when an open journal names it (the recovery marks that one, saying
    what it did)."""
    run = previous.get("flow_run")
    return run if run and run not in recovered_elsewhere else None
