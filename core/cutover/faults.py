"""Fault injection, for the tests that make a real run fail or stall at a chosen step (the fault matrix, the lock
tests, the downtime bench). Never part of a production run: `install_from_env` adds `inject` to the step hooks
(`core.cutover.steps.HOOKS`) only when `STACKSHIFT_INJECT_FAULT` is set, and only the entry points call it: the CLI,
and the upgrade and recover flows (for runs that a served deployment or a worker starts in a process of its own).

`STACKSHIFT_INJECT_FAULT` holds comma-separated `<phase>:<step>:<mode>`, mode one of

- `fail-before`, `fail-after`: the step raises before (or right after) its change;
- `hold-after`: right after the step's change, before the journal records it done, the runner writes the spec into
  the file `STACKSHIFT_INJECT_FAULT_MARKER` and waits until that file is deleted (at most 10 minutes): where a test
  kills it, or writes through the app.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.cutover import steps as st

FAULT_VAR = "STACKSHIFT_INJECT_FAULT"
MARKER_VAR = FAULT_VAR + "_MARKER"
HOLD_SECONDS = 600


@dataclass(frozen=True)
class Fault:
    """One `<phase>:<step>:<mode>` of the variable."""

    spec: str
    phase: str
    step: str
    mode: str

    @classmethod
    def parse(cls, spec: str) -> Fault:
        phase, step, mode = (spec.split(":") + ["", "", ""])[:3]
        return cls(spec, phase, step, mode)

    def hits(self, step: st.Step, when: str) -> bool:
        return (self.phase, self.step) == (step.phase, step.id) and self.mode.endswith(when)


def faults(value: str) -> list[Fault]:
    return [Fault.parse(spec) for spec in value.split(",") if spec]


def inject(step: st.Step, when: str) -> None:
    """The step hook: raises or holds where the variable says (read at each step, as the tests set it per run)."""
    for fault in faults(os.environ.get(FAULT_VAR, "")):
        if not fault.hits(step, when):
            continue
        if fault.mode.startswith("fail"):
            raise RuntimeError(f"injected fault {fault.spec}")
        hold(Path(os.environ[MARKER_VAR]), fault.spec)


def hold(marker: Path, spec: str) -> None:
    marker.write_text(spec)
    deadline = time.monotonic() + HOLD_SECONDS
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def install_from_env() -> bool:
    """Installs `inject` around every step of this process when `STACKSHIFT_INJECT_FAULT` is set (tests only);
    returns whether it did. Idempotent."""
    if not os.environ.get(FAULT_VAR):
        return False
    from core.cutover.steps import add_hook  # here: the CLI's light commands import this module and nothing else

    add_hook(inject)
    return True
