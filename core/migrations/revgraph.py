"""The target's Alembic revision graph, read from its migration files without importing them.

Revision files import app code (Dify's do), so they cannot be loaded outside the app. Their module-level
`revision`, `down_revision`, `branch_labels` and `depends_on` are plain literals: they are read from the syntax
tree and handed to Alembic's own `RevisionMap`, so heads, merges, branch labels and dependencies resolve exactly
as Alembic resolves them.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from alembic.script.revision import Revision, RevisionError, RevisionMap

from core.errors import MigrationFileUnreadable, MultipleHeads, SeveralDatabaseRevisions, UnknownDatabaseRevision

_FIELDS = ("revision", "down_revision", "branch_labels", "depends_on")


@dataclass(frozen=True)
class RevisionFile:
    filename: str
    revision: str
    down_revision: tuple[str, ...]
    branch_labels: tuple[str, ...]
    depends_on: tuple[str, ...]
    downgrade_is_noop: bool


def _as_tuple(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _is_noop_body(body: list[ast.stmt]) -> bool:
    """A body that does nothing: only `pass`, `...` and docstrings (comments are not in the tree)."""
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
               for s in body)


def parse_revision_file(filename: str, source: str) -> RevisionFile:
    """The revision identifiers of one file, read statically."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise MigrationFileUnreadable(filename, f"line {exc.lineno}: {exc.msg}") from None
    values: dict[str, object] = {}
    downgrade_noop = True
    for node in tree.body:
        assigned: list[tuple[ast.Name, ast.expr]] = []  # (name, value) pairs of a module-level assignment
        if isinstance(node, ast.Assign):
            assigned = [(t, node.value) for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            assigned = [(node.target, node.value)]
        elif isinstance(node, ast.FunctionDef) and node.name == "downgrade":
            downgrade_noop = _is_noop_body(node.body)
        for t, value in assigned:
            if t.id in _FIELDS:
                try:
                    values[t.id] = ast.literal_eval(value)
                except ValueError:
                    raise MigrationFileUnreadable(
                        filename, f"`{t.id}` is not a literal (line {node.lineno}); stackshift reads it without "
                                  f"running the file") from None
    if "revision" not in values:
        raise MigrationFileUnreadable(filename, "it declares no `revision`, and Alembic refuses such a file in the "
                                                "versions folder")
    return RevisionFile(filename, str(values["revision"]), _as_tuple(values.get("down_revision")),
                        _as_tuple(values.get("branch_labels")), _as_tuple(values.get("depends_on")), downgrade_noop)


def is_revision_filename(name: str) -> bool:
    """The names Alembic loads from a versions folder: `*.py`, except `__init__*` and editor lock files."""
    return name.endswith(".py") and not name.startswith(("__init__", ".#"))


def read_sources(versions_dir: Path) -> dict[str, str]:
    """The revision files of a versions folder (top level, as Alembic reads it by default)."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(versions_dir.iterdir())
            if p.is_file() and is_revision_filename(p.name)}


@dataclass
class RevisionGraph:
    files: dict[str, RevisionFile]  # revision id → file
    map: RevisionMap = field(repr=False)

    @classmethod
    def from_sources(cls, sources: dict[str, str]) -> RevisionGraph:
        files: dict[str, RevisionFile] = {}
        for name, text in sorted(sources.items()):
            if not is_revision_filename(Path(name).name):
                continue
            rf = parse_revision_file(name, text)
            if rf.revision in files:
                raise MigrationFileUnreadable(name, f"revision {rf.revision} is also declared in "
                                                    f"{files[rf.revision].filename}")
            files[rf.revision] = rf

        for rf in files.values():
            for parent in rf.down_revision + rf.depends_on:
                if parent not in files and not any(parent in f.branch_labels for f in files.values()):
                    raise MigrationFileUnreadable(rf.filename, f"revision {rf.revision} names {parent} as its parent "
                                                               f"or dependency, and no file declares it")

        def generate():
            for rf in files.values():
                yield Revision(rf.revision, rf.down_revision or None, dependencies=rf.depends_on or None,
                               branch_labels=rf.branch_labels or None)

        graph = cls(files, RevisionMap(generate))
        try:
            _ = graph.map.heads  # resolves the whole map: a dangling down_revision fails here
        except RevisionError as exc:
            raise MigrationFileUnreadable("(versions folder)", str(exc)) from None
        return graph

    @property
    def heads(self) -> list[str]:
        return sorted(self.map.heads)

    def single_head(self) -> str:
        heads = self.heads
        if len(heads) != 1:
            raise MultipleHeads(heads)
        return heads[0]

    def pending(self, db_revisions: list[str]) -> list[str]:
        """Revisions an `upgrade head` would apply to a database at `db_revisions` ([] = empty database), in the
        order Alembic applies them. Refuses a database revision the target does not know."""
        head = self.single_head()
        unknown = [r for r in db_revisions if r not in self.files]
        if unknown:
            raise UnknownDatabaseRevision(unknown, head)
        lower = tuple(db_revisions) if db_revisions else "base"
        if len(set(db_revisions)) < len(db_revisions):
            raise SeveralDatabaseRevisions(db_revisions, head, "the same revision twice")
        try:
            revs = list(self.map.iterate_revisions(head, lower, inclusive=False, implicit_base=True))
        except RevisionError as exc:
            if len(db_revisions) < 2:  # noqa: PLR2004 (one row is a plain revision)
                raise
            raise SeveralDatabaseRevisions(db_revisions, head, str(exc).rstrip(".")) from None
        return [r.revision for r in reversed(revs) if r.revision not in db_revisions]

    def noop_downgrades(self, revisions: list[str]) -> list[str]:
        return [r for r in revisions if self.files[r].downgrade_is_noop]


@dataclass(frozen=True)
class RevisionState:
    """What a report says about revisions: the database's rows, the target head, what runs, what cannot be undone."""

    db_revisions: list[str]
    head: str
    pending: list[str]
    noop_downgrades: list[str]

    @property
    def sql_range(self) -> str:
        """The argument of `alembic upgrade … --sql` for this range (offline mode needs `from:to`)."""
        if not self.db_revisions:
            return self.head
        if len(self.db_revisions) > 1:
            raise SeveralDatabaseRevisions(self.db_revisions, self.head)
        return f"{self.db_revisions[0]}:{self.head}"

    def to_dict(self) -> dict:
        return {"db_revisions": self.db_revisions, "head": self.head, "pending": self.pending,
                "noop_downgrades": self.noop_downgrades}


def state(graph: RevisionGraph, db_revisions: list[str]) -> RevisionState:
    pending = graph.pending(db_revisions)
    return RevisionState(sorted(db_revisions), graph.single_head(), pending, graph.noop_downgrades(pending))
