"""How `lab/orphans.py` tells a test stack left by a session that never ended from a live session's stack (the
removal itself runs against the engines in `lab/setup`, and in tests/e2e/test_lab_orphans.py)."""
import os
import subprocess
import sys

import pytest

from lab import orphans


@pytest.fixture
def owners(tmp_path, monkeypatch):
    monkeypatch.setattr(orphans, "OWNERS", tmp_path / "stacks")
    return tmp_path / "stacks"


def test_a_stack_claimed_by_this_process_is_not_an_orphan(owners):
    orphans.claim("e2e-mine")
    assert not orphans.is_orphan("e2e-mine")
    orphans.unclaim("e2e-mine")
    assert orphans.is_orphan("e2e-mine"), "an unclaimed (or never claimed) stack is an orphan"


def test_a_stack_whose_claiming_process_ended_is_an_orphan(owners):
    child = subprocess.run([sys.executable, "-c", "from lab import orphans; orphans.claim('e2e-theirs')"], check=True,
                           env=os.environ | {"PYTHONPATH": os.getcwd(), "STACKSHIFT_LAB_HOME": str(owners.parent)})
    assert child.returncode == 0 and (owners / "e2e-theirs").exists()
    assert orphans.is_orphan("e2e-theirs")


def test_a_reused_pid_does_not_keep_an_orphan(owners):
    """The pid is alive (this process) but started at another time: the claim was another process's."""
    pid, started = orphans._identity(os.getpid()).split()
    owners.mkdir()
    (owners / "e2e-reused").write_text(f"{pid} {int(started) - 1}\n")
    assert orphans.is_orphan("e2e-reused")
    (owners / "e2e-garbled").write_text("not a claim\n")
    assert orphans.is_orphan("e2e-garbled")
    (owners / "e2e-empty").write_text("")
    assert orphans.is_orphan("e2e-empty")
