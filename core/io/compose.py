"""Reading compose v2's machine output (`config --format json`, `ps --format json`)."""
from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from core.errors import PinnedImageMismatch


COMPLETED = "service_completed_successfully"  # the `depends_on` condition that waits for a job to end with 0


def service_verdict(status: str | None, health: str, exit_code: int | None, *, job: bool,
                    restarting: bool = False) -> str:
    """ok | wait | failed: the one definition of a service being where it should be, used by the wait for health
    (`core.stackio`) and by the verification (`core.cutover.verify`). A long-running service is ok when it runs and
    is healthy (or has no healthcheck), failed when unhealthy or ended; a job (a one-shot service: `*-init`,
    `migrate`, `setup`…) is ok once it exited 0, failed when it exited otherwise, and waited for while it runs."""
    if status == "exited" and not restarting:
        return "ok" if job and exit_code == 0 else "failed"
    if status == "running" and not job:
        if health in ("", "healthy"):
            return "ok"
        return "failed" if health == "unhealthy" else "wait"
    return "failed" if status == "dead" else "wait"


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    name: str
    state: str  # running, exited, ...
    health: str  # healthy, unhealthy, starting, "" (no healthcheck)
    image: str
    exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.verdict(job=False) == "ok"

    def verdict(self, job: bool) -> str:
        return service_verdict(self.state, self.health, self.exit_code, job=job, restarting=self.state == "restarting")


def parse_ps(output: str) -> list[ServiceStatus]:
    """Parses `docker compose ps --format json`: a JSON array (older compose) or one object per line (v2.21+)."""
    text = output.strip()
    if not text:
        return []
    rows = (json.loads(text) if text.startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()])
    return [ServiceStatus(r["Service"], r["Name"], r["State"], r.get("Health", ""), r.get("Image", ""),
                          r.get("ExitCode")) for r in rows]


@dataclass(frozen=True)
class ResolvedConfig:
    """The parts of `docker compose config --format json` stackshift uses."""

    raw: dict

    @classmethod
    def parse(cls, output: str) -> ResolvedConfig:
        return cls(json.loads(output))

    @property
    def services(self) -> list[str]:
        return sorted(self.raw.get("services", {}))

    def image(self, service: str) -> str:
        return self.raw["services"][service].get("image", "")

    def images(self) -> dict[str, str]:
        return {s: self.image(s) for s in self.services}

    def jobs(self, named: Collection[str] = ()) -> list[str]:
        """The services that run once and exit (see `service_verdict`): by their shape, no restart policy (or
        `restart: "no"`) and a dependent waiting for them with `service_completed_successfully`; or `named` (the
        environment's `health.jobs`)."""
        services = self.raw.get("services", {})
        awaited = {dep for spec in services.values() for dep, how in (spec.get("depends_on") or {}).items()
                   if (how or {}).get("condition") == COMPLETED}
        return sorted(s for s, spec in services.items()
                      if s in named or (s in awaited and spec.get("restart") in (None, "", "no")))

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


def digest_ref(ref: str) -> str | None:
    """`repo@sha256:…` of a reference pinned by digest (`repo[:tag]@sha256:…`); None when not pinned."""
    if "@" not in ref:
        return None
    named, digest = ref.split("@", 1)
    return f"{image_repo(named)}@{digest}"


def tag_of_pinned(ref: str) -> tuple[str, str] | None:
    """For `repo:tag@sha256:…`: (`repo@sha256:…` to pull, `repo:tag` to point at it); None when not pinned."""
    pinned = digest_ref(ref)
    named = ref.split("@", 1)[0]
    if pinned is None or named == image_repo(named):  # no tag
        return None
    return pinned, named


def apply_pins(images: dict[str, str], pins: dict[str, str]) -> dict[str, str]:
    """The target's images with each service pinned to the digest given: `repo:tag@sha256:…` (the tag still says
    the version; the digest decides what is pulled). Every service of the target must be pinned, to the same repo."""
    if not pins:
        return dict(images)
    problems = []
    out = {}
    for service, ref in sorted(images.items()):
        pin = pins.get(service)
        if pin is None:
            problems.append(f"service {service} has no pinned digest")
        elif "@sha256:" not in pin:
            problems.append(f"{service}: {pin!r} is not pinned by digest (repo@sha256:…)")
        elif image_repo(pin) != image_repo(ref):
            problems.append(f"{service}: pinned {image_repo(pin)}, but the release uses {image_repo(ref)}")
        else:
            out[service] = ref.split("@", 1)[0] + "@" + pin.split("@", 1)[1]
    extra = sorted(set(pins) - set(images))
    if extra:
        problems.append(f"pinned service(s) {', '.join(extra)} are not in the release")
    if problems:
        raise PinnedImageMismatch("; ".join(problems))
    return out
