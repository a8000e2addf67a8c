"""Where the lab keeps its state: `$STACKSHIFT_LAB_HOME`, else /var/lib/stackshift-lab (`lab/setup` and `lab/test`
read the same variable with the same default)."""
from __future__ import annotations

import os
from pathlib import Path

LAB_HOME = Path(os.environ.get("STACKSHIFT_LAB_HOME", "/var/lib/stackshift-lab"))
DEMO_REPO = LAB_HOME / "demo-stack.git"  # the demo stack's compose directory, one tag per release
PROD_ENGINE = "unix:///var/run/stackshift-prod/docker.sock"  # the lab's second Docker engine: the "prod host"
