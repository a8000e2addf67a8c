"""The one place stackshift runs commands: argv lists, never a shell, always with a timeout.

Children are tied to the runner's life (Linux `PR_SET_PDEATHSIG`): when the runner dies, even by SIGKILL, its
running `docker compose …` gets SIGTERM instead of going on alone behind the back of the recovery.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Iterable
from contextlib import ExitStack

from core.io.commands import DEFAULT_TIMEOUT, Command
from core.errors import CommandFailed, CommandTimedOut

log = logging.getLogger("stackshift")
_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None
try:  # loaded once here: a child between fork and exec must not load libraries (it may deadlock)
    _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:
    _prctl = None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-empty secret value replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _die_with_parent() -> None:  # runs in the child between fork and exec: one system call, nothing else
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run(cmd: Command | list[str], *, check: bool = True, secrets: Iterable[str] = ()) -> subprocess.CompletedProcess:
    """Runs one command and returns its completed process (stdout and stderr as text).

    Environment overrides (which may hold secrets) are passed to the child only; the log line shows their names.
    Stderr is scrubbed of those values and of `secrets` (say, the stack's .env secrets an app may print) before it
    reaches an exception. A command past its timeout is killed and
    raises `CommandTimedOut`, which names the command and the timeout.
    """
    if isinstance(cmd, list):
        cmd = Command(cmd)
    env = os.environ | cmd.env
    timeout = cmd.timeout or DEFAULT_TIMEOUT
    log.info("run: %s", cmd.describe())
    with ExitStack() as files:
        stdout = files.enter_context(open(cmd.stdout_path, "wb")) if cmd.stdout_path else subprocess.PIPE
        try:
            done = subprocess.run(cmd.argv, check=False, env=env, input=cmd.stdin, stdout=stdout,
                                  stderr=subprocess.PIPE, timeout=timeout, preexec_fn=_die_with_parent)
        except subprocess.TimeoutExpired as exc:
            err = scrub((exc.stderr or b"").decode(errors="replace"), [*cmd.env.values(), *secrets])
            raise CommandTimedOut(cmd.argv, timeout, err) from None
    out = "" if cmd.stdout_path else done.stdout.decode(errors="replace")
    err = scrub(done.stderr.decode(errors="replace"), [*cmd.env.values(), *secrets])
    result = subprocess.CompletedProcess(cmd.argv, done.returncode, out, err)
    if check and done.returncode not in cmd.ok_codes:
        raise CommandFailed(cmd.argv, done.returncode, err)
    return result
