"""The rollback method as a strategy: the names old plans and journals hold, the lookup, pre-flight's choice through
`choose` (with stand-in probes), and no branch on the method anywhere else in the product code."""
import ast
import typing

from core.settings import RollbackMethodName
from pathlib import Path, PurePosixPath

import pytest

from core.backup import rollbackpoint as rp
from core.cutover import rollback_methods as rm
from core.cutover import steps as st
from core.cutover.plan import build_plan
from core.errors import RollbackPointUnavailable, UpgradeError
from tests.unit.test_plan import facts

ROOT = Path(__file__).resolve().parents[2]
GB = 1_000_000_000
DATA = rp.DataDir("db", Path("/srv/dify/volumes/db/data/pgdata"), PurePosixPath("/var/lib/postgresql/data/pgdata"))


def test_the_names_are_the_ones_old_plans_and_journals_hold_and_the_block_offers():
    assert {name: m.__name__ for name, m in rm.METHODS.items()} == {
        "file-copy": "FileCopy", "pitr": "Pitr", "snapshot-command": "Snapshot"}
    offered = typing.get_args(RollbackMethodName)
    assert offered == (rm.AUTO, *rm.METHODS)
    assert all(rm.by_name(name).name == name for name in rm.METHODS)


def test_an_unknown_method_in_a_plan_is_named():
    with pytest.raises(UpgradeError, match="'zfs' is none of file-copy, pitr, snapshot-command"):
        build_plan(facts(rollback_method="zfs"), "run1")


class Probed:
    """Stand-in probes that count their calls."""

    def __init__(self, data=DATA, blocker="", rate=(400.0, 0.2)):
        self.data, self.blocker, self.rate, self.calls = data, blocker, rate, []

    def probes(self) -> rm.Probes:
        return rm.Probes(self.data_dir, self.copy_rate)

    def data_dir(self):
        self.calls.append("data_dir")
        return (self.data, self.blocker)

    def copy_rate(self):
        self.calls.append("copy_rate")
        return self.rate


def test_auto_measures_and_takes_pitr_with_its_data_directory_when_file_copy_would_cost_too_much():
    probed = Probed()
    chosen = rm.choose(rm.Request(), 2 * GB, probed.probes())
    assert chosen.forecast.method == "pitr" and chosen.data_dir == DATA and chosen.forecast.copy_measured
    assert probed.calls == ["data_dir", "copy_rate"]
    small = rm.choose(rm.Request(), 1000, Probed().probes())
    assert small.forecast.method == "file-copy" and small.data_dir is None, "only PITR keeps the data directory"


def test_auto_without_the_probe_assumes_the_default_rate_and_with_a_snapshot_command_takes_it_unprobed():
    probed = Probed()
    chosen = rm.choose(rm.Request(probe=False), 1000, probed.probes())
    assert chosen.forecast.copy_mb_s == rp.DEFAULT_COPY_MB_S and not chosen.forecast.copy_measured
    assert probed.calls == ["data_dir"]
    probed = Probed()
    snap = rm.choose(rm.Request(snapshot_command=("snap", "{point}")), 50 * GB, probed.probes())
    assert snap.forecast.method == "snapshot-command" and snap.forecast.reason == "the environment's snapshot command"
    assert probed.calls == [] and snap.data_dir is None


@pytest.mark.parametrize("request_, blocker, refusal", [
    (rm.Request("pitr"), "wal_level is minimal", "pitr rollback point, which cannot work here: wal_level is minimal"),
    (rm.Request("pitr", snapshot_command=("snap",)), "no volume holds PGDATA", "no volume holds PGDATA"),
    (rm.Request("snapshot-command", snapshot_command=("snap",)), "",
     "snapshot_command and snapshot_restore_command must both be set"),
])
def test_an_explicit_method_that_cannot_work_here_is_refused(request_, blocker, refusal):
    with pytest.raises(RollbackPointUnavailable, match=refusal):
        rm.choose(request_, GB, Probed(data=None if blocker else DATA, blocker=blocker).probes())


def test_an_explicit_method_that_can_is_kept_unmeasured():
    probed = Probed()
    pitr = rm.choose(rm.Request("pitr"), 1000, probed.probes())
    assert (pitr.forecast.method, pitr.forecast.reason, pitr.data_dir) == ("pitr", "set in the environment", DATA)
    copy = rm.choose(rm.Request("file-copy"), 50 * GB, probed.probes())
    assert (copy.forecast.method, copy.data_dir) == ("file-copy", None)
    assert probed.calls == ["data_dir"], "the data directory only for PITR, the copy rate only for auto"


def test_what_each_point_needs_on_the_disk_beside_the_data_directory():
    cluster = lambda: 7 * GB  # noqa: E731
    assert [rm.by_name(n).point_bytes(GB, cluster) for n in rm.METHODS] == [GB, 7 * GB, 0]


def test_each_method_says_what_its_clean_ups_remove(tmp_path):
    base = facts(run_id="r1", databases=["app"])
    assert rm.for_run(base, "r1").leftovers(rolled_back=True) == {"drop": ("app__ss_rb_r1",),
                                                                  "failed": ("app__ss_failed_r1",)}
    pitr = rm.for_run(facts(rollback_method="pitr", data_dir={"service": "db", "host": "/d/pgdata",
                                                              "container": "/c/pgdata"}), "r1")
    assert pitr.leftovers(rolled_back=False) == {"slots": ("stackshift_r1",), "folders": ("/d/ss-base-r1",)}
    assert pitr.leftovers(rolled_back=True)["failed_folders"] == ("/d/ss-failed-r1",)
    assert rm.for_run(facts(rollback_method="snapshot-command"), "r1").leftovers(rolled_back=True) == {}


def test_the_previous_database_starts_where_each_restore_needs_it():
    start = st.StartServices("start-previous-db", "rollback", "start")
    pitr = facts(rollback_method="pitr", data_dir={"service": "db", "host": "/d/pgdata", "container": "/c/pgdata"})
    order = {name: [s.id for s in rm.for_run(f, "r1").restore_steps([start])]
             for name, f in (("file-copy", facts()), ("pitr", pitr), ("snapshot-command", facts()))}
    assert order == {"file-copy": ["start-previous-db", "restore-db"],
                     "pitr": ["restore-db", "start-previous-db", "await-recovery"],
                     "snapshot-command": ["start-previous-db", "restore-db"]}


# --- no branch on the method outside the strategy -------------------------------------------------------------
PRODUCT = ("core", "cli", "flows", "tasks", "deployments", "blocks")
STRATEGY = ROOT / "core" / "cutover" / "rollback_methods.py"


def method_branches(tree: ast.AST) -> list[int]:
    """Lines comparing something with a method's name, a method constant or a `rollback_method`/`.method`."""
    def about_method(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant) and node.value in rm.METHODS:
            return True
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(about_method(e) for e in node.elts)
        if isinstance(node, ast.Name):
            return node.id in ("PITR", "FILE_COPY", "SNAPSHOT")
        return isinstance(node, ast.Attribute) and node.attr in ("rollback_method", "method", "PITR", "FILE_COPY",
                                                                 "SNAPSHOT")

    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Compare)
            and any(about_method(n) for n in (node.left, *node.comparators))]


def test_nothing_outside_the_strategy_branches_on_the_rollback_method():
    found = {str(p.relative_to(ROOT)): lines for pkg in PRODUCT for p in sorted((ROOT / pkg).rglob("*.py"))
             if p != STRATEGY and (lines := method_branches(ast.parse(p.read_text())))}
    assert found == {}


def test_the_branch_finder_finds_a_branch():
    planted = ("if f.rollback.method == rp.PITR: pass\nif requested in ('auto', 'pitr'): pass\nx = chosen.method != m\n"
               "y = requested == SNAPSHOT")
    assert method_branches(ast.parse(planted)) == [1, 2, 3, 4]
