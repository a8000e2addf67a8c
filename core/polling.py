"""One way to wait for something: call a probe until it passes or a deadline passes."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar


class Passes(Protocol):
    @property
    def ok(self) -> bool: ...


R = TypeVar("R", bound=Passes)


def poll(probe: Callable[[], R], deadline_seconds: float, interval: float = 0.5,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> R:
    """Calls `probe` until it passes or the deadline passes; returns the last result."""
    end = clock() + deadline_seconds
    while True:
        result = probe()
        if result.ok or clock() >= end:
            return result
        sleep(interval)
