"""Bad input is refused before anything changes: one test per pre-flight error, each comparing a full snapshot."""
import subprocess
from contextlib import contextmanager

import pytest

from blocks.stack_environment import StackEnvironment
from core.errors import (ComposeDirDirty, DatabaseUnreachable, ImageMissing, InvalidComposeFile, MigrationRiskTooHigh,
                         UnknownDatabaseRevision, UnknownEnvironment, UnknownRef)
from flows.upgrade import upgrade
from tests.e2e.helpers import artifacts, snapshot

# One worker runs the module (lab/test runs tests in parallel): one deployment serves every refusal.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("preflight-errors")]


@pytest.fixture(scope="module")
def deployment(make_module_deployment):
    """One v1 deployment shared by the tests here: none of them may change it."""
    dep = make_module_deployment(rows=5_000)
    _publish_bad_releases(dep)
    return dep


def _publish_bad_releases(dep) -> None:
    """Tags in the deployment's repository: a compose file that does not parse, and one naming a missing image."""
    work = dep.compose_dir.parent / "release-work"
    subprocess.run(["git", "clone", "-q", str(dep.compose_dir), str(work)], check=True)
    ident = ["-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    for tag, edit in (
        ("bad-compose", lambda s: s.replace("services:", "services:\n  broken: [unclosed", 1)),
        ("missing-image", lambda s: s.replace("/demo/app:1.0.0", "/demo/app:9.9.9")),
    ):
        subprocess.run(["git", "-C", str(work), "checkout", "-q", "v1.0.0"], check=True)
        path = work / "docker-compose.yaml"
        path.write_text(edit(path.read_text()))
        subprocess.run(["git", *ident, "-C", str(work), "commit", "-qam", tag], check=True)
        subprocess.run(["git", "-C", str(work), "tag", tag], check=True)
        subprocess.run(["git", "-C", str(work), "push", "-q", "origin", f"refs/tags/{tag}"], check=True)


def _refused(dep, error, environment=None, target="v2.0.0", needle=None):
    before = snapshot(dep)
    with pytest.raises(error) as raised:
        upgrade(environment=environment or dep.name, target=target)
    assert snapshot(dep) == before, "a refused upgrade must change nothing"
    assert dep.db_password not in str(raised.value)
    if needle:
        assert needle in str(raised.value)
    return raised.value


def test_unknown_environment(deployment):
    # named after the module's stack: the refused run's flow run goes with the stack's other runs
    _refused(deployment, UnknownEnvironment, environment=f"{deployment.name}-no-such-env", needle="prefect block ls")


def test_unknown_ref(deployment):
    _refused(deployment, UnknownRef, target="v7.7.7", needle="fetch --tags")


def test_invalid_compose_file(deployment):
    _refused(deployment, InvalidComposeFile, target="bad-compose")


def test_missing_image_in_registry(deployment):
    _refused(deployment, ImageMissing, target="missing-image", needle="demo/app:9.9.9")


@contextmanager
def _variant(deployment, suffix: str, **override):
    """Another stack-environment block for the same deployment, with some fields changed."""
    name = f"{deployment.name}-{suffix}"
    StackEnvironment(**(deployment.block_fields() | override)).save(name, overwrite=True)
    try:
        yield name
    finally:
        from tests.e2e.conftest import _delete_block
        _delete_block(name)


@pytest.mark.parametrize("override, needle", [({"db_port": 1}, "127.0.0.1:1"),
                                              ({"db_password": "wrong-pw"}, "password")])
def test_unreachable_database(deployment, override, needle):
    with _variant(deployment, "bad-db", **override) as name:
        err = _refused(deployment, DatabaseUnreachable, environment=name, needle=needle)
        assert "wrong-pw" not in str(err)


def test_forecast_lock_hold_over_the_environments_limit(deployment):
    """v1→v2 rewrites `events` (int→bigint) and indexes it: with a 1 ms limit the plan stops, after the probe has
    run and dropped its scratch schema (the snapshot includes the schemas)."""
    with _variant(deployment, "strict", max_lock_seconds=0.001) as name:
        err = _refused(deployment, MigrationRiskTooHigh, environment=name, needle="writes to events would be blocked")
    assert err.reasons and all("limit 0.001 s" in r for r in err.reasons)
    md = artifacts(f"{name}-migrations")[f"{name}-migrations"]
    assert "Stopped before any change" in md and "| events |" in md and "MS001" in md


def test_database_revision_unknown_to_the_target(deployment):
    with deployment.connect() as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dfeedbeef'")
        conn.commit()
    try:
        _refused(deployment, UnknownDatabaseRevision, needle="f00dfeedbeef")
    finally:
        with deployment.connect() as conn:
            conn.execute("UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'")
            conn.commit()


def test_local_changes_to_tracked_files(deployment):
    compose = deployment.compose_dir / "docker-compose.yaml"
    original = compose.read_text()
    compose.write_text(original + "\n# local edit\n")
    try:
        before = snapshot(deployment)
        with pytest.raises(ComposeDirDirty, match="docker-compose.yaml"):
            upgrade(environment=deployment.name, target="v2.0.0")
        assert snapshot(deployment) == before
    finally:
        compose.write_text(original)
