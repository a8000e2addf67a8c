"""Post-conditions of an upgrade (and of a rollback): compose health, HTTP checks, database revision."""
from __future__ import annotations

import json
import re
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
               timeout: float = 3, *, expect_body: str | None = None,
               version_in_body: bool = False) -> Callable[[], CheckResult]:
    """A GET of `url` that passes on `expect_status` and, when asked: a plain-text body (`expect_body`), the target's
    version in a JSON field (`version_field`) or as the whole plain-text body (`version_in_body`)."""
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
        text = body.decode("utf-8", errors="replace").strip()
        if expect_body is not None and text != expect_body.strip():
            return CheckResult(name, False, f"{url} answered {text[:80]!r}, expected {expect_body.strip()!r}")
        if version_in_body and expected_version and text != expected_version:
            return CheckResult(name, False, f"{url} reports version {text[:80]!r}, expected {expected_version!r}")
        if version_field and expected_version:
            try:
                got = json.loads(body).get(version_field)
            except (ValueError, AttributeError):
                return CheckResult(name, False, f"{url} did not answer JSON")
            if got != expected_version:
                return CheckResult(name, False, f"{url} reports {version_field}={got!r}, expected {expected_version!r}")
        shown = f" {text[:40]!r}" if (expect_body is not None or version_in_body) else ""
        return CheckResult(name, True, f"{url} answered {status}{shown}")
    return probe


def version_output_check(name: str, output: str, expected_version: str) -> CheckResult:
    """A command's output names the expected version as a whole word (`mlflow, version 3.17.2`)."""
    first = output.strip().splitlines()[0][:120] if output.strip() else "(no output)"
    if not expected_version:  # the image has no tag to compare with (a digest only): nothing to hold it to
        return CheckResult(name, True, f"{first!r} (the image names no version to compare)")
    if re.search(rf"(?<![\w.]){re.escape(expected_version)}(?![\w.])", output):
        return CheckResult(name, True, f"{first!r}")
    return CheckResult(name, False, f"printed {first!r}, which does not name version {expected_version!r}")


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
