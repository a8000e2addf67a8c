"""The downtime forecast and the risk gate with the online preparation: a statement prepared online is catalog-only in
the cutover (no lock-hold, no gate), its own work forecast apart as happening while the old version serves; with
`online_preparation=off` (no catalog-only statements) exactly the forecast and gate as before. The promotion's
fingerprint and summary carry each statement's online verdict. The catalog and the
probe's rates are fixed stand-ins (no server in unit tests)."""
from __future__ import annotations

import dataclasses

import pytest

from core import promotion
from core.cutover.online import OnlineFacts
from core.errors import PlanChangedSinceApproval
from core.migrations import migcheck
from core.migrations.online import OnlineSettings
from core.migrations.pgcatalog import Rates
from core.migrations.sqlrules import TableInfo
from core.migrations.sqlrules.coltypes import ColumnType
from core.report import migration_markdown
from tests.unit.test_online_step import online_facts
from tests.unit.test_online_planner import WIDEN_PK
from tests.unit.test_plan import facts
from tests.unit.test_sqlrules import FixedCatalog

RATES = Rates((100e6, 50e6), (1000e6, 500e6), (20e6, 10e6), 300_000, 30_000_000, 1.0)
CATALOG = FixedCatalog({"accounts": TableInfo(1_000_000_000, 0, 0, 1, 1_000_000,
                                              {"id": ColumnType("int4"), "name": ColumnType("text")})})
SETTINGS = OnlineSettings(batch_rows=10_000, pause_seconds=0.05)
WIDEN_AND_INDEX = WIDEN_PK + "CREATE INDEX accounts_name ON accounts (name);\n"


def report(sql: str, online: OnlineFacts | None = None) -> migcheck.MigrationReport:
    catalog_only = online.catalog_only(SETTINGS) if online is not None else None
    return migcheck.analyze(sql, CATALOG, RATES, catalog_only=catalog_only)


def test_off_counts_the_rewrite_in_the_downtime_and_the_gate_refuses():
    off = report(WIDEN_PK)
    assert off.lock_hold["accounts"] > 20, "a 1 GB rewrite under ACCESS EXCLUSIVE"
    assert any("accounts" in r for r in migcheck.gate(off, 10.0))
    assert report(WIDEN_PK, OnlineFacts()).to_dict() == off.to_dict(), "off (no verdicts): exactly as before"
    assert all("prepared_online" not in f for f in off.to_dict()["statements"])
    assert "Prepared online" not in migration_markdown(off, "t", [])


def test_a_prepared_statement_is_catalog_only_in_the_downtime_and_does_not_trip_the_gate():
    online = online_facts()
    [(index, batches)] = [(i, d["batches"]) for i, d in online.catalog_only(SETTINGS).items()]
    assert batches == 1_000_000 // 10_000 + 1
    off, auto = report(WIDEN_PK), report(WIDEN_PK, online)
    assert auto.lock_hold["accounts"] == 0.0 and migcheck.gate(auto, 10.0) == []
    [f] = [f for f in auto.statements if f.index == index]
    rewrite = next(g for g in off.statements if g.index == index).forecast_seconds
    assert f.forecast_seconds == {"low": 0.0, "high": 0.0}
    assert f.prepared_online == {"batches": batches, "forecast_seconds": {
        "low": round(rewrite["low"] + batches * 0.05, 3), "high": round(rewrite["high"] + batches * 0.05, 3)}}, \
        "the preparation's own forecast: the rewrite's work plus the pauses between batches, while the old serves"
    text = migration_markdown(auto, "t", [])
    assert "catalog-only in the downtime" in text and "## Prepared online, while the old version serves" in text
    assert f"| {batches:,} |" in text


def test_what_stays_in_the_downtime_still_counts_and_still_trips_the_gate():
    online = online_facts(WIDEN_AND_INDEX)
    auto = report(WIDEN_AND_INDEX, online)
    index_build = auto.statements[-1].forecast_seconds["high"]
    assert auto.statements[-1].prepared_online is None
    assert auto.lock_hold["accounts"] == index_build > 0
    assert migcheck.gate(auto, index_build / 2) and not migcheck.gate(auto, index_build * 2)
    assert report(WIDEN_AND_INDEX).lock_hold["accounts"] > index_build, "off: the rewrite counts as well"


def test_a_statement_only_partly_prepared_stays_in_the_downtime():
    facts = OnlineFacts(verdicts=({"finding": 1, "line": 2, "table": "accounts", "column": "id",
                                   "status": "prepared online", "reason": "", "summary": ""},
                                  {"finding": 1, "line": 2, "table": "accounts", "column": "name",
                                   "status": "in the downtime", "reason": "why", "summary": None}))
    assert facts.catalog_only(SETTINGS) == {}


def _verdict(status: str, reason: str = "", summary: str | None = None) -> dict:
    return {"finding": 1, "line": 2, "table": "accounts", "column": "id", "status": status, "reason": reason,
            "summary": summary}


def test_approving_a_plan_whose_online_verdicts_changed_is_refused():
    off = facts()
    prepared = dataclasses.replace(off, online=OnlineFacts(verdicts=(_verdict("prepared online", "about 1,000 rows"),)))
    in_downtime = dataclasses.replace(off, online=OnlineFacts(verdicts=(_verdict("in the downtime", "a reason"),)))
    assert "online" not in promotion.fingerprint_material(off), "off: the fingerprint exactly as before"
    fps = {promotion.fingerprint(f) for f in (off, prepared, in_downtime)}
    assert len(fps) == 3
    with pytest.raises(PlanChangedSinceApproval):
        promotion.check_approved("prod", in_downtime, promotion.fingerprint(prepared))
    other_reason = dataclasses.replace(off, online=OnlineFacts(verdicts=(_verdict("in the downtime", "another"),)))
    assert promotion.fingerprint(other_reason) != promotion.fingerprint(in_downtime), "the reason is approved too"
    fewer_rows = dataclasses.replace(off, online=OnlineFacts(verdicts=(_verdict("prepared online", "2,000 rows"),)))
    assert promotion.fingerprint(fewer_rows) == promotion.fingerprint(prepared), "row estimates are not the plan"


def test_the_promotion_summary_lists_each_statements_online_verdict():
    lines = ("line 2: accounts.id: prepared online (int4 → int8: …)",
             "line 3: accounts: in the downtime (CREATE INDEX without CONCURRENTLY)")
    md = promotion.summary_markdown("v2.0.0", "staging", "prod", digests={}, verdict="ok", fp="f" * 64, links={},
                                    notes=[], online=lines)
    assert all(f"- {line}" in md for line in lines) and "online verdict" in md
    assert "Per statement" not in promotion.summary_markdown("v2.0.0", "staging", "prod", digests={}, verdict="ok",
                                                             fp="f" * 64, links={}, notes=[])
