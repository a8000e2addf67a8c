"""Runs a `Preparation` on a live server, over one autocommit connection of its own: each step in its own short
transaction (or, for CONCURRENTLY and VALIDATE, outside any), every lock wait bounded by `lock_timeout`, the
backfill in batches with a pause between them, the swap retried when its lock times out. Every step is idempotent
or guarded, so a preparation interrupted anywhere can be run again from its start, or undone."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors, sql

from .preparation import Backfill, OnlineSettings, Preparation, Step

log = logging.getLogger("stackshift")
Progress = Callable[[int, float], None]  # rows copied so far, rows estimated


def run_step(conn: psycopg.Connection[Any], step: Step, settings: OnlineSettings,
             lock_timeout_ms: int | None = None) -> None:
    ms = settings.lock_timeout_ms if lock_timeout_ms is None else lock_timeout_ms
    timeout = sql.SQL("SET {} lock_timeout = {}").format(
        sql.SQL("SESSION" if step.autocommit else "LOCAL"), sql.Literal(f"{ms}ms"))
    if step.autocommit:
        conn.execute(timeout)
        for statement in step.statements:
            conn.execute(statement)
        return
    with conn.transaction():
        conn.execute(timeout)
        for statement in step.statements:
            conn.execute(statement)


def backfill(conn: psycopg.Connection[Any], fill: Backfill, settings: OnlineSettings,
             progress: Progress | None = None, after: Any = None) -> int:
    """Copies every row, batch by batch from `after` (None: from the start) up to the greatest key now (the sync
    trigger, created before, sets the rows inserted after); the rows copied."""
    conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{settings.lock_timeout_ms}ms")))
    bound = conn.execute(fill.bound).fetchone()
    upper = bound[0] if bound is not None else None
    copied = 0
    while upper is not None:
        statement, params = (fill.first, {"rows": settings.batch_rows, "upper": upper}) if after is None else \
            (fill.next, {"rows": settings.batch_rows, "after": after, "upper": upper})
        row = conn.execute(statement, params).fetchone()
        last, n = row if row is not None else (None, 0)
        if last is None:
            return copied
        after, copied = last, copied + n
        if progress is not None:
            progress(copied, fill.rows_estimate)
        time.sleep(settings.pause_seconds)
    return copied


def swap(conn: psycopg.Connection[Any], step: Step, settings: OnlineSettings) -> int:
    """The swap transaction, retried while its lock_timeout expires; the attempts it took."""
    for attempt in range(1, settings.swap_retries + 1):
        try:
            run_step(conn, step, settings, settings.swap_lock_timeout_ms)
            return attempt
        except errors.LockNotAvailable:
            if attempt == settings.swap_retries:
                raise
            log.info("swap of %s: lock not available (attempt %d), retrying", step.title, attempt)
            time.sleep(min(0.2 * attempt, 2.0))
    raise AssertionError("unreachable")


def prepare(conn: psycopg.Connection[Any], prep: Preparation, settings: OnlineSettings,
            progress: Progress | None = None) -> None:
    """The whole preparation, up to the app's migration."""
    for step in prep.setup:
        run_step(conn, step, settings)
    if prep.backfill is not None:
        backfill(conn, prep.backfill, settings, progress)
    for step in prep.build:
        run_step(conn, step, settings)
    if prep.swap is not None:
        swap(conn, prep.swap, settings)
    for step in prep.after_swap:
        run_step(conn, step, settings)


def undo(conn: psycopg.Connection[Any], prep: Preparation, settings: OnlineSettings) -> None:
    """Before the swap: every helper object dropped (nothing of the table's own changes)."""
    for step in prep.undo:
        run_step(conn, step, settings)


def after_migration(conn: psycopg.Connection[Any], prep: Preparation, settings: OnlineSettings) -> None:
    for step in prep.after_migration:
        run_step(conn, step, settings)
