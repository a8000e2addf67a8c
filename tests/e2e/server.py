"""What the end-to-end tests leave on the Prefect server they use, found and removed by name.

Every stack a test makes has a name of its own (`e2e-<hex>`), and everything the tests and the flows create for it
carries that name: its stack-environment block (and variants such as `<name>-tiny`), the global concurrency limit
`stackshift-<name>`, the served deployments `upgrade-<name>`/`recover-<name>` and the automation `stackshift:
recover <name> after a crash`. `remove` deletes them all when the stack goes; `SESSION` keeps the names this test
session made, for the session-end check (tests/e2e/conftest.py) that fails if any is still there.
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
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

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
    return list(dict.fromkeys(out))


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
    else:
        client.delete_global_concurrency_limit_by_name(name)
