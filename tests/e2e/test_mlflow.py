"""A real application nobody here wrote: an MLflow tracking server (PyPI wheels, PostgreSQL 15, artifacts proxied
into a volume), seeded through MLflow's own client, upgraded 3.6.0 → 3.17.2 by the upgrade flow with a block and
nothing MLflow-specific in stackshift.

One seeded stack serves the module, in order: first an upgrade to a release whose health check cannot pass, rolled
back to 3.6.0; then the real upgrade to 3.17.2. Everything MLflow's client lists (experiments, runs, params, tags,
every metric's history, artifacts with their bytes' sha256) is compared through the client, run in a one-off
container of the server's image of the moment.
"""
import re
import shutil
import secrets
import subprocess

import pytest

from blocks.stack_environment import StackEnvironment
from core.errors import HealthCheckFailed
from flows.upgrade import upgrade
from lab.mlflow import build
from lab.mlflow import stack as mlstack
from lab.mlflow.releases import HEADS
from tests.e2e import server
from tests.e2e.helpers import artifacts

# One worker runs the module (lab/test runs tests in parallel): one seeded stack, the failed upgrade first.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("mlflow")]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    build.ensure()  # waits for the test command's background build, or builds (idempotent)
    name = "e2e-mlflow-" + secrets.token_hex(3)
    server.SESSION.add(name)
    root = tmp_path_factory.mktemp(name)
    dep = mlstack.create(root, name, "3.6.0", experiments=2, runs=3, metric_rows=1200)
    # the forecast's probe is not what these tests are about (the migration tests cover it); FILE_COPY like the
    # other e2e tests, so the path does not depend on the machine's load
    StackEnvironment(**(dep.block_fields() | {"migration_probe": False, "rollback_point": "file-copy"})).save(
        name, overwrite=True)
    try:
        yield dep, dep.listing()
    finally:
        dep.down()
        shutil.rmtree(root, ignore_errors=True)
        server.remove(name)  # its block and concurrency limit


def _revision(dep) -> list[str]:
    with dep.connect() as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def _databases(dep) -> set[str]:
    with dep.connect("postgres") as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")}


def _head(dep) -> str:
    return subprocess.run(["git", "-C", str(dep.compose_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_failed_health_rolls_back_to_3_6_0_with_identical_data(seeded):
    dep, before = seeded
    assert sum(len(r["metric_histories"]["loss"]) for e in before["experiments"] for r in e["runs"]) == 600
    commit = _head(dep)

    state = upgrade(environment=dep.name, target="3.17.2-broken", return_state=True)

    assert state.is_failed()
    with pytest.raises(HealthCheckFailed) as raised:
        state.result()
    message = str(raised.value)
    assert "server" in message and "unhealthy" in message, message
    assert _head(dep) == commit
    assert _revision(dep) == [HEADS["3.6.0"]], "the 3.17.2 schema was put back to the rollback point"
    assert dep.get("/version") == (200, "3.6.0") and dep.get("/health") == (200, "OK")
    assert dep.listing() == before
    assert _databases(dep) == {"postgres", "mlflow"}, "no rollback point, failed state or rehearsal database left"


def test_upgrade_3_6_0_to_3_17_2_keeps_everything_the_client_lists(seeded):
    dep, before = seeded

    result = upgrade(environment=dep.name, target="3.17.2")

    assert _revision(dep) == [HEADS["3.17.2"]]
    assert dep.get("/health") == (200, "OK") and dep.get("/version") == (200, "3.17.2")
    after = dep.listing()  # MLflow 3.17.2's own client, in a container of the new image
    assert after == before
    assert _databases(dep) == {"postgres", "mlflow"}, "the rehearsal database and the rollback point are dropped"
    assert result["downtime"]["total"] > 0

    sources = result["migrations"]["sources"]
    assert len(sources["rehearsed"]) == 27 and sources["not_analysed"] == []
    assert sources["analysed_from"] == "rehearsal" and sources["rehearsal"]["dropped"]
    assert 0 < len(sources["rendered"]) < 27, (
        "MLflow's offline rendering stops at a revision that inspects the database")
    report = artifacts(f"{dep.name}-migrations")[f"{dep.name}-migrations"]
    rows = re.findall(r"^\| \d+ \| `([0-9a-f]+)` \| (yes|\*\*no\*\*) \| (yes|no) \|$", report, re.M)
    assert len(rows) == 27 and all(rehearsed == "yes" for _, _, rehearsed in rows)
    assert "27 rehearsed" in report
    # the blocking index build on metrics, and primary keys dropped and re-added, each with its lock
    assert re.search(r"^\| \d+ \| \d+ \| \w+ \| metrics \| SHARE \| \*\*scan\*\* \| MS012", report, re.M), report
    for table, pk in [("registered_models", "registered_model_pk"), ("model_versions", "model_version_pk")]:
        assert re.search(rf"\| {table} \| ACCESS EXCLUSIVE \|[^\n]*`ALTER TABLE {table} DROP CONSTRAINT {pk}`", report)
        assert re.search(rf"\| {table} \| ACCESS EXCLUSIVE \| \*\*scan\*\* \| MS011[^\n]*`ALTER TABLE {table} ADD "
                         rf"CONSTRAINT {pk} PRIMARY KEY", report), report
