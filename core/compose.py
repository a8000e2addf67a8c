"""Reading compose v2's machine output (`config --format json`, `ps --format json`)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    name: str
    state: str  # running, exited, ...
    health: str  # healthy, unhealthy, starting, "" (no healthcheck)
    image: str

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.health in ("", "healthy")


def parse_ps(output: str) -> list[ServiceStatus]:
    """Parses `docker compose ps --format json`: a JSON array (older compose) or one object per line (v2.21+)."""
    text = output.strip()
    if not text:
        return []
    rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    return [ServiceStatus(r["Service"], r["Name"], r["State"], r.get("Health", ""), r.get("Image", "")) for r in rows]


@dataclass(frozen=True)
class ResolvedConfig:
    """The parts of `docker compose config --format json` stackshift uses."""

    raw: dict

    @classmethod
    def parse(cls, output: str) -> "ResolvedConfig":
        return cls(json.loads(output))

    @property
    def services(self) -> list[str]:
        return sorted(self.raw.get("services", {}))

    def image(self, service: str) -> str:
        return self.raw["services"][service].get("image", "")

    def images(self) -> dict[str, str]:
        return {s: self.image(s) for s in self.services}

    def environment(self, service: str) -> dict[str, str]:
        env = self.raw["services"][service].get("environment") or {}
        return {k: ("" if v is None else str(v)) for k, v in env.items()}

    def bind_sources(self, service: str) -> list[Path]:
        return [Path(v["source"]) for v in self.raw["services"][service].get("volumes", []) if v.get("type") == "bind"]


def image_repo(image: str) -> str:
    """`registry:5000/demo/app:2.0.0` (or `…@sha256:…`) -> `registry:5000/demo/app`."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return (head + "/" if head else "") + last.split(":", 1)[0]


def image_tag(image: str) -> str:
    """`registry:5000/demo/app:2.0.0` -> `2.0.0`; '' when untagged or pinned by digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""
