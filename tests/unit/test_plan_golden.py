"""The plan, step by step, is the one main rendered before the rollback method became a strategy (d4769e8): for each
method and the shapes of stack the plan tests use, every list's steps with their id, kind, task name, title,
rendering and every field. A change to what a plan does shows here as a diff of the golden file.

Regenerate (only when a plan is meant to change, and say why in the commit):
`.venv/bin/python -m tests.unit.test_plan_golden`
"""
from __future__ import annotations

import json
import sys
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path, PurePath

import pytest

from core.cutover.plan import build_plan
from tests.unit.test_plan import facts

GOLDEN = Path(__file__).resolve().parent / "golden" / "plans.json"
DATA_DIR = {"service": "db", "host": "/srv/dify/volumes/db/data/pgdata", "container": "/var/lib/postgresql/data/pgdata"}
CASES = {
    "file-copy": dict(run_id="run1"),
    "file-copy-no-rename": dict(run_id="run1", target_services=["api", "db", "worker"]),
    "file-copy-no-database-service": dict(run_id="run1", target_services=["api", "worker"], db_services=["db"]),
    "file-copy-pinned-no-switch": dict(
        run_id="run1", databases=["app"], migration_switch=None, stop_timeouts={"worker": 30},
        version_command=["app", "--version"], keep_failed_database=True,
        target_images={"api": "r/app@sha256:" + "2" * 64, "worker": "r/app@sha256:" + "2" * 64,
                       "db_postgres": "r/pg:15"}),
    "pitr": dict(run_id="r1", rollback_method="pitr", data_dir=DATA_DIR),
    "pitr-without-data-dir": dict(run_id="r1", rollback_method="pitr"),
    "snapshot-command": dict(run_id="r1", rollback_method="snapshot-command",
                             snapshot_command=["snap", "take", "{point}"],
                             snapshot_restore_command=["snap", "restore", "{point}"]),
}


def plain(value):
    """A step's field as JSON: dataclasses by kind and fields, enums by value, paths as strings."""
    if is_dataclass(value):
        return {"kind": type(value).__name__, **{f.name: plain(getattr(value, f.name)) for f in fields(value)}}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def step_record(s) -> dict:
    own = {k: v for k, v in plain(s).items() if k not in ("id", "phase", "title")}
    return {"id": s.id, "kind": type(s).__name__, "task": s.task_name, "phase": s.phase, "title": s.title,
            "does": s.render(), "fields": own}


def rendered(case: str) -> dict:
    over = CASES[case]
    plan = build_plan(facts(**over), over["run_id"])
    return {name: [step_record(s) for s in steps] for name, steps in plan.lists().items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_plan_is_the_golden_one(case):
    golden = json.loads(GOLDEN.read_text())[case]
    assert rendered(case) == golden


def golden_text() -> str:
    """JSON with one step a line (a diff names the step that changed)."""
    cases = []
    for case in sorted(CASES):
        lists = [f'  {json.dumps(name)}: [' + ",".join(f"\n   {json.dumps(step)}" for step in steps) + "]"
                 for name, steps in rendered(case).items()]
        cases.append(f" {json.dumps(case)}: {{\n" + ",\n".join(lists) + "\n }")
    return "{\n" + ",\n".join(cases) + "\n}\n"


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(golden_text())
    sys.exit(0)
