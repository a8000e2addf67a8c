"""Durations and lock-holds of a migration, from the catalog's sizes and throughput measured on the same server.

Model (../shared/notes/postgres-ddl-rules.md §4):
- rewrite = (heap + TOAST) / R_rewrite + one index build per existing index;
- index build = heap / R_scan + n·log2(n) / R_sort;
- scan = heap / R_scan; a concurrent index build is two builds; an unbatched backfill is rewrite-like.
Each rate comes as (fast, slow) from the probe's rounds; the range widens them by `SPREAD`, for what a
13 MB probe cannot see of a large table (cache misses). The rates are calibrated (the probe's CPU wait taken out,
`core.migrations.calibration`): the forecast is the duration on this server without competing load, the same on a
busy host as on an idle one; `at_load` gives the durations at the load the probe saw.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from core.migrations.sqlrules import Analysis, Finding, TableInfo, locked_tables

if TYPE_CHECKING:
    from core.migrations.pgcatalog import Rates

SPREAD = (0.8, 1.3)


def _index_build(info: TableInfo, scan_bps: float, sort_ps: float) -> float:
    n = max(info.rows, 2.0)
    return info.heap_bytes / scan_bps + n * math.log2(n) / sort_ps


def work_seconds(kind: str, info: TableInfo, rates: Rates, which: int) -> float:
    """Seconds of one kind of work on a table; `which` 0 = fast rates, 1 = slow rates."""
    rw, scan, sort = rates.rewrite_bps[which], rates.scan_bps[which], rates.sort_nlogn_ps[which]
    if kind in ("rewrite", "dml"):
        return (info.heap_bytes + info.toast_bytes) / rw + info.index_count * _index_build(info, scan, sort)
    if kind == "scan":
        return info.heap_bytes / scan
    if kind == "index":
        return _index_build(info, scan, sort)
    if kind == "index2":
        return 2 * _index_build(info, scan, sort)
    if kind == "reindex":
        return max(info.index_count, 1) * _index_build(info, scan, sort)
    raise ValueError(kind)


def apply(analysis: Analysis, catalog, rates: Rates | None,
          catalog_only: dict[int, dict] | None = None) -> tuple[dict[str, float | None], list[str]]:
    """Sets each finding's `forecast_seconds` and returns (lock_hold per table in seconds, warnings).

    Without rates (no DSN, or no probe), forecasts stay None and lock_hold lists the tables with None.
    `catalog_only`: finding index → {"batches", "pause_seconds"} of the statements prepared online (`prepared`)."""
    warnings: list[str] = []
    missing: set[str] = set()
    for f in analysis.findings:
        if rates is None or f.statement == "unparsable":
            continue
        low = high = 0.0
        for kind, table in f.work:
            info = catalog.table(table)
            if info is None:
                missing.add(table)
                low = high = math.nan
                continue
            low += work_seconds(kind, info, rates, 0) * SPREAD[0]
            high += work_seconds(kind, info, rates, 1) * SPREAD[1]
        f.forecast_seconds = None if math.isnan(low) else {"low": round(low, 3), "high": round(high, 3)}
    prepared(analysis, catalog_only or {})
    for table in sorted(missing):
        warnings.append(f"table {table} is not on the server and not created earlier in this SQL: no forecast for "
                        f"its statements (wrong database or search_path?)")
    return lock_hold(analysis, rates is not None), warnings


def prepared(analysis: Analysis, catalog_only: dict[int, dict]) -> None:
    """The statements prepared online while the old version serves: their work (a full write of the table, in
    batches, with a pause between them) moves out of the downtime into `prepared_online`; in the cutover the app's
    own statement only changes the catalog (forecast 0 s, so no lock-hold and no gate on it)."""
    for f in analysis.findings:
        online = catalog_only.get(f.index)
        if online is None:
            continue
        fc, pauses = f.forecast_seconds, online["batches"] * online["pause_seconds"]
        f.prepared_online = {"batches": online["batches"], "forecast_seconds": None if fc is None else {
            "low": round(fc["low"] + pauses, 3), "high": round(fc["high"] + pauses, 3)}}
        f.forecast_seconds = None if fc is None else {"low": 0.0, "high": 0.0}


def lock_hold(analysis: Analysis, forecast: bool) -> dict[str, float | None]:
    """Per table, the longest time writes to it stay blocked: locks last until the transaction ends, so a lock
    taken early in a BEGIN…COMMIT block is held through every later statement of the block (the high bound)."""
    groups: list[list[Finding]] = []
    current: list[Finding] | None = None
    for f in analysis.findings:
        if f.transaction is not None:
            if current is None or current[0].transaction != f.transaction:
                current = []
                groups.append(current)
            current.append(f)
        else:
            current = None
            groups.append([f])
    hold: dict[str, float | None] = {}
    for group in groups:
        for i, f in enumerate(group):
            for table in locked_tables(f, analysis.created_tables):
                if any(table in locked_tables(g, analysis.created_tables) for g in group[:i]):
                    continue
                if not forecast:
                    hold[table] = None
                    continue
                rest = [g.forecast_seconds["high"] if g.forecast_seconds else 0.0 for g in group[i:]]
                hold[table] = round(max(hold.get(table) or 0.0, sum(rest)), 3)
    return dict(sorted(hold.items(), key=lambda kv: -(kv[1] or 0)))


def at_load(hold: dict[str, float | None], rates: Rates | None) -> dict[str, float | None]:
    """The lock holds at the load the probe saw: calibrated × the probe's load factor ({} without rates)."""
    if rates is None:
        return {}
    return {t: None if s is None else round(s * rates.load_factor, 3) for t, s in hold.items()}
