"""The docs hold together: every relative link resolves, the block reference is what the fields say, and the
errors table names every error stackshift raises."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").rglob("*.md")])
PRODUCT = ("core", "flows", "tasks", "blocks", "deployments", "cli")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (links there are examples, not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", re.sub(r"^```.*?^```", "", page.read_text(),
                                                               flags=re.M | re.S), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(page.read_text())) if not re.match(r"^[a-z][a-z+.-]*:", t)]


def test_the_pages_exist():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    for page in ("operator-guide", "block-reference", "promotion", "recovery", "env-sync", "migrations", "errors",
                 "lab", "testing", "architecture"):
        assert f"docs/{page}.md" in names
    assert "bench/README.md" in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert broken == []


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_block_reference_is_generated_from_the_fields():
    from lab.block_reference import PAGE, render

    assert PAGE.read_text() == render(), "docs/block-reference.md is stale: run `python -m lab.block_reference`"


def _error_classes() -> set[str]:
    """Every class of the product that derives from UpgradeError, wherever it is defined (read from the source)."""
    bases: dict[str, set[str]] = {}
    for top in PRODUCT:
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    bases[node.name] = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                                        for b in node.bases}
    errors = {"UpgradeError"}
    while more := {name for name, of in bases.items() if of & errors} - errors:
        errors |= more
    return errors


def test_the_errors_table_names_every_error():
    rows = re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "errors.md").read_text(), flags=re.M)
    assert len(rows) == len(set(rows)), "an error has two rows"
    errors = _error_classes()
    assert len(errors) > 60
    assert sorted(errors - set(rows)) == [], "errors missing from docs/errors.md"
    assert sorted(set(rows) - errors) == [], "rows of docs/errors.md that name no error class"
