"""The rollback point is taken after the writers stop: a write made after the online dump survives a rollback."""
import json
import urllib.request

import pytest

from core.apply import Runner
from core.errors import MigrationFailed
from core.plan import build_plan
from core.preflight import gather
from blocks.stack_environment import StackEnvironment
from lab import stack
from tests.e2e.helpers import revision

pytestmark = pytest.mark.e2e


def test_write_after_online_dump_survives_rollback(make_deployment, tmp_path):
    dep = make_deployment(rows=20_000)
    cfg = StackEnvironment(**dep.block_fields())
    plan = build_plan(gather(cfg, dep.name, "v3.0.0", tmp_path / "run"), "t1")
    runner = Runner(plan, cfg)
    runner.walk(plan.backup)

    req = urllib.request.Request(f"http://127.0.0.1:{dep.api_port}/items", data=json.dumps({"name": "late"}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        late_id = json.loads(resp.read())["id"]

    with pytest.raises(MigrationFailed):
        runner.walk(plan.cutover)
    runner.walk(plan.rollback)

    with dep.connect() as conn:
        assert conn.execute("SELECT name FROM accounts WHERE id = %s", (late_id,)).fetchone() == ("late",)
    assert revision(dep) == ["a1b2c3d4e5f6"]
    assert stack.checksums(dep)["events"][0] == 20_000
