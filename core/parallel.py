"""Running a few calls at the same time, the one way stackshift does it: each in a thread that carries the caller's
context (so a step's log lines still reach its Prefect run), all waited for even when a signal interrupts the wait
(no part may go on running into a rollback), every outcome returned."""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any


def all_at_once(calls: list[Callable[[], Any]],
                names: list[str] | None = None) -> list[tuple[Any, BaseException | None]]:
    """(result, None) or (None, exception) per call, in the calls' order, once every call has ended."""
    outcomes: list[tuple[Any, BaseException | None]] = [(None, None)] * len(calls)

    def one(i: int, fn: Callable[[], Any]) -> None:
        try:
            outcomes[i] = (fn(), None)
        except BaseException as exc:
            outcomes[i] = (None, exc)

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(one, i, fn), daemon=True,
                                name=(names[i] if names else f"part-{i}")) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:  # a signal in the caller's thread: wait for every part, then let it through
        for t in threads:
            t.join()
        raise
    return outcomes


def first_failure(outcomes: list[tuple[Any, BaseException | None]]) -> None:
    """Raises the failure of the first call (in the calls' order) that failed."""
    for _, exc in outcomes:
        if exc is not None:
            raise exc
