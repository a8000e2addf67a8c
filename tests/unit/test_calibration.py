"""The probe's calibration and the gate that goes by it: pure functions, and the demo upgrade's verdict from rates
measured on this host idle and under a CPU load of twice its cores (bench/gate_under_load.py)."""
import pytest

from core.migrations import calibration, migcheck
from core.migrations.calibration import Round, Timing
from core.migrations.pgcatalog import Rates
from core.migrations.sqlrules import ColumnType, TableInfo
from core.report import migration_markdown
from tests.unit.test_sqlrules import FixedCatalog


def test_calibrated_time_leaves_out_the_wait_for_a_cpu_and_nothing_else():
    assert Timing(2.0, 1.5).calibrated == 0.5
    assert Timing(2.0, 0.0).calibrated == 2.0          # idle: the time as it was
    assert Timing(2.0, None).calibrated == 2.0         # not measurable: the time as it was
    assert Timing(2.0, 2.5).calibrated == pytest.approx(0.02)  # a counter read off the edge: never free
    assert Timing(2.0, 1.9, on_cpu=0.3).calibrated == pytest.approx(0.3)  # nor below its time on a CPU
    assert Timing(2.0, -1.0).calibrated == 2.0


def test_load_factor_is_wall_over_calibrated_over_every_statement():
    assert calibration.load_factor([Timing(1.0, 0.5), Timing(3.0, 1.5)]) == 2.0
    assert calibration.load_factor([Timing(1.0, None)]) == 1.0
    assert calibration.load_factor([]) == 1.0


def test_schedstat_line_is_read_or_refused():
    assert calibration.schedstat("2220700 2360643 18\n") == (0.0022207, 0.002360643)
    for bad in ("", "12", "a b c", "-1 2 3"):
        with pytest.raises(ValueError):
            calibration.schedstat(bad)


@pytest.mark.parametrize(("elapsed", "last", "done", "expected"), [
    (0.0, 0.0, 0, True),     # the first round always runs
    (9.0, 9.0, 0, True),     # even past the budget
    (1.0, 0.9, 1, True),     # another 0.9 s ends at 1.9 ≤ 3
    (2.2, 0.9, 2, False),    # it would end at 3.1 > 3
    (1.0, 0.1, 5, False),    # the most rounds
])
def test_rounds_stop_when_the_next_would_not_fit_the_budget(elapsed, last, done, expected):
    assert calibration.another_round(elapsed, last, 3.0, done, 5) is expected


def _round(rewrite_s: float, wait: float = 0.0, heap: int = 10_000_000) -> Round:
    return Round(100_000, heap, heap, Timing(0.005 + wait, wait), Timing(rewrite_s + wait, wait),
                 Timing(0.035 + wait, wait))


def test_rates_are_the_best_round_and_the_pooled_rate_whatever_the_wait():
    idle = [_round(0.04), _round(0.04), _round(0.08), _round(0.04)]  # one round writes a new WAL segment
    busy = [_round(0.04, wait=0.1), _round(0.08, wait=0.2), _round(0.04, wait=0.05), _round(0.04, wait=0.3)]
    rewrite, scan, sort = calibration.rates(idle)
    assert rewrite == (pytest.approx(250e6), pytest.approx(40e6 / 0.2))
    flat = [v for pair in calibration.rates(idle) for v in pair]
    assert [v for pair in calibration.rates(busy) for v in pair] == pytest.approx(flat, rel=1e-9)
    assert scan == (pytest.approx(2e9), pytest.approx(2e9))
    assert sort[0] == sort[1] == pytest.approx(100_000 * 16.609640474 / 0.03, rel=1e-6)


# The lab demo's v1 → v2 revision as its image renders it, on 1,000,000 events (sizes as on the bench's deployment).
DEMO_V2 = """BEGIN;
CREATE TABLE api_keys (id SERIAL NOT NULL, account_id INTEGER NOT NULL, token_hash TEXT NOT NULL, PRIMARY KEY (id));
ALTER TABLE accounts ADD COLUMN plan TEXT;
ALTER TABLE events ALTER COLUMN total_tokens TYPE BIGINT;
CREATE INDEX ix_events_account_id ON events (account_id);
UPDATE alembic_version SET version_num='b2c3d4e5f6a7' WHERE alembic_version.version_num = 'a1b2c3d4e5f6';
COMMIT;
"""
EVENTS = TableInfo(174_301_184, 0, 22_487_040, 1, 1_000_000.0,
                   {"id": ColumnType("int4"), "account_id": ColumnType("int4"), "total_tokens": ColumnType("int4"),
                    "payload": ColumnType("text")})
ACCOUNTS = TableInfo(57_344, 0, 40_960, 1, 1000.0, {"id": ColumnType("int4"), "name": ColumnType("text")})
LIMIT = 60.0


def _report(rates: Rates) -> migcheck.MigrationReport:
    return migcheck.analyze(DEMO_V2, FixedCatalog({"events": EVENTS, "accounts": ACCOUNTS}), rates)


def _measured(rewrite, scan, sort, run) -> Rates:
    """Rates as the probe reported them; `run` is (its seconds, its rounds, its load factor)."""
    seconds, rounds, load_factor = run
    return Rates(rewrite, scan, sort, 100_000, 10_928_128, seconds, rounds, 3.0, load_factor, True)


# What the probe measured in `bench/gate_under_load.py` (`./stackshift plan` of that upgrade on the lab's demo stack,
# this 2-core host, 2026-12-05): each round idle, then with 4 processes spinning beside it.
PAIRS = [
    (_measured((362.4e6, 325.2e6), (2526e6, 2374e6), (66.96e6, 54.63e6), (1.87, 12, 1.497)),
     _measured((330.5e6, 242.4e6), (2458e6, 2335e6), (42.69e6, 42.24e6), (2.74, 2, 4.206))),
    (_measured((350.1e6, 319.2e6), (2491e6, 2348e6), (56.96e6, 48.90e6), (2.03, 12, 1.423)),
     _measured((366.6e6, 324.7e6), (2524e6, 2435e6), (54.68e6, 48.57e6), (2.81, 7, 3.007))),
    (_measured((350.4e6, 328.7e6), (2664e6, 2442e6), (67.43e6, 61.49e6), (1.67, 12, 1.390)),
     _measured((372.2e6, 320.7e6), (2645e6, 2528e6), (69.12e6, 63.79e6), (2.63, 12, 1.810))),
]
IDLE, LOADED = PAIRS[0]  # the most loaded round


def _uncalibrated(r: Rates) -> Rates:
    """The same probe read the old way: its rates at the load of the moment (wall time)."""
    f = r.load_factor
    return Rates(*((a / f, b / f) for a, b in (r.rewrite_bps, r.scan_bps, r.sort_nlogn_ps)), r.probe_rows,
                 r.probe_heap_bytes, r.probe_seconds, r.rounds, r.budget_seconds, 1.0, False)


@pytest.mark.parametrize(("idle_rates", "loaded_rates"), PAIRS)
def test_the_demo_upgrade_gets_the_same_verdict_idle_and_under_load(idle_rates, loaded_rates):
    idle, loaded = _report(idle_rates), _report(loaded_rates)
    tight = 1.5 * idle.lock_hold["events"]  # a limit just over the idle forecast
    for limit in (LIMIT, tight):
        assert migcheck.gate(idle, limit) == migcheck.gate(loaded, limit) == []
    assert loaded.lock_hold["events"] == pytest.approx(idle.lock_hold["events"], rel=0.35)
    # Rates of the moment (the gate before) follow the load, and flip the verdict at the tight limit.
    old_idle, old_loaded = _report(_uncalibrated(idle_rates)), _report(_uncalibrated(loaded_rates))
    assert old_idle.lock_hold["events"] == pytest.approx(idle.lock_hold_now["events"], abs=0.01)
    assert old_loaded.lock_hold["events"] == pytest.approx(loaded.lock_hold_now["events"], abs=0.01)
    assert migcheck.gate(old_idle, tight) == [] and migcheck.gate(old_loaded, tight) != []


def test_the_report_states_the_load_and_what_the_verdict_would_be_at_it():
    report = _report(LOADED)
    calibrated, now = report.lock_hold["events"], report.lock_hold_now["events"]
    limit = (calibrated + now) / 2
    note = migcheck.at_load_note(report, limit)
    assert migcheck.gate(report, limit) == []
    assert note and f"would be blocked for up to {now:.1f} s" in note and f"the calibrated {calibrated:.1f} s" in note
    text = migration_markdown(report, "t", [], note)
    assert "Uncertainty: at the load measured now (durations ×4.21)" in text
    assert "2 rounds of 100,000 rows (10.9 MB) in 2.74 s (budget 3 s)" in text
    assert "Calibrated: the time the probe waited for a CPU" in text
    assert migcheck.at_load_note(report, now + 1) is None  # under both: nothing to say
    assert migcheck.at_load_note(report, None) is None


def test_an_uncalibrated_probe_says_so():
    rates = Rates((1e8, 1e8), (1e9, 1e9), (5e7, 5e7), 100_000, 10_928_128, 1.2, 1, 3.0, 1.0, False)
    report = _report(rates)
    assert report.lock_hold_now == report.lock_hold
    text = migration_markdown(report, "t", [])
    assert "Not calibrated" in text and "1 round of 100,000 rows" in text and "in 1.2 s (budget 3 s)" in text
