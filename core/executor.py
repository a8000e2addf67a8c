"""The one place stackshift runs commands: argv lists, never a shell."""
from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable

from core.commands import Command
from core.errors import CommandFailed

log = logging.getLogger("stackshift")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-empty secret value replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run(cmd: Command | list[str], *, check: bool = True, base_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs one command and returns its completed process (stdout and stderr as text).

    Environment overrides (which may hold secrets) are passed to the child only; the log line shows
    their names. Output is scrubbed of those values before it reaches an exception.
    """
    if isinstance(cmd, list):
        cmd = Command(cmd)
    env = os.environ | (base_env or {}) | cmd.env
    log.info("run: %s", cmd.describe())
    stdout = open(cmd.stdout_path, "wb") if cmd.stdout_path else subprocess.PIPE
    try:
        done = subprocess.run(cmd.argv, env=env, input=cmd.stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=cmd.timeout)
    finally:
        if cmd.stdout_path:
            stdout.close()
    out = "" if cmd.stdout_path else done.stdout.decode(errors="replace")
    err = scrub(done.stderr.decode(errors="replace"), cmd.env.values())
    result = subprocess.CompletedProcess(cmd.argv, done.returncode, out, err)
    if check and done.returncode not in cmd.ok_codes:
        raise CommandFailed(cmd.argv, done.returncode, err)
    return result
