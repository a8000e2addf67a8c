"""HTTP checks of a running stack, and the result type every post-condition check returns."""
from __future__ import annotations

import json
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


def http_probe(  # noqa: PLR0913, PLR0917 (one value per field of the operator's http check)
        name: str, url: str, expect_status: int, version_field: str | None, expected_version: str | None,
        timeout: float = 3, *, expect_body: str | None = None,
        version_in_body: bool = False) -> Callable[[], CheckResult]:
    """A GET of `url` that passes on `expect_status` and, when asked: a plain-text body (`expect_body`), the target's
    version in a JSON field (`version_field`) or as the whole plain-text body (`version_in_body`)."""
    def probe() -> CheckResult:  # noqa: PLR0911 (one verdict per check, in the order they are made)
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
