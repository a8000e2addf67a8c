"""The benchmarks' downtime watcher counts every failed or broken answer as down and keeps watching (issue 23)."""
from __future__ import annotations

import http.client
import json

import pytest

from bench.watch import Watch, answer, api_state, mlflow_state

BROKEN = [http.client.IncompleteRead(b"par", 10), http.client.RemoteDisconnected("closed"),
          ConnectionResetError("reset"), http.client.BadStatusLine(""), TimeoutError("timed out"),
          json.JSONDecodeError("cut", "{", 1), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")]


class Scripted:
    """A server that answers from a script: a value, or an exception to raise."""

    def __init__(self, script):
        self.script = list(script)

    def next(self):
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        return item


@pytest.mark.parametrize("exc", BROKEN, ids=lambda e: type(e).__name__)
def test_a_broken_answer_is_down(exc):
    def call():
        raise exc
    assert answer(call, "down") == "down"


def test_a_programming_error_is_not_swallowed():
    with pytest.raises(KeyError):
        answer(lambda: {}["x"], "down")


def test_the_watcher_survives_every_broken_answer_and_measures():
    server = Scripted(["old", "old", *BROKEN, None, "new"])
    watch = Watch(server.next, interval=0.001)
    watch.start()
    watch.join(5)
    assert not watch.is_alive()
    assert watch.last_old is not None and watch.first_new is not None
    assert watch.downtime > 0


def test_a_round_that_saw_nothing_says_so():
    watch = Watch(lambda: None, interval=0.001)
    with pytest.raises(RuntimeError, match="no old version answer"):
        _ = watch.downtime


class FakeMlflow:
    def __init__(self, script):
        self.s = Scripted(script)

    def get(self, path):
        return self.s.next() if path == "/version" else (200, "OK")


class FakeApi:
    def __init__(self, script):
        self.s = Scripted(script)

    def api_health(self):
        return self.s.next()


def test_mlflow_state_raises_through_broken_answers_to_the_watcher():
    state = mlflow_state(FakeMlflow([http.client.IncompleteRead(b"", 3)]), "3.6.0", "3.17.2")
    with pytest.raises(http.client.IncompleteRead):
        state()
    assert mlflow_state(FakeMlflow([(200, "3.17.2")]), "3.6.0", "3.17.2")() == "new"
    assert mlflow_state(FakeMlflow([(200, "3.6.0")]), "3.6.0", "3.17.2")() == "old"
    assert mlflow_state(FakeMlflow([(503, "")]), "3.6.0", "3.17.2")() is None


def test_api_state():
    assert api_state(FakeApi([{"status": "ok", "version": "2.0.0"}]), "2.0.0")() == "new"
    assert api_state(FakeApi([{"status": "ok", "version": "1.0.0"}]), "2.0.0")() == "old"
    assert api_state(FakeApi([None]), "2.0.0")() is None
