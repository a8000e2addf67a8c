from deployments.serve import automation_name, recover_deployment, upgrade_deployment


def test_one_deployment_per_environment_asking_only_for_the_target_with_no_cancelling_lease():
    dep = upgrade_deployment("prod")
    assert dep.name == "upgrade-prod"
    assert dep.parameters == {"environment": "prod", "dry_run": False}
    assert dep.concurrency_limit is None, "a deployment limit's lost lease would cancel a running cutover"
    schema = dep._parameter_openapi_schema.model_dump()
    assert schema["required"] == ["environment", "target"]
    assert "release" in schema["properties"]["target"]["description"], "the UI form explains the field"


def test_the_migration_risk_and_env_conflict_overrides_are_explained_unticked_checkboxes():
    props = upgrade_deployment("prod")._parameter_openapi_schema.model_dump()["properties"]
    for name, needle in (("accept_migration_risk", "report"), ("accept_env_conflicts", "profiles")):
        assert props[name]["default"] is False and needle in props[name]["description"]


def test_the_recover_deployment_names_the_automation_that_starts_it():
    dep = recover_deployment("prod")
    assert dep.name == "recover-prod" and dep.parameters == {"environment": "prod"}
    assert automation_name("prod") in dep.description
