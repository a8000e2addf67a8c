from prefect.client.schemas.objects import ConcurrencyLimitStrategy

from deployments.serve import upgrade_deployment


def test_one_locked_deployment_per_environment_asking_only_for_the_target():
    dep = upgrade_deployment("prod")
    assert dep.name == "upgrade-prod"
    assert dep.parameters == {"environment": "prod", "dry_run": False}
    assert dep.concurrency_limit == 1
    assert dep.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
    schema = dep._parameter_openapi_schema.model_dump()
    assert schema["required"] == ["environment", "target"]
    assert "release" in schema["properties"]["target"]["description"], "the UI form explains the field"


def test_the_migration_risk_override_is_an_explained_unticked_checkbox():
    prop = upgrade_deployment("prod")._parameter_openapi_schema.model_dump()["properties"]["accept_migration_risk"]
    assert prop["default"] is False and "report" in prop["description"]
