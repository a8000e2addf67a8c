"""Install stackshift from this checkout into a fresh virtual environment, offline, as an operator's `pip install .`.

The wheel is built from a copy of the checkout (setuptools writes build/ and *.egg-info beside the sources) with the
build backend the lab's .venv has (setuptools, in the lock's test group), and installed into a new venv made without
pip. The new venv finds its dependencies in the lab's .venv through a .pth file, so nothing is downloaded: what
lands in its own site-packages is exactly what the wheel ships.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "dist", "*.egg-info", ".stackshift",
                              ".pytest_cache", ".hypothesis", "*.whl")


@dataclass(frozen=True)
class Installed:
    """A venv holding the installed `stackshift`: its command, interpreter, site-packages and wheel."""

    venv: Path
    wheel: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "stackshift"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        return self.venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

    @property
    def app_dir(self) -> Path:
        """The installed copy's folder of core/, flows/, cli/...: a deployment's working directory."""
        return self.site_packages / "stackshift_app"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a command run from this install: none of the checkout on PYTHONPATH."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PIP_")}
        return env | {"PATH": f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"} | extra

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 120,
            **env: str) -> subprocess.CompletedProcess[str]:
        """`stackshift ARGS...` from this install (cwd: the venv, outside the checkout, unless given)."""
        return subprocess.run([str(self.command), *args], cwd=cwd or self.venv, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout, check=False)


def _pip(python: Path, *args: str, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run([str(python), "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


def install(where: Path) -> Installed:
    """Build the wheel from the checkout and install it into a fresh venv under WHERE (offline, ~10 s)."""
    source, dist, venv = where / "source", where / "dist", where / "venv"
    shutil.copytree(ROOT, source, ignore=SKIP, symlinks=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    installed = Installed(venv=venv, wheel=dist)
    # The lab's .venv after the venv's own site-packages: pip, the build backend and stackshift's dependencies.
    (installed.site_packages / "lab_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _pip(installed.python, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(source),
         cwd=where)
    wheels = sorted(dist.glob("stackshift-*.whl"))
    assert len(wheels) == 1, f"expected one stackshift wheel, got {wheels}"
    _pip(installed.python, "install", "--no-deps", "--no-index", str(wheels[0]), cwd=where)
    return Installed(venv=venv, wheel=wheels[0])
