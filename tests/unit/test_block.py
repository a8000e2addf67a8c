"""The stack-environment block follows Prefect's block conventions (BlockStandardTestSuite's checks, minus the
logo download) and keeps its secrets secret."""
from pydantic import SecretStr

from blocks.stack_environment import StackEnvironment


def test_block_metadata_and_field_descriptions():
    assert StackEnvironment._block_type_slug == "stack-environment"
    assert StackEnvironment.get_description() and StackEnvironment._documentation_url
    assert ".load(" in StackEnvironment.get_code_example()
    for name, field in StackEnvironment.model_fields.items():
        assert field.description and field.description.endswith("."), name


def test_secrets_are_secretstr_and_never_shown():
    blk = StackEnvironment(compose_dir="/srv/x", project_name="x", db_name="app", db_user="app",
                           db_password="pw-very-secret", backup_dir="/b", registry_password="reg-secret")
    assert isinstance(blk.db_password, SecretStr) and isinstance(blk.registry_password, SecretStr)
    for text in (repr(blk), str(blk), blk.model_dump_json()):
        assert "pw-very-secret" not in text and "reg-secret" not in text
