"""What a person reads in the Prefect UI: run names and tags, the forms, and the artifacts' texts."""
from __future__ import annotations

from types import SimpleNamespace
from uuid import uuid4

import pytest

from core import promotion, report
from core.cutover.plan import build_plan
from core.errors import NotARelease
from flows import naming
from tests.unit.test_plan import facts


# --- names and tags ---------------------------------------------------------------------------------------------
def test_runs_are_named_environment_arrow_target_and_a_plan_says_so():
    assert naming.upgrade_name("prod", "v2.0.0") == "prod → v2.0.0"
    assert naming.upgrade_name("prod", "v2.0.0", dry_run=True) == "prod → v2.0.0 (plan)"
    assert naming.upgrade_name("prod", "v2.0.0", outcome=naming.ROLLED_BACK) == "prod → v2.0.0 (rolled back)"
    assert naming.promotion_name("v2.0.0") == "promote v2.0.0"
    assert naming.promotion_name("v2.0.0", "rejected by alice") == "promote v2.0.0: rejected by alice"
    assert naming.promotion_name(None) == "promote (release staging verified)"


def test_tags_name_the_environment_a_dry_run_a_promotion_and_the_origin():
    assert naming.run_tags("prod", dry_run=True, origin="ui") == ["prod", "dry-run", "ui"]
    assert naming.run_tags("staging", promotion=True) == ["staging", "promotion"]
    assert naming.run_tags(None, promotion=True, origin="schedule") == ["promotion", "schedule"]
    assert naming.run_tags("staging", "prod", promotion=True) == ["staging", "prod", "promotion"]


def run(**over):
    base = dict(tags=[], deployment_id=uuid4(), auto_scheduled=False, created_by=None, parent_task_run_id=None)
    return SimpleNamespace(**(base | over))


def test_the_origin_of_a_run_is_read_from_what_the_server_knows():
    assert naming.origin_of(run(deployment_id=None)) == "cli", "the CLI calls the flow itself"
    assert naming.origin_of(run(auto_scheduled=True)) == "schedule"
    assert naming.origin_of(run(created_by=SimpleNamespace(type="AUTOMATION"))) == "automation"
    assert naming.origin_of(run(parent_task_run_id=uuid4())) == "promotion"
    assert naming.origin_of(run(tags=["cli"])) == "cli", "the CLI's --via-deployment tags its run"
    assert naming.origin_of(run()) == "ui"
    assert naming.origin_of(run(tags=["stackshift", "promotion"])) == "ui", "a promote deployment's tag, no parent"


# --- forms --------------------------------------------------------------------------------------------------------
def test_the_approval_forms_fingerprint_is_required_and_explained():
    from prefect._internal.pydantic.v2_schema import create_v2_schema

    from tasks.promotion import Approval

    form = Approval.with_initial_data(description="summary")  # as the promotion pauses
    schema = create_v2_schema(form.__name__, model_base=form)  # what the pause stores and the UI renders
    assert "fingerprint" in schema["required"], "the UI shows a field not in `required` as (Optional)"
    assert "default" not in schema["properties"]["fingerprint"], "the UI would not send a pre-filled value"
    assert "summary" in schema["properties"]["fingerprint"]["description"]


def test_a_target_that_is_no_release_tag_is_refused_with_the_release_tags():
    tags = ["v1.0.0", "v10.0.0", "v2.0.0", "v3.0.0-rc1", "main-snapshot"]
    assert promotion.releases_newest_first(tags) == ["v10.0.0", "v2.0.0", "v1.0.0"]
    msg = str(NotARelease("v9.9.9", promotion.releases_newest_first(tags), "/srv/stack"))
    assert "'v9.9.9'" in msg and "v10.0.0, v2.0.0, v1.0.0" in msg and "nothing was changed" in msg


def test_the_promotions_release_is_the_one_staging_verified():
    rows = [{"service": "api", "digest": "r@sha256:1", "release": "v2.0.0"},
            {"service": "db", "digest": "r@sha256:2", "release": "v2.0.0"}]
    assert promotion.verified_release(rows) == "v2.0.0"
    assert promotion.verified_release([]) is None, "staging verified nothing: no release is guessed"
    assert promotion.verified_release(rows[:1] + [rows[1] | {"release": "v1.0.0"}]) is None


def test_the_promotion_form_asks_for_no_deployment_name():
    import inspect

    from flows.promote import promote

    assert set(inspect.signature(promote.fn).parameters) == {
        "release", "staging", "prod", "approval_timeout_minutes", "run_timeout_minutes"}


def test_an_upgrade_deployments_environment_is_its_names(monkeypatch):
    from core.errors import NotADeployedEnvironment
    from flows import upgrade

    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__NAME", "upgrade-prod")
    assert upgrade.deployed_environment() == "prod"
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__NAME", "promotion-prod")
    with pytest.raises(NotADeployedEnvironment):
        upgrade.deployed_environment()


# --- artifacts ----------------------------------------------------------------------------------------------------
def test_the_plan_is_in_words_without_class_names_or_commands():
    plan = build_plan(facts(), "run1")
    md = report.plan_markdown(plan)
    for step in plan.backup + plan.cutover + plan.verify + plan.rollback:
        assert f"_{type(step).__name__}_" not in md, type(step).__name__
    assert "--project-directory" not in md and "pg_dump --host" not in md, "no argv"
    assert "Start the database" in md and "commands of every step are in the run's logs" in md
    assert any("docker" in line and "compose" in line for line in report.plan_commands(plan))


ROWS = [
    {"key": "LOG_LEVEL", "category": "customized", "before": "DEBUG", "after": "DEBUG", "new_default": "INFO"},
    {"key": "OLD_FLAG", "category": "dropped", "before": "1", "after": "(unset)", "new_default": "(unset)"},
    {"key": "NEW_URL", "category": "added", "before": "(unset)", "after": "http://x", "new_default": "http://x"},
    {"key": "API_KEY", "category": "default_moved", "before": "(secret)", "after": "(secret)",
     "new_default": "(secret)"},
]


def test_the_env_diff_shows_changes_first_marked_plus_minus_tilde():
    md = report.env_markdown("prod", ROWS, {"unchanged": 12})
    changes, kept = md.split("## Changes")[1].split("## Kept as they are")
    assert [line.split("|")[1].strip() for line in changes.splitlines() if line.startswith("| **")] == [
        "**+**", "**~**", "**-**"]
    assert "`NEW_URL`" in changes and "`API_KEY`" in changes and "`OLD_FLAG`" in changes
    assert "`LOG_LEVEL`" in kept and "LOG_LEVEL" not in changes
    assert "**3 change(s)** to the .env: 1 added, 1 changed, 1 dropped; 1 key(s)" in md and "12 unchanged" in md
    assert "default_moved" not in md, "categories in words"


def test_the_progress_artifact_says_the_step_and_whether_the_service_is_down():
    from core.cutover import steps as st
    from tasks.steps import progress_text

    plan = build_plan(facts(), "run1")
    cutover, verify = plan.cutover[0], plan.verify[-1]
    assert "step 1 of 9" in progress_text("prod", 0, 9, cutover) and "DOWN" in progress_text("prod", 0, 9, cutover)
    assert cutover.title in progress_text("prod", 0, 9, cutover)
    assert verify.phase == st.Phase.VERIFY and "service is up" in progress_text("prod", 8, 9, verify)
    assert "all 9 steps done" in progress_text("prod", 9, 9, None)


def test_the_dashboard_lists_every_environment_with_its_version_and_last_run():
    md = report.dashboard_markdown([
        {"environment": "prod", "version": "v2.0.0", "commit": "a" * 40, "revision": "r2", "run": "prod → v2.0.0",
         "url": "http://ui/runs/flow-run/1", "outcome": "Completed", "when": "2026-12-04 22:00 UTC"},
        {"environment": "staging", "version": None, "commit": None, "revision": None, "run": None, "url": None,
         "outcome": None, "when": None}])
    assert "| **prod** | v2.0.0 | `aaaaaaaaaaaa` | r2 | [prod → v2.0.0](http://ui/runs/flow-run/1) | Completed |" in md
    assert "| **staging** | — | — | — | — | — | — |" in md
