import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _shared() -> Path:
    """The reference folder: $STACKSHIFT_SHARED, else `shared/` beside this checkout, else beside the checkout it was
    cloned from (a throw-away clone of a local checkout, as CI checks make)."""
    if "STACKSHIFT_SHARED" in os.environ:
        return Path(os.environ["STACKSHIFT_SHARED"])
    candidates = [ROOT.parent / "shared"]
    origin = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"], check=False, capture_output=True,
                            text=True).stdout.strip()
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared")
    return next((c for c in candidates if (c / "fixtures" / "dify").is_dir()), candidates[0])


SHARED = _shared()
DIFY = SHARED / "fixtures" / "dify"
if not DIFY.is_dir():
    raise SystemExit(f"The Dify fixtures are not at {DIFY}: keep shared/ beside the repository (or beside the "
                     f"checkout this one was cloned from), or set STACKSHIFT_SHARED.")


# The test command runs the tests on several workers (lab/test: pytest-xdist, --dist loadgroup, in this order): the
# longest first (measured with --durations), so that none starts late and runs alone at the end; the unit tests, many
# and short, fill the end. A module kept on one worker (an xdist_group) counts as one long test.
LONGEST_FIRST = (
    "tests/e2e/test_promotion.py",  # one scenario, ~5 min
    "tests/e2e/test_fault_matrix.py::test_prefect_server_stopped",  # ~4 min, most of it the runner's exit
    "tests/e2e/test_mlflow.py",  # ~4 min, after the images' build when lab/test starts it on a new lab
    "tests/e2e/test_dify.py",  # ~5.5 min, one stack through five paths
    "tests/e2e/test_dify_promotion.py",  # ~4 min, two Dify stacks through one promotion
    "tests/e2e/test_lock_and_runs.py::test_cli_and_deployment_runs_at_once",  # ten trials
    "tests/e2e/test_lock_and_runs.py::test_two_cli_runs_at_once",  # ten trials
    "tests/e2e/test_lock_and_runs.py::test_a_run_whose_worker_died",  # ~2 min, most of it 90 s of silence
    "tests/e2e/test_rollback_point.py::test_pitr_sigkill",  # ~2 min
    "tests/e2e/test_rollback_point.py",
    "tests/e2e/test_fault_matrix.py::test_sigkill_of_recover",  # ~1.5 min: it ran last, alone (2026-12-05)
    "tests/e2e/test_online_pk.py",  # ~1.5 min in two tests: they ran last, alone, until measured (2026-12-05)
    "tests/e2e/test_online_upgrade.py",
    "tests/e2e/test_online_live.py",  # one worker, five tests: they ran last (2026-12-05)
    "tests/e2e/test_init.py",  # one worker, ~1.5 min
    "tests/e2e/test_cli.py",  # one worker, ~1 min
    "tests/e2e/test_lock_and_runs.py",
    "tests/e2e/test_upgrade.py",
    "tests/e2e/test_fault_matrix.py",
    "tests/e2e/test_preflight_errors.py",
    "tests/e2e/test_migration_live.py",
)


def pytest_collection_modifyitems(session, config, items):
    """The longest tests first (see LONGEST_FIRST), the rest in their order."""
    def rank(item) -> int:
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)


@pytest.fixture(scope="session")
def installed_stackshift(tmp_path_factory):
    """stackshift built from this checkout and installed into a fresh venv, offline (tests/install/installer.py):
    `.run("plan", "-e", "staging", ...)` runs the installed command outside the checkout."""
    from tests.install.installer import install

    return install(tmp_path_factory.mktemp("installed"))
