"""The roots every stackshift error derives from, and the command failures the executor raises."""
from __future__ import annotations

import re


class UpgradeError(Exception):
    """Base of every error stackshift reports to an operator."""

class PreflightError(UpgradeError):
    """Raised before anything was changed."""

class CommandFailed(UpgradeError):
    """A command exited non-zero. The message carries the argv (never a secret) and the end of stderr."""

    def __init__(self, argv: list[str], returncode: int, stderr: str):
        self.argv, self.returncode, self.stderr = argv, returncode, stderr
        tail = stderr.strip().splitlines()[-6:]
        super().__init__(f"`{' '.join(argv)}` exited {returncode}" + (": " + " | ".join(tail) if tail else ""))

class CommandTimedOut(CommandFailed):
    """A command ran past its timeout and was killed."""

    def __init__(self, argv: list[str], timeout: float, stderr: str = ""):
        self.timeout = timeout
        UpgradeError.__init__(self, f"`{' '.join(argv)}` did not finish within its timeout of {timeout:g} s and was "
                                    f"killed. Find out why it hangs (is the Docker engine or the database "
                                    f"answering?), or raise the block's timeout for it.")
        self.argv, self.returncode, self.stderr = argv, -9, stderr or f"timed out after {timeout:g} s"

class StepFailed(UpgradeError):
    """A step of the plan failed. Each kind of step raises its own subclass, whose `advice` says what to do."""

    advice = "Read the step's detail in the run's timeline artifact."

    def __init__(self, step_id: str, detail: str):
        self.step_id, self.detail = step_id, detail
        super().__init__(f"{step_id}: {detail}. {self.advice}")

def error_line(stderr: str) -> str:
    """The line of a command's stderr a person needs: the last exception line (`pkg.SomeError: …`), else the last
    line mentioning an error or an unhealthy container, else the last line."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Violation)\b.*:", ln):
            return ln
    for ln in reversed(lines):
        if re.search(r"\berror\b|unhealthy", ln, re.I) and not ln.startswith(("File ", "(Background")):
            return ln
    return lines[-1] if lines else "no output"
