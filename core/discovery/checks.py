"""The HTTP checks init proposes: each writer's compose healthcheck URL, reached on its published port.

With a live stack (`Probes.http`), what the URL answers now refines the check: a JSON `version` equal to the image's
tag becomes `expect_version_field`, a short plain-text body `expect_body`, and a `/version` on the same port that
answers the tag becomes a version check of its own.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from core.discovery.proposal import Probes, Proposal, published
from core.io.compose import ResolvedConfig, image_tag

URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost|0\.0\.0\.0)(?::(\d+))?(/[^\s'\"]*)?")
SHORT_BODY = 20  # characters: a plain-text answer at most this long is expected as it is (MLflow's `OK`)
OK = 200


def healthcheck_urls(config: ResolvedConfig, service: str) -> list[tuple[int, str]]:
    """(container port, path) of each local URL the service's compose healthcheck probes."""
    test = (config.raw["services"][service].get("healthcheck") or {}).get("test") or []
    text = " ".join(map(str, test)) if isinstance(test, list) else str(test)
    return [(int(m.group(1) or 80), m.group(2) or "/") for m in URL.finditer(text)]


def propose(p: Proposal, config: ResolvedConfig, services: list[str], probes: Probes) -> None:
    """Sets `health.http_checks` from the services' healthchecks (one per service), saying why or why none."""
    found: list[dict[str, Any]] = []
    whys, unpublished = [], []
    for s in sorted(services):
        for port, path in healthcheck_urls(config, s)[:1]:
            where = published(config, s, port)
            if where is None:
                unpublished.append(f"{s} ({port})")
                continue
            checks, why = _checks(s, f"http://{where[0]}:{where[1]}{path}", image_tag(config.image(s)), probes.http)
            found += checks
            whys.append(why)
    if found:
        p.set("health", "http_checks", found, "; ".join(whys))
        return
    why = "no writer's healthcheck probes a URL on a published port"
    if unpublished:
        why = f"the healthchecks of {', '.join(unpublished)} probe a port that is not published"
    p.set("health", "http_checks", [], why + ": the upgrade still waits for the containers' health; add a check "
                                             "in the block to verify the app answers")


def _checks(service: str, url: str, version: str,
            http: Callable[[str], tuple[int, str] | None] | None) -> tuple[list[dict[str, Any]], str]:
    check: dict[str, Any] = {"name": f"{service} health", "url": url}
    why = f"{service}'s healthcheck, on its published port"
    if http is None:
        return [check], why
    answer = http(url)
    if answer is None:
        return [check], why + "; it does not answer now"
    status, body = answer
    if status != OK:
        return [check], why + f"; it answers {status} now"
    text = body.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and version and data.get("version") == version:
        check["expect_version_field"] = "version"
        why += f"; it answers JSON whose version is {version}, the tag of {service}'s image"
    elif data is None and text and len(text) <= SHORT_BODY:
        check["expect_body"] = text
        why += f"; it answers {text!r}"
    out = [check]
    origin = url[:url.index("/", len("http://"))] if "/" in url[len("http://"):] else url
    answer = http(origin + "/version") if version else None
    if answer and answer[0] == OK and answer[1].strip() == version:
        out.append({"name": f"{service} version", "url": origin + "/version", "expect_version_in_body": True})
        why += f"; {origin}/version answers {version}, the image's tag"
    return out, why
