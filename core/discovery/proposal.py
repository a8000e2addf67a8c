"""What init read and what it proposes: the stack as read, the probes it may use, guesses, gaps, the proposal."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from core.io.compose import ResolvedConfig

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ReadStack:
    """What init read of the stack: its folder, compose project and files, the resolved config, what runs."""

    compose_dir: Path
    project: str
    compose_files: tuple[str, ...]
    config: ResolvedConfig
    backup_dir: Path
    running: frozenset[str] = frozenset()
    docker_host: str | None = None
    why_project: str = "given"
    why_backup: str = "given"


@dataclass(frozen=True)
class Probes:
    """What discovery may ask the live stack; None where nothing may be asked (a directory of compose files only).

    `http(url)` is a GET: (status, body) or None when nothing answered. `package_dir(image, package)` is the folder of
    a Python package inside an image (looked up without running the app), or None."""

    http: Callable[[str], tuple[int, str] | None] | None = None
    package_dir: Callable[[str, str], str | None] | None = None


@dataclass(frozen=True)
class Guess:
    """One value init proposes, and why, for a person to check."""

    field: str
    value: str
    why: str

    def line(self) -> str:
        return f"{self.field} = {self.value}  ({self.why})"


@dataclass(frozen=True)
class Gap:
    """A value init could not tell, and what to do about it: nothing is saved while there is one."""

    field: str
    why: str

    def line(self) -> str:
        return f"{self.field}: {self.why}"


@dataclass
class Proposal:
    """The block's groups (no secret in them), the guesses behind them, the gaps, and the database password found in
    the stack's own configuration (kept apart, a SecretStr)."""

    app: str = "unknown"
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    guesses: list[Guess] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    password: SecretStr | None = None
    password_from: str = ""

    def set(self, group: str, name: str, value: Any, why: str) -> None:
        self.fields.setdefault(group, {})[name] = value
        self.guesses.append(Guess(f"{group}.{name}", show(value), why))

    def gap(self, where: str, why: str) -> None:
        self.gaps.append(Gap(where, why))

    def value(self, group: str, name: str, default: Any = None) -> Any:
        return self.fields.get(group, {}).get(name, default)


SHOWN = 90  # characters of a value shown in a guess's line (a long command is cut)


def show(value: Any) -> str:
    """A value as a person reads it on one line: lists joined, checks by their URL, long values cut."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}: {show(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        text = ", ".join(str(v.get("url", v)) for v in value)
    elif isinstance(value, (list, tuple)):
        text = " ".join(str(v) for v in value) if value else "(none)"
    else:
        text = "(none)" if value is None else str(value)
    return text if len(text) <= SHOWN else text[:SHOWN - 1] + "…"


def published(config: ResolvedConfig, service: str, target: int) -> tuple[str, int] | None:
    """Where the host reaches `service`'s container port `target` (its published port), if it is published."""
    for p in config.raw["services"][service].get("ports") or []:
        try:
            if int(p.get("target", 0)) != target or not p.get("published"):
                continue
            port = int(p["published"])
        except (TypeError, ValueError):  # a port range: not one address
            continue
        host = p.get("host_ip") or LOOPBACK
        return (LOOPBACK if host in ("0.0.0.0", "::") else host), port
    return None
