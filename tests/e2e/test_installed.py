"""stackshift as an operator installs it: the wheel built from this checkout in a fresh venv (no checkout on the
path), pointed at a running lab stack with `init`, then `check` and `plan`; the plan's summary (phases, the env
diff, the migration verdict) fits in a screen at default verbosity."""
from __future__ import annotations

import re
from contextlib import suppress

import pytest

pytestmark = [pytest.mark.e2e]
MAX_LINES = 40


@pytest.fixture
def target(make_deployment):
    dep = make_deployment(rows=2_000, migration_probe=False)
    name = f"{dep.name}-installed"
    yield dep, name
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client, suppress(Exception):
        client.delete_block_document(client.read_block_document_by_name(name, "stack-environment").id)


def test_the_installed_command_inits_checks_and_plans_a_lab_stack(installed_stackshift, target):
    dep, name = target
    run = installed_stackshift.run
    version = run("--version")
    assert version.returncode == 0 and re.fullmatch(r"stackshift \d+\.\d+\.\d+\S*\n", version.stdout), version

    init = run("init", str(dep.compose_dir), "--name", name, "--backup-dir", str(dep.backup_dir), "--yes",
               timeout=300)
    assert init.returncode == 0, init.stdout + init.stderr
    assert dep.db_password not in init.stdout + init.stderr

    check = run("check", "-e", name, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr

    plan = run("plan", "-e", name, "-t", "v2.0.0", timeout=600)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    lines = plan.stdout.splitlines()
    print(f"\n[installed plan] {len(lines)} lines:\n{plan.stdout}")
    assert len(lines) <= MAX_LINES
    assert any(line.startswith("  pre-flight ...") for line in lines), "the phases"
    assert any(line.startswith("  migration check ...") for line in lines)
    assert "  ~ DB_HOST: db → db_postgres" in lines, "the env diff's changes"
    assert any(line.startswith("Migrations: ") for line in lines), "the migration verdict"
    assert any(re.fullmatch(r"Finished in \d+\.\d s", line) for line in lines)
    assert dep.db_password not in plan.stdout + plan.stderr
    assert "docker compose" not in plan.stdout, "no argv at default verbosity"
