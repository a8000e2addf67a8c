from deployments.serve import automation_name, recover_deployment, upgrade_deployment


def test_one_deployment_per_environment_asking_only_for_the_target_with_no_cancelling_lease():
    dep = upgrade_deployment("prod")
    assert dep.name == "upgrade-prod"
    assert dep.parameters == {"dry_run": True}, "a person's prod run is a plan unless they untick dry_run"
    assert dep.concurrency_limit is None, "a deployment limit's lost lease would cancel a running cutover"
    schema = dep._parameter_openapi_schema.model_dump()
    assert schema["required"] == ["target"]
    assert "release" in schema["properties"]["target"]["description"], "the UI form explains the field"


def test_a_persons_upgrade_form_has_no_environment_and_no_internal_field():
    """The environment is the deployment's (its name); the promotion's pinned digests and approved fingerprint go
    through the internal `promotion-<host>` deployments only."""
    for env in ("prod", "staging", "qa"):
        props = upgrade_deployment(env)._parameter_openapi_schema.model_dump()["properties"]
        assert set(props) == {"target", "dry_run", "accept_migration_risk", "accept_env_conflicts", "force"}, env
    assert upgrade_deployment("staging").parameters == {"dry_run": False}


def test_the_migration_risk_and_env_conflict_overrides_are_explained_unticked_checkboxes():
    props = upgrade_deployment("prod")._parameter_openapi_schema.model_dump()["properties"]
    for name, needle in (("accept_migration_risk", "report"), ("accept_env_conflicts", "profiles")):
        assert props[name]["default"] is False and needle in props[name]["description"]


def test_the_recover_deployment_names_the_automation_that_starts_it():
    dep = recover_deployment("prod")
    assert dep.name == "recover-prod" and dep.parameters == {"environment": "prod"}
    assert automation_name("prod") in dep.description


def test_served_deployments_are_prefect_yamls_entries_without_the_pool():
    from deployments.serve import SERVED_KINDS, _prefect_yaml, to_deployment

    for entry in _prefect_yaml()["deployments"]:
        kind, env = entry["name"].split("-", 1)
        if kind not in SERVED_KINDS:
            continue
        dep = to_deployment(kind, env)
        assert (dep.name, dep.parameters, dep.description, sorted(dep.tags)) == (
            entry["name"], entry["parameters"], entry["description"], sorted(entry["tags"]))
        assert dep.work_pool_name is None, "served: runs in the serving process"


def test_an_environment_prefect_yaml_does_not_name_is_served_from_stagings_entries():
    from deployments.serve import deployment_spec

    spec = deployment_spec("upgrade", "qa")
    assert spec["name"] == "upgrade-qa" and spec["parameters"] == {"dry_run": False}
    assert "qa" in spec["tags"] and "staging" not in spec["tags"] and "staging" not in spec["description"]
    rec = recover_deployment("qa")
    assert rec.parameters == {"environment": "qa"} and automation_name("qa") in rec.description


def test_every_environment_of_prefect_yaml_has_a_status_deployment_on_its_own_pool():
    """A promotion runs on prod's host and asks staging's status deployment what staging runs: it must be on the
    same pool (the same host) as that environment's upgrades."""
    from deployments.serve import _prefect_yaml

    by_name = {d["name"]: d for d in _prefect_yaml()["deployments"]}
    envs = [name.removeprefix("upgrade-") for name in by_name if name.startswith("upgrade-")]
    assert envs
    for env in envs:
        status = by_name[f"status-{env}"]
        assert status["entrypoint"] == "flows/status.py:status" and status["parameters"] == {"environment": env}
        assert status["work_pool"] == by_name[f"upgrade-{env}"]["work_pool"]


def test_the_crash_automation_recovers_the_environment_the_crashed_run_named():
    """The server renders the recover run's parameters from the crashed run (Prefect's own hydration, as its
    RunDeployment action does): a run of upgrade-staging given environment=qa is recovered for qa."""
    from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

    from deployments.serve import run_environment

    def rendered(parameters: dict) -> dict:
        context = HydrationContext(render_jinja=True, jinja_context={"flow_run": {"parameters": parameters}})
        return hydrate({"environment": run_environment("staging")}, context)

    assert rendered({"environment": "qa", "target": "v2.0.0"}) == {"environment": "qa"}
    # a person's upgrade-staging run has no environment parameter (the deployment fixes it): staging
    assert rendered({"target": "v2.0.0"}) == {"environment": "staging"}


def test_an_upgrade_run_is_taken_for_dead_after_three_missed_heartbeats():
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from deployments.serve import silence_seconds

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        assert silence_seconds() == 90
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}):
        assert silence_seconds() == 540
