import os
import subprocess
import sys
from pathlib import Path

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


def pytest_collection_modifyitems(session, config, items):
    """The MLflow tests last: the test command builds their images in the background meanwhile."""
    items.sort(key=lambda item: "test_mlflow" in item.nodeid)
