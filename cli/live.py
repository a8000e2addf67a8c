"""A run's phases as they happen: one line when a phase ends (`  backup ...... 12.4 s`), and meanwhile a live line
(on a terminal, rewritten in place every half second) or, when the output is not a terminal, a plain line every
`every` seconds (less often as the phase goes on), so that a long dump, backfill, migration or health wait is never
silent.

`Phases` is fed by whatever observes the run (`cli.observe`: the step hooks and task hooks of an in-process run, or
the task runs of a deployment's run read from the Prefect API); it knows nothing of Prefect.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TextIO

from cli.render import PhaseRecord, phase_line, secs

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPACING = ((300.0, 60.0), (60.0, 30.0))  # (after this many seconds of a phase, a plain line at most this often)


class Phases:
    """The phases of one run, in order. `begin(name)` ends the phase under way (printing its line) unless it has
    that name; `step(detail)` says what the phase is doing now; `end(state)` ends the last one."""

    def __init__(self, out: TextIO, tty: bool, clock: Callable[[], float] = time.monotonic, every: float = 10.0,
                 show: bool = True):
        self.out, self.tty, self.clock, self.every, self.show = out, tty, clock, every, show
        self.done: list[PhaseRecord] = []
        self.current: str | None = None
        self.detail = ""
        self.started = self.since = self.last_note = clock()
        self._lock = threading.RLock()
        self._drawn = False
        self._frame = 0

    def begin(self, name: str) -> None:
        with self._lock:
            if name == self.current:
                return
            self._close("ok")
            self.current, self.detail = name, ""
            self.since = self.last_note = self.clock()

    def step(self, detail: str) -> None:
        with self._lock:
            self.detail = detail

    def note(self, line: str) -> None:
        """A line of its own between the phase lines (a warning), the live line redrawn after it."""
        with self._lock:
            self._print(line)

    def end(self, state: str = "ok") -> None:
        with self._lock:
            self._close(state)
            self.current = None

    def _close(self, state: str) -> None:
        if self.current is None:
            return
        record = PhaseRecord(self.current, round(self.clock() - self.since, 3), state)
        self.done.append(record)
        self._print(phase_line(record))

    def tick(self) -> None:
        """The live line (terminal) or, every `every` seconds, a plain progress line."""
        with self._lock:
            if self.current is None or not self.show:
                return
            now = self.clock()
            what = f"{self.current}: {self.detail}" if self.detail else self.current
            if self.tty:
                self._frame = (self._frame + 1) % len(SPINNER)
                self.out.write(f"\r\033[K  {SPINNER[self._frame]} {what} … {secs(now - self.since)}")
                self.out.flush()
                self._drawn = True
            elif now - self.last_note >= self._interval(now - self.since):
                self.last_note = now
                self._print(f"  … {what} ({secs(now - self.since)} so far)")

    def _interval(self, elapsed: float) -> float:
        """`every` seconds in a phase's first minute, then every 30 s, and every minute after five: a long
        migration is not a page of lines."""
        for since, interval in SPACING:
            if elapsed >= since:
                return max(self.every, interval)
        return self.every

    def _print(self, line: str) -> None:
        if not self.show:
            return
        if self._drawn:
            self.out.write("\r\033[K")
            self._drawn = False
        self.out.write(line + "\n")
        self.out.flush()

    @property
    def seconds(self) -> float:
        return round(self.clock() - self.started, 3)


@contextmanager
def ticking(phases: Phases, interval: float = 0.5):
    """Calls `phases.tick()` every `interval` seconds from a thread while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            phases.tick()

    thread = threading.Thread(target=loop, name="cli-progress", daemon=True)
    thread.start()
    try:
        yield phases
    finally:
        stop.set()
        thread.join(timeout=2)
