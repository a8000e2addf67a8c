import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
SHARED = Path(os.environ.get("STACKSHIFT_SHARED", ROOT.parent / "shared"))
DIFY = SHARED / "fixtures" / "dify"
if not DIFY.is_dir():
    raise SystemExit(f"The Dify fixtures are not at {DIFY}: keep shared/ beside the repository, or set STACKSHIFT_SHARED.")
