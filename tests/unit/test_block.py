"""The stack-environment block follows Prefect's block conventions (BlockStandardTestSuite's checks, minus the
logo download) and keeps its secrets secret."""
import json

import pytest
from pydantic import SecretStr, ValidationError

from core.settings import Settings

from blocks.stack_environment import StackEnvironment


def test_block_metadata_and_field_descriptions():
    assert StackEnvironment._block_type_slug == "stack-environment"
    assert StackEnvironment.get_description()
    assert StackEnvironment._logo_url is None and StackEnvironment._documentation_url is None, \
        "nothing in the UI that needs the internet or points nowhere"
    assert ".load(" in StackEnvironment.get_code_example()
    for name, field in StackEnvironment.model_fields.items():
        assert field.description and field.description.endswith("."), name


def test_secrets_are_secretstr_and_never_shown():
    blk = StackEnvironment(compose_dir="/srv/x", project_name="x", db_name="app", db_user="app",
                           db_password="pw-very-secret", backup_dir="/b", registry_password="reg-secret")
    assert isinstance(blk.database.password, SecretStr) and isinstance(blk.registry.password, SecretStr)
    for text in (repr(blk), str(blk), blk.model_dump_json()):
        assert "pw-very-secret" not in text and "reg-secret" not in text


def test_the_fields_are_groups_each_a_sub_form_with_its_secrets_masked():
    schema = StackEnvironment.model_json_schema()
    assert set(StackEnvironment.model_fields) == {"stack", "database", "writers", "migration", "health", "registry",
                                                  "rollback_point", "backup", "command_timeout_seconds"}
    assert set(schema["secret_fields"]) == {"database.password", "registry.password", "migration.rehearsal.env.*"}
    for group in ("stack", "database", "migration", "backup"):
        for name, field in StackEnvironment.model_fields[group].annotation.model_fields.items():
            assert field.description and field.description.endswith("."), f"{group}.{name}"


def test_an_old_flat_block_loads_into_the_groups():
    old = StackEnvironment(compose_dir="/srv/x", project_name="x", db_name="app", db_user="app", db_password="pw",
                           backup_dir="/b", registry="r.example", registry_username="bot", rollback_point="pitr",
                           rehearsal_command=["mig", "{database}"], migration_switch=None, backup_retention=2)
    s = old.settings()
    assert (s.stack.project_name, s.database.name, s.registry.host, s.registry.username) == ("x", "app", "r.example",
                                                                                             "bot")
    assert (s.rollback_point.method, s.migration.rehearsal.command, s.migration.switch, s.backup.retention) == (
        "pitr", ("mig", "{database}"), None, 2)
    grouped = StackEnvironment(stack={"compose_dir": "/srv/x", "project_name": "x"},
                               database={"name": "app", "user": "app", "password": "pw"}, backup={"dir": "/b"},
                               registry={"host": "r.example", "username": "bot"}, rollback_point={"method": "pitr"},
                               migration={"switch": None, "rehearsal": {"command": ["mig", "{database}"]}})
    assert grouped.settings().model_dump(exclude={"backup"}) == s.model_dump(exclude={"backup"})


def test_settings_are_frozen_and_their_snapshot_holds_no_secret():
    s = StackEnvironment(compose_dir="/srv/x", project_name="x", db_name="app", db_user="app",
                         db_password="pw-very-secret", backup_dir="/b", registry_password="reg-secret",
                         rehearsal_env={"URL": "postgresql://u:rehearsal-secret@db/{database}"}).settings()
    with pytest.raises(ValidationError):
        s.database.name = "other"  # type: ignore[misc]
    text = json.dumps(s.snapshot())
    for secret in ("pw-very-secret", "reg-secret", "rehearsal-secret"):
        assert secret not in text
    again = Settings.from_snapshot(json.loads(text), secrets_of=s)
    assert again == s, "a run's snapshot plus the block's secrets is exactly what the run used"


@pytest.mark.parametrize("page", ["README.md", "docs/operator-guide.md"])
def test_the_docs_block_example_builds_the_settings_it_says(page):
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / page).read_text()
    start = text.index("StackEnvironment(\n    stack=")
    example = text[start:text.index(').save("prod")', start) + 1]
    s = eval(example, {"StackEnvironment": StackEnvironment}).settings()  # noqa: S307 (the page's own text)
    assert (s.stack.compose_dir.as_posix(), s.database.name, s.migration.command) == (
        "/opt/dify/docker", "dify", ("flask", "upgrade-db"))
    assert s.health.http_checks[0].expect_version_field == "version"
    if page != "README.md":  # the full example: every group
        assert s.registry.password is not None


def test_a_missing_block_and_an_unreadable_one_are_told_apart(monkeypatch):
    """`load_environment` names a block that does not exist UnknownEnvironment and one whose saved fields do not
    validate EnvironmentBlockUnreadable, with the field. Prefect's `load` is replaced (no server in this tier) by one
    raising what the real one raises: ValueError from ObjectNotFound, and pydantic's ValidationError."""
    import pytest
    from prefect.exceptions import ObjectNotFound

    from blocks.stack_environment import StackEnvironment
    from core.errors import EnvironmentBlockUnreadable, UnknownEnvironment
    from flows.upgrade import load_environment

    reads = []

    def not_found(name):
        reads.append(name)
        try:
            raise ObjectNotFound(http_exc=Exception("404"))
        except ObjectNotFound as e:
            raise ValueError(f"Unable to find block document named {name}") from e

    monkeypatch.setattr(StackEnvironment, "load", staticmethod(not_found))
    with pytest.raises(UnknownEnvironment):
        load_environment("nope")
    assert reads == ["nope"]

    def invalid(name):
        StackEnvironment(stack={"compose_dir": 12}, database={}, backup={})

    monkeypatch.setattr(StackEnvironment, "load", staticmethod(invalid))
    with pytest.raises(EnvironmentBlockUnreadable, match="stack"):
        load_environment("broken")
