"""Fault injection lives outside the step walker: `execute` calls the step hooks (none in production), and the
injector is one only when an entry point installs it with STACKSHIFT_INJECT_FAULT set."""
import threading
import time

import pytest

from core.cutover import faults
from core.cutover import steps as st
from core.errors import CheckoutFailed
from tests.unit.test_steps import StubIO, ctx_for, step


@pytest.fixture
def clean_hooks():
    saved = list(st.HOOKS)
    st.HOOKS.clear()
    yield
    st.HOOKS[:] = saved


def test_execute_ignores_the_variable_while_no_hook_is_installed(tmp_path, monkeypatch, clean_hooks):
    monkeypatch.setenv(faults.FAULT_VAR, "cutover:checkout-target:fail-before")
    plan, ctx = ctx_for(tmp_path, StubIO())
    assert st.execute(step(plan, "checkout-target"), ctx).detail == "exit 0"


def test_nothing_is_installed_without_the_variable(monkeypatch, clean_hooks):
    monkeypatch.delenv(faults.FAULT_VAR, raising=False)
    assert faults.install_from_env() is False and st.HOOKS == []
    monkeypatch.setenv(faults.FAULT_VAR, "cutover:migrate:fail-after")
    assert faults.install_from_env() and faults.install_from_env() and [faults.inject] == st.HOOKS, "once"


@pytest.mark.parametrize("mode, applied", [("fail-before", False), ("fail-after", True)])
def test_an_installed_fault_fails_the_named_step_as_its_own_class(tmp_path, monkeypatch, clean_hooks, mode, applied):
    monkeypatch.setenv(faults.FAULT_VAR, f"backup:manifest:hold-after,cutover:checkout-target:{mode}")
    faults.install_from_env()
    plan, ctx = ctx_for(tmp_path, StubIO())
    with pytest.raises(CheckoutFailed, match=f"injected fault cutover:checkout-target:{mode}"):
        st.execute(step(plan, "checkout-target"), ctx)
    assert any("checkout" in argv for argv in ctx.io.commands) is applied
    assert ctx.journal.record("checkout-target").state == "failed"
    st.execute(step(plan, "stop-writers"), ctx)  # any other step runs as usual


def test_hold_after_waits_after_the_change_until_the_marker_is_deleted(tmp_path, monkeypatch, clean_hooks):
    marker = tmp_path / "marker"
    monkeypatch.setenv(faults.FAULT_VAR, "cutover:checkout-target:hold-after")
    monkeypatch.setenv(faults.MARKER_VAR, str(marker))
    faults.install_from_env()
    plan, ctx = ctx_for(tmp_path, StubIO())
    seen = {}

    def release():
        while not marker.exists():
            time.sleep(0.01)
        seen["text"], seen["state"] = marker.read_text(), ctx.journal.record("checkout-target").state
        seen["applied"] = any("checkout" in argv for argv in ctx.io.commands)
        marker.unlink()

    helper = threading.Thread(target=release)
    helper.start()
    st.execute(step(plan, "checkout-target"), ctx)
    helper.join(5)
    assert seen == {"text": "cutover:checkout-target:hold-after", "state": "started", "applied": True}, \
        "held after the change, before the journal records it done"
    assert ctx.journal.record("checkout-target").state == "done"
