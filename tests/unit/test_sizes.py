"""Sizes that keep the product code readable: no function over 60 lines, no `core` module over 400 lines."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "blocks", "tasks", "flows", "deployments", "cli")
MAX_FUNCTION_LINES = 60
MAX_CORE_MODULE_LINES = 400


def product_files() -> list[Path]:
    return sorted(p for pkg in PRODUCT for p in (ROOT / pkg).rglob("*.py"))


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """`file:line name (N lines)` of each function or method longer than `limit` lines, its docstring included."""
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > limit]


def test_no_function_is_over_60_lines():
    assert [f for p in product_files() for f in long_functions(p)] == []


def test_no_core_module_is_over_400_lines():
    assert [f"{p.relative_to(ROOT)} ({n} lines)" for p in product_files()
            if p.parts[len(ROOT.parts)] == "core"
            and (n := len(p.read_text().splitlines())) > MAX_CORE_MODULE_LINES] == []


def test_a_61_line_function_is_reported():
    path = ROOT / "tests" / "unit" / "_long_function_sample.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    path.write_text(f"def sample():\n{body}\n")
    try:
        assert long_functions(path) == ["tests/unit/_long_function_sample.py:1 sample (61 lines)"]
    finally:
        path.unlink()
