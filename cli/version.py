"""The version `stackshift --version` reports."""
from __future__ import annotations

from pathlib import Path

CHECKOUT_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def version() -> str:
    """The installed distribution's version; from a checkout (not installed), the one in its pyproject.toml."""
    if CHECKOUT_PYPROJECT.is_file():  # a checkout: its own pyproject, whatever else the interpreter has installed
        import tomllib

        return str(tomllib.loads(CHECKOUT_PYPROJECT.read_text())["project"]["version"])
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("stackshift")
    except PackageNotFoundError:
        return "unknown"
