"""The product code's imports read top-down: no cycle, and no module imports from a layer above its own.

Walks every module's `import`/`from … import` statements with `ast` (function-level imports included; imports under
`if TYPE_CHECKING:` are annotations only and left out, as Alembic does). The layers, lowest first:

| rank | packages | what they are |
|---|---|---|
| 0 | core.errors, core.parallel, core.hosts, core.files, core.polling, core.settings | the foundation |
| 1 | core.io | commands as data, the executor, compose/engine/database access |
| 2 | core.env, core.migrations | siblings, neither imports the other: env files; revisions, SQL rules, forecasts |
| 2 | core.discovery | what `init` proposes from a compose config (a sibling of the two above, apart from them) |
| 3 | core.stackio | the typed I/O port over the layers below |
| 4 | core.backup | backup bundle, restore drill, rollback point methods |
| 5 | core.cutover | the plan, its steps, pre-flight, journal, lock, recovery |
| 6 | core.report | what people read |
| 7 | core.promotion | a feature over the core: never imported by it |
| 8 | blocks | typed configuration |
| 9 | tasks | Prefect tasks |
| 10 | flows | Prefect flows |
| 11 | deployments | serving and automations |
| 12 | cli | the command line |
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "blocks", "tasks", "flows", "deployments", "cli")
RANKS = {
    "core": 0, "core.errors": 0, "core.parallel": 0, "core.hosts": 0, "core.files": 0, "core.polling": 0,
    "core.settings": 0,
    "core.io": 1, "core.env": 2, "core.migrations": 2, "core.discovery": 2, "core.stackio": 3, "core.backup": 4,
    "core.cutover": 5,
    "core.report": 6, "core.promotion": 7, "blocks": 8, "tasks": 9, "flows": 10, "deployments": 11, "cli": 12,
}
DOMAINS = {"core.env", "core.migrations", "core.discovery"}  # one rank, but apart: none imports another


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """The longest RANKS key that is the module or a package holding it."""
    keys = [k for k in RANKS if module == k or module.startswith(k + ".")]
    assert keys, f"{module} belongs to no layer: add it to RANKS (and to the table above)"
    return max(keys, key=len)


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(path: Path, modules: set[str]) -> set[str]:
    """The product modules `path` imports (a `from package import module` names the module)."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] in PACKAGES)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            out.update(subs or {node.module})
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    modules = set(files)
    return {m: {i for i in imports(p, modules) if i != m and i in modules} for m, p in files.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, from where it was entered)."""
    found, state = [], {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = "done"

    for start in sorted(g):
        if start not in state:
            walk(start, [start])
    return found


def test_the_product_code_has_no_import_cycle():
    assert cycles(graph()) == []


def test_no_module_imports_from_a_layer_above_its_own_or_from_a_sibling_domain():
    wrong = []
    for module, deps in sorted(graph().items()):
        mine = layer(module)
        for dep in sorted(deps):
            theirs = layer(dep)
            if RANKS[theirs] > RANKS[mine] or (theirs != mine and {theirs, mine} <= DOMAINS):
                wrong.append(f"{module} ({mine}, rank {RANKS[mine]}) imports {dep} ({theirs}, rank {RANKS[theirs]})")
    assert wrong == []


def test_the_walk_sees_a_cycle_and_a_climb():
    """The checks above can fail: a planted cycle is found, and a planted upward import is classed as one."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert RANKS[layer("core.cutover.plan")] > RANKS[layer("core.io.commands")]
    assert layer("core.promotion") == "core.promotion" and RANKS["core.promotion"] > RANKS["core.cutover"]
