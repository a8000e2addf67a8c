"""The distribution's package list is the product's packages, every one, under `stackshift_app` (pyproject.toml).

A package added to core/ but not to `[tool.setuptools] packages` would be missing from `pip install .`: the installed
command would fail on its import. tests/install builds and installs the wheel itself.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "flows", "tasks", "blocks", "deployments", "cli")
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_product_package_is_shipped_under_stackshift_app():
    on_disk = {"stackshift_app." + ".".join(init.parent.relative_to(ROOT).parts)
               for top in PRODUCT for init in (ROOT / top).rglob("__init__.py")}
    assert set(SETUPTOOLS["packages"]) == on_disk | {"stackshift_app"}
    assert SETUPTOOLS["package-dir"] == {"stackshift_app": "."}


def test_the_product_folders_hold_only_python():
    """The wheel ships the packages' .py files and prefect.yaml only: nothing else may be needed at run time."""
    assert SETUPTOOLS["package-data"] == {"stackshift_app": ["prefect.yaml"]}
    others = [p.relative_to(ROOT) for top in PRODUCT for p in (ROOT / top).rglob("*")
              if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts]
    assert others == []
