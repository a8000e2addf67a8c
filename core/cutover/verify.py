"""Post-conditions of an upgrade (and of a rollback): compose health, HTTP checks, database revision."""
from __future__ import annotations

import re
from collections.abc import Callable, Collection

from core.io.http import CheckResult


def version_output_check(name: str, output: str, expected_version: str) -> CheckResult:
    """A command's output names the expected version as a whole word (`mlflow, version 3.17.2`)."""
    first = output.strip().splitlines()[0][:120] if output.strip() else "(no output)"
    if not expected_version:  # the image has no tag to compare with (a digest only): nothing to hold it to
        return CheckResult(name, True, f"{first!r} (the image names no version to compare)")
    if re.search(rf"(?<![\w.]){re.escape(expected_version)}(?![\w.])", output):
        return CheckResult(name, True, f"{first!r}")
    return CheckResult(name, False, f"printed {first!r}, which does not name version {expected_version!r}")


def services_check(statuses, expected_services: list[str], expected_images: dict[str, str],
                   jobs: Collection[str] = (), last_lines: Callable[[str], list[str]] | None = None) -> CheckResult:
    """Every expected service where `service_verdict` wants it (the definition the wait uses): a long-running one
    running and healthy, a job (`jobs`) exited 0; a failed job with its exit code and `last_lines(service)`."""
    by_service = {s.service: s for s in statuses}
    problems = []
    for name in expected_services:
        s = by_service.get(name)
        job = name in jobs
        if s is None:
            problems.append(f"{name} has no container")
        elif s.verdict(job) != "ok":
            code = f", exit code {s.exit_code}" if s.state == "exited" else ""
            said = last_lines(name) if job and last_lines is not None and s.state == "exited" else []
            problems.append(f"{'job ' if job else ''}{name} is {s.state}{'/' + s.health if s.health else ''}{code}"
                            + (f" (last lines: {' | '.join(said)})" if said else ""))
        elif expected_images.get(name) and s.image != expected_images[name] and "@" not in expected_images[name]:
            problems.append(f"{name} runs {s.image}, expected {expected_images[name]}")
    extra = sorted(set(by_service) - set(expected_services))
    if extra:
        problems.append(f"unexpected containers of services {', '.join(extra)} (orphans)")
    done = [n for n in expected_services if n in jobs]
    return CheckResult("compose services", not problems, "; ".join(problems) or
                       f"{len(expected_services) - len(done)} services healthy"
                       + (f", job(s) {', '.join(done)} exited 0" if done else ""))


def revision_check(revisions: list[str], heads: list[str]) -> CheckResult:
    ok = sorted(revisions) == sorted(heads)
    return CheckResult("database revision", ok, f"alembic_version={revisions or '(none)'}, expected {sorted(heads)}")
