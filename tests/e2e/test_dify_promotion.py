"""A promotion between two Dify-faithful stacks (lab/dify): staging on the first engine, prod on the lab's prod
engine, both at 1.12.1 with the block `stackshift init` proposed. The promotion of 1.15.0 (the split layout)
upgrades staging, waits for the approval, is approved through the API with its fingerprint, then upgrades prod to
the digests staging ran, on the real deployments and workers (tests/e2e/test_promotion.py has the demo stack's
paths: rejection, stale approval, failed prod upgrade, the browser).
"""
from __future__ import annotations

import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab import stack
from lab.dify import build
from lab.dify import stack as dify
from lab.dify.releases import HEADS
from tasks.promotion import run_artifacts
from tests.e2e import server
from tests.e2e.test_dify import init_block
from tests.e2e.helpers import final
from tests.e2e.test_fault_matrix import journal_of
from tests.e2e.test_promotion import children, decide, paused, running_digests, start

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("dify-promotion")]
ROWS = 100  # the path is about runs, digests and env files, not data volume
RELEASE = "1.15.0"


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """Staging (first engine, host `staging`) and prod (prod engine, host `prod`) at 1.12.1, started side by side;
    afterwards both are removed, and nothing named after them is left on the Prefect server."""
    build.ensure()
    names = ["e2e-dify-" + secrets.token_hex(3) for _ in range(2)]
    server.SESSION.update(names)
    root = tmp_path_factory.mktemp("dify-promotion")
    engines = (None, stack.PROD_ENGINE)
    try:
        with ThreadPoolExecutor(2) as pool:
            staging, prod = pool.map(lambda n, e: dify.create(root, n, "1.12.1", rows=ROWS, docker_host=e),
                                     names, engines)
        init_block(staging, host="staging")
        init_block(prod, host="prod")
        yield staging, prod, dify.fingerprint(prod)
    finally:
        for name, engine in zip(names, engines, strict=True):  # by name: a stack whose start failed goes too
            dify.DifyDeployment(name, root / name, root, 0, 0, "", engine).down()
        shutil.rmtree(root, ignore_errors=True)
        server.remove(*names)
        assert server.found(names) == [], "the promotion left something on the Prefect server"


def test_promotion_of_the_split_release_puts_prod_on_stagings_digests(stacks):
    staging, prod, prod_rows = stacks
    t0 = time.monotonic()
    run = paused(start(staging, prod, RELEASE).id, 600)
    assert run.state.is_paused(), run.state
    print(f"\n[dify promotion] staging upgraded and prod planned in {time.monotonic() - t0:.1f} s")
    assert staging.revision() == [HEADS[RELEASE]] and prod.revision() == [HEADS["1.12.1"]], "prod waits"
    summary = run_artifacts(run.id)["promotion-summary"].data
    assert f"## Env changes on {prod.name}" in summary, summary  # the split layout's env files, for the approver
    assert "now defined by `envs/core-services/shared.env.example`" in summary, summary
    assert "| init_permissions | `127.0.0.1:5000/busybox@sha256:" in summary, "the one-shot job's image is pinned"

    decide(run.id, "approve", approver="e2e api")
    run = final(run.id, 600)
    assert run.state.is_completed() and run.state.name == "Completed", run.state
    print(f"[dify promotion] done in {time.monotonic() - t0:.1f} s; phases "
          f"{run_artifacts(run.id)['promotion-timeline'].data}")

    on_staging, on_prod = running_digests(staging, exited=True), running_digests(prod, exited=True)
    assert set(on_staging) == set(on_prod) and {"api", "init_permissions", "agent_backend"} <= set(on_prod), on_prod
    for service, digests in on_staging.items():
        assert set(digests) & set(on_prod[service]), f"{service}: prod runs {on_prod[service]}, staging {digests}"
    for dep in (staging, prod):
        assert dep.states()["init_permissions"] == ("exited", 0), dep.name
        assert (dep.health() or {}).get("version") == RELEASE, dep.name
        assert dep.revision() == [HEADS[RELEASE]]
        assert journal_of(dep).status == "completed", dep.name
    assert dify.fingerprint(prod) == prod_rows
    kids = children(run.id)
    assert sorted((c.parameters["environment"], bool(c.parameters.get("dry_run"))) for c in kids) == sorted(
        [(staging.name, False), (prod.name, True), (prod.name, False)]), [c.parameters for c in kids]
    assert all(c.state.is_completed() for c in kids), [c.state for c in kids]
