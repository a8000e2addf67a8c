"""The Docker Compose version a target's compose file needs, and the check against the version installed.

`needed` reads the parsed compose file (YAML, as written: an old Compose cannot be asked to parse what it does not
know) and returns the newest feature it uses from `FEATURES`, with the version that introduced it. `check` is a pure
function of the version found and the parsed file; `installed` reads the version from
`docker compose version --format json`.

| feature | since |
|---|---|
| `env_file` entries in the long form (`path:`, `required:`), which Dify 1.14+ uses for `envs/**` | 2.24.0 |
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import ComposeFileNotYaml, ComposeTooOld, ComposeVersionUnknown

LONG_ENV_FILE = "the long `env_file` form (`path:` / `required:`)"
FEATURES = {LONG_ENV_FILE: (2, 24, 0)}
_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")

Version = tuple[int, int, int]
NAMED = 3  # services named in the message, at most


def parse_version(text: str) -> Version | None:
    """`v2.40.3` / `2.24` / `2.24.0-desktop.1` as (2, 40, 3); None if it is no version."""
    m = _VERSION.match(text.strip())
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


def shown(version: Version) -> str:
    return ".".join(str(n) for n in version)


@dataclass(frozen=True)
class Need:
    """A version the compose file needs, and the feature that needs it (with the services using it)."""

    version: Version
    why: str


def needed(compose: Mapping) -> Need | None:
    """The Compose version the parsed compose file needs beyond Compose v2's first releases (None: any)."""
    long_form = sorted(name for name, svc in (compose.get("services") or {}).items()
                       if isinstance(svc, Mapping) and _long_env_file(svc.get("env_file")))
    if not long_form:
        return None
    more = f" and {len(long_form) - NAMED} more" if len(long_form) > NAMED else ""
    return Need(FEATURES[LONG_ENV_FILE], f"{LONG_ENV_FILE}, in services {', '.join(long_form[:NAMED])}{more}")


def _long_env_file(entries) -> bool:
    return isinstance(entries, list) and any(isinstance(e, Mapping) for e in entries)


def check(found: str, compose: Mapping, compose_file: str) -> Need | None:
    """Raises ComposeTooOld when version `found` is older than what `compose` needs; returns the need (or None)."""
    need = needed(compose)
    have = parse_version(found)
    if need is None:
        return None
    if have is None:
        raise ComposeVersionUnknown(found)
    if have < need.version:
        raise ComposeTooOld(found, shown(need.version), need.why, compose_file)
    return need


def version_of(output: str) -> str:
    """The version in `docker compose version --format json`'s output; ComposeVersionUnknown if none."""
    try:
        version = json.loads(output).get("version")
    except (ValueError, AttributeError):
        version = None
    if not isinstance(version, str) or parse_version(version) is None:
        raise ComposeVersionUnknown(output)
    return version


def installed() -> str:
    """The installed Docker Compose's version (`v2.40.3`), read from `docker compose version --format json`."""
    from core.errors import ComposeUnavailable, error_line
    from core.io import commands as c
    from core.io.executor import run

    try:
        done = run(c.compose_version_json(), check=False)
    except OSError as exc:
        raise ComposeUnavailable(exc.strerror or str(exc)) from None
    if done.returncode != 0:
        raise ComposeUnavailable(error_line(done.stderr))
    return version_of(done.stdout)


def check_file(compose_text: str, compose_file: str, found: str | None = None) -> Need | None:
    """`check` of a compose file's text against `found` (default: the installed version)."""
    import yaml  # type: ignore[import-untyped]

    try:
        compose = yaml.safe_load(compose_text) or {}
    except yaml.YAMLError as exc:
        raise ComposeFileNotYaml(compose_file, str(exc).splitlines()[0]) from None
    if not isinstance(compose, Mapping) or needed(compose) is None:
        return None
    return check(found if found is not None else installed(), compose, compose_file)


__all__ = ["ComposeFileNotYaml", "ComposeTooOld", "ComposeVersionUnknown", "Need", "check", "check_file", "installed",
           "needed", "parse_version", "version_of"]
