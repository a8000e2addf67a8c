"""What the end-to-end tests leave on the Prefect server they use, found and removed by name.

Every stack a test makes has a name of its own (`e2e-<hex>`), and everything the tests and the flows create for it
carries that name: its stack-environment block (and variants such as `<name>-tiny`), the global concurrency limit
`stackshift-<name>`, the served deployments `upgrade-<name>`/`recover-<name>` and the automation `stackshift:
recover <name> after a crash`, its flow runs (tagged with it, a promotion's with both its environments, and named
after it) with their artifacts and logs. `remove` deletes them all when the stack goes; `SESSION` keeps the names
this test session made, for the session-end check (tests/e2e/conftest.py) that fails if any is still there.
What stays is the server's event feed (it has no delete; the server drops events after its retention period).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import suppress

SESSION: set[str] = set()
PAGE = 200  # the server's largest page


def _pages(read) -> Iterator:
    offset = 0
    while True:
        page = read(PAGE, offset)
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE


def found(names: Iterable[str]) -> list[tuple[str, str, object]]:
    """(kind, name, id) of every deployment, automation, block, variable and global concurrency limit whose name
    contains one of `names`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterKey, DeploymentFilter,
                                                DeploymentFilterName)

    names = [n for n in names if n]
    if not names:
        return []

    def ours(name: str | None) -> bool:
        return bool(name) and any(n in name for n in names)

    out: list[tuple[str, str, object]] = []
    with get_client(sync_client=True) as client:
        for n in names:
            for d in client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(like_=n))):
                out.append(("deployment", d.name, d.id))
        out += [("automation", a.name, a.id) for a in _pages(lambda lim, off: client.read_automations(
            limit=lim, offset=off)) if ours(a.name)]
        out += [("block", b.name, b.id) for b in _pages(lambda lim, off: client.read_block_documents(
            limit=lim, offset=off, include_secrets=False)) if ours(b.name)]
        out += [("variable", v.name, v.id) for v in client.read_variables(limit=PAGE) if ours(v.name)]
        out += [("concurrency limit", c.name, c.id) for c in _pages(
            lambda lim, off: client.read_global_concurrency_limits(limit=lim, offset=off)) if ours(c.name)]
        out += [("flow run", r.name, r.id) for r in _flow_runs(client, names)]
        out += [("artifact", a.key, a.id) for n in names for a in _pages(lambda lim, off, n=n: client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=n)), limit=lim, offset=off))]
    return list(dict.fromkeys(out))


def _flow_runs(client, names: list[str]) -> list:
    """The flow runs tagged with one of `names` (its upgrades, recoveries, status runs, promotions) or named after
    one (a variant such as `<name>-tiny`), oldest first."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterTags

    runs = {r.id: r for r in _pages(lambda lim, off: client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(any_=names)), limit=lim, offset=off))}
    for n in names:
        runs |= {r.id: r for r in _pages(lambda lim, off, n=n: client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=n)), limit=lim, offset=off))}
    return sorted(runs.values(), key=lambda r: r.created)


SERVED = ("deployment", "automation")  # what `deployments.serve` registers for an environment


def remove(*names: str, kinds: tuple[str, ...] | None = None) -> None:
    """Deletes everything `found` for these names, or only its `kinds` (a failure to delete one does not stop the
    others). A serving process's teardown passes SERVED: the environment's block belongs to its stack, which may
    outlive the serving (a module's stack shared by several tests)."""
    from prefect.client.orchestration import get_client

    SESSION.update(names)
    with get_client(sync_client=True) as client:
        for kind, name, id_ in found(names):
            if kinds is not None and kind not in kinds:
                continue
            with suppress(Exception):
                _delete(client, kind, name, id_)


def _delete(client, kind: str, name: str, id_) -> None:
    if kind == "deployment":
        client.delete_deployment(id_)
    elif kind == "automation":
        client.delete_automation(id_)
    elif kind == "block":
        client.delete_block_document(id_)
    elif kind == "variable":
        client.delete_variable_by_name(name)
    elif kind == "flow run":
        _delete_flow_run(client, id_)
    elif kind == "artifact":
        client.delete_artifact(id_)
    else:
        client.delete_global_concurrency_limit_by_name(name)


def _delete_flow_run(client, flow_run_id) -> None:
    """A flow run, after its artifacts (the server keeps them when their run goes; its task runs and logs go with
    it)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    artifacts = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    for artifact in list(_pages(lambda lim, off: client.read_artifacts(artifact_filter=artifacts, limit=lim,
                                                                        offset=off))):
        with suppress(Exception):
            client.delete_artifact(artifact.id)
    client.delete_flow_run(flow_run_id)
