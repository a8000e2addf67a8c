"""A restore decides what is left from what it sees, never from what the journal says was started: every state a
SIGKILL can leave a PITR data directory or a FILE_COPY rename in, and what a restore run again does there."""
from pathlib import Path, PurePosixPath

import pytest

from core.backup import rollbackpoint as rp
from core.cutover.steps import rollback as rb
from core.io.pgsql import as_text
from tests.unit.test_rollbackpoint import _cluster

PROMOTION = '1\t0/5000120\tat restore point "stackshift_r1"\n'


def observed(**seen: bool) -> rp.Observed:
    return rp.Observed(**{"base": False, "failed": False, "live": False, "cluster": False, "signal": False,
                          "reached": False} | seen)


@pytest.mark.parametrize("seen, action", [
    # before the renames: the failed cluster in place, the base backup beside it
    ({"base": True, "live": True, "cluster": True}, rp.SWAP),
    # between the two renames
    ({"base": True, "failed": True}, rp.COMPLETE_SWAP),
    # swapped, settings not written yet (killed right after the renames)
    ({"failed": True, "live": True, "cluster": True}, rp.CONFIGURE),
    # swapped and set to replay, never started, or replaying (killed during await-recovery)
    ({"failed": True, "live": True, "cluster": True, "signal": True}, rp.CONFIGURE),
    # replayed to the restore point and promoted: never set to replay again
    ({"failed": True, "live": True, "cluster": True, "reached": True}, rp.PROMOTED),
    # promoted, and the failed state already removed by the clean-up
    ({"live": True, "cluster": True, "reached": True}, rp.PROMOTED),
    # promoted, then given a recovery.signal by an older stackshift (the cluster would not start): repaired
    ({"failed": True, "live": True, "cluster": True, "signal": True, "reached": True}, rp.PROMOTED),
], ids=["before", "between-renames", "swapped", "replaying", "promoted", "promoted-cleaned", "promoted-broken"])
def test_the_pitr_restore_action_follows_the_directories(seen, action):
    assert rp.restore_action(observed(**seen)) == action


@pytest.mark.parametrize("seen", [{}, {"live": True, "cluster": True}, {"base": True, "failed": True, "live": True},
                                  {"failed": True, "live": True}])
def test_a_state_no_restore_leaves_is_refused_with_what_was_seen(seen):
    with pytest.raises(FileNotFoundError, match="no state a restore leaves"):
        rp.restore_action(observed(**seen))


def test_only_a_history_line_at_the_runs_own_restore_point_counts_as_promoted():
    assert rp.promoted_at("r1", ["# comment\n", PROMOTION])
    assert not rp.promoted_at("r1", ['1\t0/5000120\tat restore point "stackshift_r0"\n'])  # an earlier run's
    assert not rp.promoted_at("r1", ["1\t0/5000120\tno recovery target specified\n"])
    assert not rp.promoted_at("r1", [])


def _data(tmp_path: Path) -> rp.DataDir:
    return rp.DataDir("db", tmp_path / "pgdata", PurePosixPath("/var/lib/postgresql/data/pgdata"))


def test_a_promoted_cluster_gets_no_recovery_settings_again(tmp_path):
    _cluster(tmp_path, "ss-failed-r1", "failed")
    live = _cluster(tmp_path, "pgdata", "restored")
    (live / "pg_wal" / "00000002.history").write_text(PROMOTION)
    before = (live / "postgresql.auto.conf").read_text()
    said = rp.swap_in_base_backup(_data(tmp_path), "r1")
    assert "promoted: nothing to do" in said
    assert not (live / rp.SIGNAL).exists() and (live / "postgresql.auto.conf").read_text() == before
    assert (live / "marker").read_text() == "restored"


def test_a_promoted_cluster_set_to_replay_by_mistake_is_repaired(tmp_path):
    _cluster(tmp_path, "ss-failed-r1", "failed")
    live = _cluster(tmp_path, "pgdata", "restored")
    (live / "pg_wal" / "00000002.history").write_text(PROMOTION)
    (live / rp.SIGNAL).write_text("")
    (live / "postgresql.auto.conf").write_text("max_wal_size = '2GB'\nrecovery_target_name = 'stackshift_r1'\n")
    assert "stray recovery.signal is removed" in rp.swap_in_base_backup(_data(tmp_path), "r1")
    assert not (live / rp.SIGNAL).exists()
    assert (live / "postgresql.auto.conf").read_text() == "max_wal_size = '2GB'\n"


def test_a_swapped_cluster_never_started_is_set_to_replay(tmp_path):
    _cluster(tmp_path, "ss-failed-r1", "failed")
    live = _cluster(tmp_path, "pgdata", "base")  # renamed in, killed before the settings were written
    rp.swap_in_base_backup(_data(tmp_path), "r1")
    assert (live / rp.SIGNAL).exists() and "recovery_target_name = 'stackshift_r1'" in \
        (live / "postgresql.auto.conf").read_text()


@pytest.mark.parametrize("point, source, failed, before, action", [
    (True, True, False, False, rb.SWAP),  # not begun
    (True, True, True, False, rb.REPLACE_STALE),  # a failed state of an earlier attempt is in the way
    (True, False, True, False, rb.COMPLETE),  # killed between the two renames
    (True, False, False, False, rb.COMPLETE),  # the database itself gone: the point becomes it
    (False, True, True, False, rb.RESTORED),  # done, the failed state beside it
    (False, True, False, True, rb.RESTORED),  # done and cleaned up
])
def test_the_file_copy_restore_action_follows_the_databases_that_exist(point, source, failed, before, action):
    assert rb.rename_back(point, source, failed, before) == action


def test_a_lost_rollback_point_is_refused_not_taken_for_a_restore():
    with pytest.raises(LookupError, match="is missing"):
        rb.rename_back(False, True, False, False)
    with pytest.raises(LookupError, match="database itself"):
        rb.rename_back(False, False, True, True)


def test_the_renames_never_drop_the_failed_state_unless_it_is_in_the_way():
    text = [as_text(s) for s in rb.RestoreDatabase.statements("app", "app__rb", "app__failed", rb.COMPLETE)]
    assert not any("DROP" in t for t in text) and len(text) == 3
    stale = rb.RestoreDatabase.statements("app", "app__rb", "app__failed", rb.REPLACE_STALE)
    assert sum("DROP" in as_text(s) for s in stale) == 1


def test_the_report_says_whether_the_dead_runners_migration_had_completed():
    from core.cutover.recovery import one_offs_note

    assert one_offs_note(0, ["r1"], ["r2"]) == ""
    assert one_offs_note(1, ["r2"], ["r2"]).endswith("its migration had completed (database at r2)")
    assert "had not completed (database at r1, the target r2)" in one_offs_note(1, ["r1"], ["r2"])
    assert "could not be read" in one_offs_note(2, None, ["r2"])


def test_the_next_holder_finds_the_record_of_a_holder_that_died_and_not_of_one_that_ended(tmp_path):
    """A real file lock; a child process that takes it and is SIGKILLed stands for the dead run."""
    import signal
    import subprocess
    import sys
    import time

    from core.cutover.lock import StackLock, dead_holder_run

    path = tmp_path / "lock"
    with StackLock(path, {"run": "a", "flow_run": "fr-a"}) as lock:
        assert lock.previous == {}
    with StackLock(path, {"run": "b"}) as lock:
        assert lock.previous == {}, "a holder that ended leaves no record"
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, '.');"
                              "from core.cutover.lock import StackLock;"
                              f"StackLock({str(path)!r}, {{'run': 'c', 'flow_run': 'fr-c'}}).__enter__()"
                              ".note(ui_lease='lease-c');"
                              "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    child.send_signal(signal.SIGKILL)
    child.wait()
    time.sleep(0.05)
    with StackLock(path, {"run": "d"}) as lock:
        assert lock.previous["run"] == "c" and lock.previous["pid"] == child.pid
        assert lock.previous["ui_lease"] == "lease-c", "what the holder noted (its UI slot's lease, freed next)"
        assert dead_holder_run(lock.previous, set()) == "fr-c"
        assert dead_holder_run(lock.previous, {"fr-c"}) is None, "an open journal's run is the recovery's to mark"
    assert dead_holder_run({}, set()) is None and dead_holder_run({"run": "e", "flow_run": None}, set()) is None


def test_a_recovery_waits_out_another_recovery_and_is_refused_by_anything_else(tmp_path):
    """Two recoveries of one crash (an automation fired twice): the second waits for the first, then takes the lock;
    a holder that is not a recovery refuses it at once; the wait is bounded."""
    import threading
    import time

    import pytest

    from core.cutover.lock import RECOVERY, StackLock
    from core.errors import StackLocked

    path = tmp_path / "lock"
    release = threading.Event()
    held = threading.Event()

    def hold(purpose: dict):
        with StackLock(path, {"run": "first"} | purpose):
            held.set()
            release.wait(10)

    first = threading.Thread(target=hold, args=({"purpose": RECOVERY},))
    first.start()
    held.wait(5)
    threading.Timer(0.6, release.set).start()
    with StackLock(path, {"run": "second", "purpose": RECOVERY}, wait_for_purpose=RECOVERY, wait_seconds=10) as lock:
        assert lock.waited >= 0.5, "it waited for the first recovery"
    first.join()

    release.clear(), held.clear()
    upgrade = threading.Thread(target=hold, args=({},))
    upgrade.start()
    held.wait(5)
    t0 = time.monotonic()
    with pytest.raises(StackLocked) as refused:
        StackLock(path, {"run": "third", "purpose": RECOVERY}, wait_for_purpose=RECOVERY, wait_seconds=10).__enter__()
    assert time.monotonic() - t0 < 0.5 and refused.value.holder["run"] == "first", "an upgrade's lock refuses at once"
    release.set()
    upgrade.join()

    release.clear(), held.clear()
    other = threading.Thread(target=hold, args=({"purpose": RECOVERY},))
    other.start()
    held.wait(5)
    with pytest.raises(StackLocked):
        StackLock(path, {"run": "fourth"}, wait_for_purpose=RECOVERY, wait_seconds=0.6).__enter__()
    release.set()
    other.join()


def test_a_refusal_names_a_holder_that_had_not_written_its_record_yet_and_takes_a_lock_let_go_meanwhile(tmp_path):
    """The moments between taking the lock and writing the record (and between emptying it and letting go): the
    second run waits for the record (so the refusal names the holder), or takes the lock once it is let go."""
    import fcntl
    import json
    import os
    import threading
    import time

    import pytest

    from core.cutover.lock import RECORD_WAIT_SECONDS, StackLock
    from core.errors import StackLocked

    path = tmp_path / "lock"
    path.write_text("")
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    threading.Timer(0.3, lambda: os.pwrite(fd, json.dumps({"run": "slow", "pid": 1}).encode(), 0)).start()
    with pytest.raises(StackLocked) as refused:
        StackLock(path, {"run": "second"}).__enter__()
    assert refused.value.holder["run"] == "slow", "the refusal names the holder"

    os.ftruncate(fd, 0)  # the holder is letting go: record emptied, lock not yet released
    threading.Timer(0.3, lambda: fcntl.flock(fd, fcntl.LOCK_UN)).start()
    with StackLock(path, {"run": "third"}) as lock:
        assert lock.waited >= 0.25, "it took the lock the holder let go"

    fcntl.flock(fd, fcntl.LOCK_EX)  # a holder that never writes: refused after the bounded wait, holder unknown
    t0 = time.monotonic()
    with pytest.raises(StackLocked) as refused:
        StackLock(path, {"run": "fourth"}).__enter__()
    assert refused.value.holder == {} and RECORD_WAIT_SECONDS <= time.monotonic() - t0 < RECORD_WAIT_SECONDS + 1
    os.close(fd)
