"""core.io.db without a server: waiting for one that never answers."""
from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from core.errors import DatabaseUnreachable
from core.io.db import DbAccess
from lab.stack import free_port


def test_waiting_for_a_server_that_never_answers_ends_at_the_deadline_with_its_error():
    db = DbAccess("127.0.0.1", free_port(), "app", SecretStr("pw-secret"))  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(DatabaseUnreachable) as caught:
        db.wait_until_reachable("app", deadline_seconds=0.6, every=0.1)
    took = time.monotonic() - t0
    assert 0.6 <= took < 3, f"tried until the deadline, then gave up ({took:.2f} s)"
    assert "127.0.0.1" in str(caught.value) and "pw-secret" not in str(caught.value)
