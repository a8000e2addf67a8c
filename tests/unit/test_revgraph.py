"""The revision graph read statically from migration files, checked against Alembic's own loading."""
import csv

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from core.errors import MigrationFileUnreadable, MultipleHeads, SeveralDatabaseRevisions, UnknownDatabaseRevision
from core.migrations.revgraph import RevisionGraph, parse_revision_file, read_sources, state
from tests.conftest import DIFY


def rev_file(rev, down, *, downgrade="op.drop_table('t')", labels=None, depends=None,  # noqa: PLR0913
             annotated=False, imports=""):  # (each a field of the generated revision file)
    down_src = repr(down) if not isinstance(down, list) else repr(tuple(down))
    ann = ": Union[str, Sequence[str], None]" if annotated else ""
    extra = ""
    if labels is not None:
        extra += f"branch_labels = {labels!r}\n"
    if depends is not None:
        extra += f"depends_on = {depends!r}\n"
    return (f'"""rev {rev}"""\nfrom typing import Sequence, Union\nfrom alembic import op\n{imports}\n'
            f"revision{ann} = {rev!r}\ndown_revision{ann} = {down_src}\n{extra}\n"
            f"def upgrade():\n    op.create_table('t_{rev}')\n\n\ndef downgrade():\n    {downgrade}\n")


# A graph with a branch, a merge revision, a labelled branch, a cross-branch dependency, docstring-only and
# bare-pass downgrades, an annotated assignment, and an `__init__.py` (skipped by both readers).
GRAPH = {
    "r1_base.py": rev_file("r1", None),
    "r2_a.py": rev_file("r2", "r1", annotated=True),
    "r3_b.py": rev_file("r3", "r1", labels=("feature",), downgrade='"""Nothing to undo."""'),
    "r4_merge.py": rev_file("r4", ["r2", "r3"], downgrade="pass"),
    "r5_dep.py": rev_file("r5", "r4", depends=("r3",), downgrade="pass  # irreversible"),
    "__init__.py": "",
}


def test_static_parse_equals_alembics_own_loading(tmp_path):
    versions = tmp_path / "versions"
    versions.mkdir()
    (tmp_path / "script.py.mako").write_text("")
    (tmp_path / "env.py").write_text("")
    for name, text in GRAPH.items():
        (versions / name).write_text(text)
    cfg = Config()
    cfg.set_main_option("script_location", str(tmp_path))
    alembic_map = ScriptDirectory.from_config(cfg).revision_map  # imports every file
    ours = RevisionGraph.from_sources(read_sources(versions))

    assert sorted(ours.map.heads) == sorted(alembic_map.heads) == ["r5"]
    assert sorted(ours.map.bases) == sorted(alembic_map.bases) == ["r1"]
    for rev in ("r1", "r2", "r3", "r4", "r5"):
        a, b = ours.map.get_revision(rev), alembic_map.get_revision(rev)
        assert (a.down_revision, a.dependencies, a.branch_labels, a.nextrev) == \
               (b.down_revision, b.dependencies, b.branch_labels, b.nextrev), rev
    assert [r.revision for r in ours.map.iterate_revisions("heads", "base")] == \
           [r.revision for r in alembic_map.iterate_revisions("heads", "base")]
    assert ours.map.get_revision("feature@head").revision == alembic_map.get_revision("feature@head").revision


def test_files_that_import_missing_app_code_are_still_read():
    src = {"r1.py": rev_file("r1", None, imports="import models.types  # app code, not importable here")}
    assert RevisionGraph.from_sources(src).heads == ["r1"]


def test_one_head_pending_path_and_noop_downgrades():
    g = RevisionGraph.from_sources(GRAPH)
    s = state(g, ["r2"])
    assert s.head == "r5"
    assert s.pending == ["r3", "r4", "r5"]
    assert s.noop_downgrades == ["r3", "r4", "r5"]  # docstring only, bare pass, pass + comment
    assert s.sql_range == "r2:r5"


def test_empty_database_runs_everything_from_base():
    s = state(RevisionGraph.from_sources(GRAPH), [])
    assert s.pending[0] == "r1" and s.pending[-1] == "r5" and len(s.pending) == 5
    assert s.sql_range == "r5"


def test_database_at_head_has_nothing_pending():
    assert state(RevisionGraph.from_sources(GRAPH), ["r5"]).pending == []


def test_several_database_rows_on_unmerged_branches():
    g = RevisionGraph.from_sources(GRAPH)
    s = state(g, ["r2", "r3"])
    assert s.pending == ["r4", "r5"]
    with pytest.raises(SeveralDatabaseRevisions, match="2 alembic_version rows"):
        _ = s.sql_range


def test_several_heads_are_refused():
    g = RevisionGraph.from_sources({k: v for k, v in GRAPH.items() if k not in ("r4_merge.py", "r5_dep.py")})
    assert g.heads == ["r2", "r3"]
    with pytest.raises(MultipleHeads, match="2 heads .*alembic merge"):
        state(g, ["r1"])


def test_unknown_database_revision_is_refused():
    with pytest.raises(UnknownDatabaseRevision, match="ahead of this release or on a diverged branch"):
        state(RevisionGraph.from_sources(GRAPH), ["f00d"])


def test_non_literal_revision_and_dangling_parent_are_clear_errors():
    with pytest.raises(MigrationFileUnreadable, match="not a literal"):
        RevisionGraph.from_sources({"x.py": "revision = make_id()\ndown_revision = None\n"})
    with pytest.raises(MigrationFileUnreadable, match="x.py.*line 1"):
        RevisionGraph.from_sources({"x.py": "revision = 'a\n"})
    with pytest.raises(MigrationFileUnreadable, match="names missing as its parent"):
        RevisionGraph.from_sources({"x.py": rev_file("r9", "missing")})


def test_downgrade_detection():
    assert parse_revision_file("a.py", rev_file("a", None, downgrade="pass")).downgrade_is_noop
    assert parse_revision_file("a.py", rev_file("a", None, downgrade="...")).downgrade_is_noop
    assert not parse_revision_file("a.py", rev_file("a", None, downgrade="op.drop_column('t', 'c')")).downgrade_is_noop


def test_a_file_without_revision_is_refused_as_alembic_refuses_it(tmp_path):
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "helpers.py").write_text("def util():\n    return 1\n")
    cfg = Config()
    cfg.set_main_option("script_location", str(tmp_path))
    with pytest.raises(Exception, match="Could not determine revision id"):
        _ = ScriptDirectory.from_config(cfg).revision_map.heads
    with pytest.raises(MigrationFileUnreadable, match="helpers.py.*declares no `revision`"):
        RevisionGraph.from_sources(read_sources(tmp_path / "versions"))


def test_dify_1_12_1_graph_from_its_revision_table():
    """Dify's 161 revision files, rebuilt from the fixture's table (ids, parents, whether downgrade does anything)."""
    rows = list(csv.DictReader((DIFY / "revisions.1.12.1.tsv").open(), delimiter="\t"))
    sources = {}
    for r in rows:
        down = r["down_revision"].split(",") if "," in r["down_revision"] else (r["down_revision"] or None)
        body = "op.drop_column('x', 'y')" if r["downgrade_nontrivial"] == "yes" else "pass"
        sources[r["filename"]] = rev_file(r["revision"], down, downgrade=body, imports="import models")
    g = RevisionGraph.from_sources(sources)
    assert len(g.files) == 161
    assert g.heads == ["788d3099ae3a"]
    s = state(g, ["a91b476a53de"])  # 0.15.3's head
    assert len(s.pending) == 43 and s.pending[-1] == "788d3099ae3a"
    assert s.pending.index("ddcc8bbef391") == 0  # chain order, not file date order
    assert s.noop_downgrades == []  # the four trivial downgrades are all before 0.15.3's head
    s = state(g, [])
    assert sorted(s.noop_downgrades) == sorted(["e1944c35e15e", "d7999dfa4aae", "63f9175e515b", "de95f5c77138"])
    assert s.pending[0] == "64b051264f32"
