"""The installed `stackshift` command (`[project.scripts]` in pyproject.toml).

`pip install .` ships the repository's top-level packages (core, flows, tasks, blocks, deployments, cli) inside one
folder, `stackshift_app`, so that none of those generic names lands in site-packages. The code imports them as
top-level packages (`from core.errors import ...`), as it does from a checkout; so the command puts that folder first
on `sys.path` (and on PYTHONPATH, for the Prefect processes it starts) before it imports `cli.main`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent
"""The folder holding core/, flows/, cli/...: the installed `stackshift_app`, or the checkout."""


def main() -> int:
    """The console entry point."""
    app = str(APP_DIR)
    if app not in sys.path:
        sys.path.insert(0, app)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if app not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (app, *paths) if p)
    from cli.leave import leave
    from cli.main import main as run

    return leave(run())
