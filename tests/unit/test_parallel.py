"""core.parallel: every call runs at once, carries the caller's context, and the first failure in order is raised."""
import contextvars
import threading

import pytest

from core.parallel import all_at_once, first_failure

WHO = contextvars.ContextVar("who", default="nobody")


def test_calls_run_at_the_same_time_with_the_callers_context_and_in_order():
    meet = threading.Barrier(3, timeout=5)  # all three must be running at once, or this breaks
    WHO.set("the flow run")

    def part(n):
        meet.wait()
        return (n, WHO.get())

    outcomes = all_at_once([lambda n=n: part(n) for n in range(3)])
    assert outcomes == [((n, "the flow run"), None) for n in range(3)]


def test_the_first_failure_in_the_calls_order_is_raised_after_every_call_ended():
    ended = []

    def slow_fail():
        threading.Event().wait(0.2)
        ended.append("slow")
        raise ValueError("first in order")

    def quick_fail():
        ended.append("quick")
        raise KeyError("second in order")

    outcomes = all_at_once([slow_fail, quick_fail])
    assert sorted(ended) == ["quick", "slow"]
    with pytest.raises(ValueError, match="first in order"):
        first_failure(outcomes)
