"""The seed's case through the real CLI, with `online_preparation=auto`: v2.0.1 → v2.1.0, whose only migration widens
the biggest table's primary key events.id int → bigint with its sequence, event_links' foreign key pointing at it.

- A run cancelled (SIGTERM) mid-backfill leaves no shadow column, trigger, function, index or helper constraint, and
  v2.0.1 serves on its untouched table; the same upgrade then runs to its end while a user writes through the app
  (new events, more tokens on seeded ones) during the backfill: the key is bigint with its sequence, the foreign key
  validated, and every row is what was seeded and written.
- An upgrade to a release that never turns healthy, after the swap: rolled back to v2.0.1, which runs on the widened
  (bigint) key, reads and writes it; every seeded row identical."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.demo.releases import HEADS
from lab.writer import AppWriter, events
from tests.e2e.helpers import revision
from tests.e2e.test_online_upgrade import backfilling, helpers, journal_of

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ROWS = 20_000
ONLINE = {"migration_probe": False, "online_preparation": "auto", "online_batch_rows": 200,
          "online_pause_seconds": 0.05}
KEY = "prepare-online events.id"


def upgrade(dep, target: str) -> subprocess.Popen:
    return subprocess.Popen([str(ROOT / "stackshift"), "upgrade", "-e", dep.name, "-t", target],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def key_type(dep) -> tuple:
    """events.id's type, its sequence's type, and whether event_links' foreign key is validated."""
    with dep.connect() as conn:
        row = conn.execute("""SELECT format_type(a.atttypid, a.atttypmod), s.seqtypid::regtype::text,
            (SELECT convalidated FROM pg_constraint WHERE conname = 'event_links_event_id_fkey')
            FROM pg_attribute a, pg_sequence s WHERE a.attrelid = 'events'::regclass AND a.attname = 'id'
            AND s.seqrelid = pg_get_serial_sequence('events', 'id')::regclass""").fetchone()
    assert row is not None
    return tuple(row)


def links(dep) -> list[tuple]:
    with dep.connect() as conn:
        return conn.execute("SELECT id, event_id, note FROM event_links ORDER BY id").fetchall()


def swapped(dep) -> bool:
    """Whether the run's swap committed (the writer stops there: before the writers stop, no write is in doubt)."""
    j = journal_of(dep)
    r = j.record(f"{KEY}: swap") if j is not None else None
    return r is not None and r.state == "done"


def serving(dep, version: str) -> None:
    health = dep.api_health()
    assert health is not None and health["status"] == "ok" and health["version"] == version, health


def test_a_cancel_mid_backfill_leaves_nothing_then_the_key_is_widened_under_writes_through_the_app(make_deployment):
    dep = make_deployment("v2.0.1", rows=ROWS, **ONLINE)
    seeded, seeded_links = events(dep), links(dep)
    assert len(seeded_links) == ROWS // 100
    t0 = time.monotonic()
    proc = upgrade(dep, "v2.1.0")
    try:
        backfilling(dep, proc)
        assert helpers(dep) >= 3, "shadow column, sync trigger and its function exist mid-backfill"
    finally:
        proc.send_signal(signal.SIGTERM)  # a cancel: the runner stops what it does and abandons the run
        _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    closed = journal_of(dep)
    assert closed is not None and closed.status == "abandoned" and not closed.cutover_started, closed
    settle = closed.record("settle-online")
    assert settle is not None and settle.state == "done" and "undone" in settle.detail, (settle, err[-2000:])
    assert helpers(dep) == 0, "no shadow column, trigger, function, index or helper constraint left"
    assert key_type(dep) == ("integer", "integer", True)
    assert events(dep) == seeded and links(dep) == seeded_links, "every row as it was"
    assert revision(dep) == [HEADS["2.0.1"]]
    serving(dep, "2.0.1")
    print(f"cancelled mid-backfill: {time.monotonic() - t0:.1f} s")

    # the upgrade again, to its end, a user writing through the app until the swap
    t1 = time.monotonic()
    writer = AppWriter(dep.api_port, list(range(1, ROWS + 1, 7)), until=lambda: swapped(dep))
    writer.start()
    proc = upgrade(dep, "v2.1.0")
    try:
        out, err = proc.communicate(timeout=900)
    finally:
        writer.stop()
    assert proc.returncode == 0, err[-3000:]
    j = journal_of(dep)
    assert j is not None and j.status == "completed", j
    backfill, swap = j.record(f"{KEY}: backfill"), j.record(f"{KEY}: swap")
    assert backfill is not None and backfill.ended is not None and swap is not None and swap.phase == "backup"
    during = writer.during(backfill.started, backfill.ended)
    assert during["writes"] >= 20 and during["errors"] == 0, during
    assert key_type(dep) == ("bigint", "bigint", True), "the key, its sequence; the foreign key validated"
    assert helpers(dep) == 0
    assert events(dep) == writer.expected(seeded), "every row is what was seeded and written through the app"
    assert links(dep) == seeded_links
    with dep.connect() as conn:
        assert conn.execute("SELECT indisprimary, indisvalid FROM pg_index WHERE indexrelid = "
                            "'events_pkey'::regclass").fetchone() == (True, True)
    assert revision(dep) == [HEADS["2.1.0"]]
    serving(dep, "2.1.0")
    migrate = j.record("migrate")
    assert migrate is not None and migrate.ended is not None
    print(f"widened under app writes: {time.monotonic() - t1:.1f} s; {during} during the backfill; "
          f"migrate {migrate.ended - migrate.started:.2f} s")


def test_a_failed_cutover_after_the_swap_rolls_back_to_the_old_version_on_the_widened_key(make_deployment):
    dep = make_deployment("v2.0.1", rows=ROWS, **ONLINE)
    seeded, seeded_links = events(dep), links(dep)
    t0 = time.monotonic()
    proc = upgrade(dep, "v2.1.0-unhealthy")
    _, err = proc.communicate(timeout=900)
    assert proc.returncode != 0
    j = journal_of(dep)
    assert j is not None and j.status == "rolled-back", j
    swap = j.record(f"{KEY}: swap")
    assert swap is not None and swap.state == "done" and swap.phase == "backup", "swapped before the writers stopped"
    settle = j.record("settle-online")
    assert settle is not None and settle.state == "done", (settle, err[-2000:])
    assert key_type(dep) == ("bigint", "integer", True), "the rollback point, taken at the stop, holds the widened key"
    assert helpers(dep) == 0
    assert events(dep) == seeded and links(dep) == seeded_links, "every seeded row identical"
    assert revision(dep) == [HEADS["2.0.1"]]
    serving(dep, "2.0.1")
    writer = AppWriter(dep.api_port, [1, ROWS], pause=0)  # the old version reads and writes the bigint key
    writer.start()
    time.sleep(1.0)
    writer.stop()
    assert len(writer.writes) >= 10 and writer.errors == [], writer.errors[:3]
    assert events(dep) == writer.expected(seeded)
    assert max(writer.inserted) > ROWS, "new keys from the sequence"
    print(f"failed cutover after the swap, rolled back: {time.monotonic() - t0:.1f} s")
