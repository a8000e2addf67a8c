"""Post-conditions of an upgrade (and of a rollback): compose health, HTTP checks, database revision."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass
class Verification:
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]


def poll(probe: Callable[[], CheckResult], deadline_seconds: float, interval: float = 0.5,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> CheckResult:
    """Calls `probe` until it passes or the deadline passes; returns the last result."""
    end = clock() + deadline_seconds
    while True:
        result = probe()
        if result.ok or clock() >= end:
            return result
        sleep(interval)


def http_probe(name: str, url: str, expect_status: int, version_field: str | None, expected_version: str | None,
               timeout: float = 3) -> Callable[[], CheckResult]:
    def probe() -> CheckResult:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except OSError as exc:
            return CheckResult(name, False, f"{url} unreachable ({type(exc).__name__})")
        if status != expect_status:
            return CheckResult(name, False, f"{url} answered {status}, expected {expect_status}")
        if version_field and expected_version:
            try:
                got = json.loads(body).get(version_field)
            except (ValueError, AttributeError):
                return CheckResult(name, False, f"{url} did not answer JSON")
            if got != expected_version:
                return CheckResult(name, False, f"{url} reports {version_field}={got!r}, expected {expected_version!r}")
        return CheckResult(name, True, f"{url} answered {status}")
    return probe


def services_check(statuses, expected_services: list[str], expected_images: dict[str, str]) -> CheckResult:
    by_service = {s.service: s for s in statuses}
    problems = []
    for name in expected_services:
        s = by_service.get(name)
        if s is None:
            problems.append(f"{name} has no container")
        elif not s.ok:
            problems.append(f"{name} is {s.state}{'/' + s.health if s.health else ''}")
        elif expected_images.get(name) and s.image != expected_images[name] and "@" not in expected_images[name]:
            problems.append(f"{name} runs {s.image}, expected {expected_images[name]}")
    extra = sorted(set(by_service) - set(expected_services))
    if extra:
        problems.append(f"unexpected containers of services {', '.join(extra)} (orphans)")
    return CheckResult("compose services", not problems, "; ".join(problems) or f"{len(expected_services)} services healthy")


def revision_check(revisions: list[str], heads: list[str]) -> CheckResult:
    ok = sorted(revisions) == sorted(heads)
    return CheckResult("database revision", ok, f"alembic_version={revisions or '(none)'}, expected {sorted(heads)}")
