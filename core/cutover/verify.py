"""Post-conditions of an upgrade (and of a rollback): compose health, HTTP checks, database revision."""
from __future__ import annotations

import re

from core.io.http import CheckResult


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
    return CheckResult("compose services", not problems,
                       "; ".join(problems) or f"{len(expected_services)} services healthy")


def revision_check(revisions: list[str], heads: list[str]) -> CheckResult:
    ok = sorted(revisions) == sorted(heads)
    return CheckResult("database revision", ok, f"alembic_version={revisions or '(none)'}, expected {sorted(heads)}")
