"""The migration pre-flight: rules, sizes and forecast put together into one report, and the gate on it.

Used by `./stackshift analyze-migrations` and by the upgrade flow's `analyze-migrations` task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.migrations import forecast

from core.migrations import sqlrules
if TYPE_CHECKING:  # kept out of the import path: `analyze-migrations` without a DSN needs neither
    from core.migrations.pgcatalog import Rates
    from core.migrations.revgraph import RevisionState


@dataclass
class MigrationReport:
    statements: list[sqlrules.Finding]
    lock_hold: dict[str, float | None]
    warnings: list[str]
    server: dict | None = None            # version, probe rates
    tables: dict[str, dict] = field(default_factory=dict)  # live sizes of the tables the SQL touches
    revisions: RevisionState | None = None
    # where each pending revision's SQL came from: {"rendered": [...], "rehearsed": [...], "not_analysed": [...],
    # "analysed_from": "rendering" | "rehearsal", "render_error": str | None, "rehearsal": {...} | None}
    sources: dict | None = None
    created_tables: set[str] = field(default_factory=set)  # tables the SQL creates (nobody else uses them yet)
    set_aside: list[tuple[int, str]] = field(default_factory=list)  # (line, text) of the output that is not SQL
    incomplete: dict[str, str] = field(default_factory=dict)  # revision → why its SQL is not all that runs
    lock_hold_now: dict[str, float | None] = field(default_factory=dict)  # at the load the probe saw (not gated)

    @property
    def data_loss(self) -> list[sqlrules.Finding]:
        return [f for f in self.statements if f.effect == "data-loss"]

    def to_dict(self) -> dict:
        d = {"statements": [f.to_dict() for f in self.statements], "lock_hold": self.lock_hold,
             "warnings": self.warnings}
        if self.lock_hold_now:
            d["lock_hold_at_current_load"] = self.lock_hold_now
        if self.server is not None:
            d["server"] = self.server
            d["tables"] = self.tables
        if self.revisions is not None:
            d["revisions"] = self.revisions.to_dict()
        if self.sources is not None:
            d["sources"] = self.sources
        if self.set_aside:
            d["set_aside"] = [{"line": n, "text": t} for n, t in self.set_aside]
        if self.incomplete:
            d["incomplete"] = self.incomplete
        return d


def analyze(sql_text: str, catalog=None, rates: Rates | None = None,  # noqa: PLR0913 (the SQL, what it runs on, then options by keyword)
            revisions: RevisionState | None = None, *, per_revision: bool = False,
            catalog_only: dict[int, dict] | None = None) -> MigrationReport:
    """The report on `sql_text`; `incomplete` as the rendering's own signs say it (a caller who knows better, for
    SQL a rehearsal captured, sets it afterwards). `per_revision`: the migration commits after each revision (lock
    holds and MS025 per revision). `catalog_only`: the statements prepared online (finding index → {"batches",
    "pause_seconds"}): catalog-only in the downtime, their work forecast apart (`Finding.prepared_online`)."""
    analysis = sqlrules.analyse(sql_text, catalog, per_revision=per_revision)
    hold, more = forecast.apply(analysis, catalog, rates, catalog_only)
    warnings = list(analysis.warnings) + more
    server, tables = None, {}
    if catalog is not None:
        server = {"version": catalog.server_version, "version_num": catalog.server_version_num,
                  "probe": rates.to_dict() if rates else None}
        touched = {f.table for f in analysis.findings if f.table} - analysis.created_tables - {"alembic_version"}
        for name in sorted(touched):
            info = catalog.table(name)
            if info is not None:
                tables[name] = {"heap_bytes": info.heap_bytes, "toast_bytes": info.toast_bytes,
                                "index_bytes": info.index_bytes, "indexes": info.index_count,
                                "rows_estimate": round(info.rows)}
    else:
        warnings.append("no database given: locks and effects only; sizes and durations need a DSN")
    if revisions is not None and revisions.noop_downgrades:
        warnings.append("revisions whose downgrade does nothing (they cannot be undone by `alembic downgrade`; the "
                        "rollback point restores them): " + ", ".join(revisions.noop_downgrades))
    return MigrationReport(analysis.findings, hold, warnings, server, tables, revisions,
                           created_tables=set(analysis.created_tables), set_aside=analysis.set_aside,
                           incomplete=analysis.incomplete, lock_hold_now=forecast.at_load(hold, rates))


def gate(report: MigrationReport, max_lock_seconds: float | None) -> list[str]:
    """Why the upgrade must not go ahead ([] = it may): data loss, or a lock-hold over the threshold. The lock-holds
    are the calibrated ones (`lock_hold`), not those at the load of the moment: the verdict does not follow the
    host's load (`at_load_note` says when the two disagree)."""
    reasons = []
    if report.sources and report.sources.get("not_analysed"):
        reasons.append(f"{len(report.sources['not_analysed'])} pending revision(s) could not be analysed (neither "
                       f"rendered offline nor rehearsed): {', '.join(report.sources['not_analysed'])}")
    for f in report.data_loss:
        reasons.append(f"statement {f.index} ({f.sql.splitlines()[0][:80]}) loses data")
    if max_lock_seconds is not None:
        for table, seconds in report.lock_hold.items():
            if seconds is not None and seconds > max_lock_seconds:
                reasons.append(f"writes to {table} would be blocked for up to {seconds:.1f} s "
                               f"(limit {max_lock_seconds:g} s)")
    return reasons


def at_load_note(report: MigrationReport, max_lock_seconds: float | None) -> str | None:
    """The forecast's uncertainty, told to the reader: which table would be over the limit at the load the probe
    saw although its calibrated lock-hold (the gate's) is within it. None when the load changes no verdict."""
    if max_lock_seconds is None:
        return None
    only_now = {t: s for t, s in report.lock_hold_now.items() if s is not None and s > max_lock_seconds
                and (report.lock_hold.get(t) or 0.0) <= max_lock_seconds}
    if not only_now:
        return None
    t = max(only_now, key=lambda name: only_now[name])
    factor = ((report.server or {}).get("probe") or {}).get("load_factor", 1.0)
    return (f"at the load measured now (durations ×{factor:.2f}) writes to {t} would be blocked for up to "
            f"{only_now[t]:.1f} s, over the limit of {max_lock_seconds:g} s; the gate goes by the calibrated "
            f"{report.lock_hold.get(t) or 0:.1f} s, which does not change with the host's load")
