"""The benchmarks' downtime watchers: a thread polls a server every 50 ms and records when the old version last
answered and when the new one first did. Every failed or broken answer (refused, reset, a response cut short while
the server restarts, garbage) counts as "down", and the watcher keeps watching: it never dies on a hiccup."""
from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# What a server restarting under a poller can throw: OSError (refused, reset, RemoteDisconnected, timeouts),
# HTTPException (IncompleteRead, BadStatusLine), ValueError (a cut body that is not JSON or not UTF-8).
BROKEN_ANSWERS = (OSError, http.client.HTTPException, ValueError)


def answer(call: Callable[[], T], down: T) -> T:
    """`call()`, or `down` when the answer failed or broke."""
    try:
        return call()
    except BROKEN_ANSWERS:
        return down


class Watch(threading.Thread):
    """Polls `old_or_new()` ("old", "new" or None for down) until the new version answers. `downtime` is the gap
    between the last old answer and the first new one."""

    def __init__(self, old_or_new: Callable[[], str | None], interval: float = 0.05):
        super().__init__(daemon=True)
        self.old_or_new, self.interval = old_or_new, interval
        self.last_old: float | None = None
        self.first_new: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            seen = answer(self.old_or_new, None)
            now = time.monotonic()
            if seen == "new":
                self.first_new = now
                return
            if seen == "old":
                self.last_old = now
            time.sleep(self.interval)

    @property
    def downtime(self) -> float:
        if self.last_old is None or self.first_new is None:
            raise RuntimeError(f"the watcher saw no {'old' if self.last_old is None else 'new'} version answer: "
                               f"the round measured nothing (is the server's port right?)")
        return self.first_new - self.last_old


def mlflow_state(dep, old: str, new: str) -> Callable[[], str | None]:
    """An MLflow server's state from /health and /version (`dep.get(path)` → (status, body))."""
    def state() -> str | None:
        health, version = dep.get("/health"), dep.get("/version")
        if health == (200, "OK") and version[0] == 200:
            return {old: "old", new: "new"}.get(version[1])
        return None
    return state


def api_state(dep, target: str) -> Callable[[], str | None]:
    """The lab api's state from /health (`dep.api_health()` → its JSON or None)."""
    def state() -> str | None:
        h = dep.api_health()
        if h and h.get("status") == "ok":
            return "new" if h["version"] == target else "old"
        return None
    return state
