"""`pip install .` gives an operator a `stackshift` command, and puts no generic module name in site-packages.

Builds the wheel from this checkout and installs it into a fresh venv (tests/install/installer.py: offline, no lab),
then runs the installed command from outside the checkout.
"""
from __future__ import annotations

import platform
import subprocess
import tomllib
import zipfile
from email.parser import Parser

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.install.installer import ROOT

pytestmark = pytest.mark.install

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
GENERIC = {"core", "flows", "tasks", "blocks", "cli", "deployments", "lab", "tests", "bench", "docs"}
TOOLS = {"pytest", "hypothesis", "squawk-cli", "playwright", "pytest-xdist", "ruff", "mypy", "types-docker",
         "setuptools"}


def _names(reqs) -> set[str]:
    return {Requirement(r).name.lower() for r in reqs}


def test_the_wheel_ships_one_package_folder(installed_stackshift):
    with zipfile.ZipFile(installed_stackshift.wheel) as wheel:
        names = wheel.namelist()
        top = {name.split("/")[0] for name in names}
        metadata = Parser().parsestr(wheel.read(f"stackshift-{VERSION}.dist-info/METADATA").decode())
    assert top == {"stackshift_app", f"stackshift-{VERSION}.dist-info"}
    assert "stackshift_app/prefect.yaml" in names  # the deployments' source, beside the packages
    runtime = _names(metadata.get_all("Requires-Dist") or [])
    assert runtime == _names(PYPROJECT["project"]["dependencies"])
    assert not runtime & TOOLS, "a test or lab tool became a runtime dependency"
    # the Python versions it states are those it is tested on: this interpreter's
    assert SpecifierSet(metadata["Requires-Python"]) == SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert platform.python_version() in SpecifierSet(metadata["Requires-Python"])


def test_site_packages_holds_no_generic_name(installed_stackshift):
    entries = {p.name for p in installed_stackshift.site_packages.iterdir()} - {"lab_venv.pth"}
    assert entries == {"stackshift_app", f"stackshift-{VERSION}.dist-info"}
    assert not entries & GENERIC
    for name in ("core", "flows", "cli"):  # and an interpreter of that venv cannot import them by those names
        done = subprocess.run([str(installed_stackshift.python), "-c", f"import {name}"], cwd=installed_stackshift.venv,
                              env=installed_stackshift.env(), capture_output=True, text=True, check=False)
        assert "ModuleNotFoundError" in done.stderr, (name, done.stderr)


def test_the_command_reports_its_version_and_verbs(installed_stackshift):
    version = installed_stackshift.run("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"stackshift {VERSION}"), version.stderr
    helped = installed_stackshift.run("--help")
    assert helped.returncode == 0, helped.stderr
    for verb in ("upgrade", "plan", "recover", "verify-backup", "env-sync", "analyze-migrations"):
        assert verb in helped.stdout


def test_a_deployment_entrypoint_resolves_in_the_installed_copy(installed_stackshift):
    """A worker's pull step sets the working directory to the installed app folder (docs/operator-guide.md): the
    entrypoint `flows/upgrade.py:upgrade` of prefect.yaml then loads, its `core` imports included."""
    load = ("from prefect.flows import load_flow_from_entrypoint; "
            "print(load_flow_from_entrypoint('flows/upgrade.py:upgrade').name)")
    done = subprocess.run([str(installed_stackshift.python), "-c", load], cwd=installed_stackshift.app_dir,
                          env=installed_stackshift.env(PREFECT_API_URL="http://127.0.0.1:9/api"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout.strip().splitlines()[-1:]) == (0, ["upgrade"]), done.stderr
