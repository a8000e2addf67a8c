"""What each service gets: the effective value of every key, per service, as compose computes it from the env files
(in the service's `env_file` order, the last one wins), then the compose file's own `environment:` entries.

Pure: the layout (`core.env.envlayout.EnvLayout`) and the parsed env files in, values out. Compose's rules, as
`docker compose config` applies them (tests/unit/test_env_split_effective.py checks them against it):

- an `env_file` value is interpolated (`${VAR}`, `${VAR:-default}`, …) from the keys above it in the same file,
  then the service's earlier env files, then the project environment; a single-quoted value is taken as written;
- the project environment is the root `.env` (itself interpolated top to bottom); the process environment, which
  overrides it, is not modelled (COMPOSE_PROFILES in it is reported by the startability check);
- an `environment:` entry replaces what the env files gave; its `${VAR}` are read from the project environment.

`disputed` lists the keys whose files disagree: set by two env files to different values, or replaced by an
`environment:` entry with another value. The report shows those per service.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.env import envsecrets
from core.env.envdoc import EnvDoc
from core.env.envlayout import ROOT_ENV, EnvLayout

ENVIRONMENT = "environment:"  # the source of a value an `environment:` entry sets
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SINGLE_QUOTED = re.compile(r"^\s*(?:export\s+)?[^=]+=\s*'")

Lookup = Callable[[str], "str | None"]
# `${VAR<op>arg}`: the result from the variable's value (None: unset) and the expanded argument. Longest first.
_OPERATORS: dict[str, Callable[[str | None, str], str]] = {
    ":-": lambda v, a: v if v else a,
    ":+": lambda v, a: a if v else "",
    ":?": lambda v, a: v or "",
    "-": lambda v, a: v if v is not None else a,
    "+": lambda v, a: a if v is not None else "",
    "?": lambda v, a: v or "",
}


def interpolate(text: str, lookup: Lookup) -> str:
    """`text` with `$$`, `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:+r}`, `${VAR+r}`, `${VAR:?m}` and
    `${VAR?m}` expanded as compose expands them (a default may hold further `${…}`)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2:end], lookup))
            i = end + 1
        else:
            m = _NAME.match(text, i + 1)
            if m is None:
                out.append(ch)
                i += 1
                continue
            out.append(lookup(m.group(0)) or "")
            i = m.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for j in range(start, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text)


def _expand(inner: str, lookup: Lookup) -> str:
    m = _NAME.match(inner)
    if m is None:
        return ""
    value, rest = lookup(m.group(0)), inner[m.end():]
    op = next((o for o in _OPERATORS if rest.startswith(o)), "")
    if not op:
        return value or ""
    arg = interpolate(rest[len(op):], lookup)
    return _OPERATORS[op](value, arg)


def _file_values(doc: EnvDoc, outer: Lookup) -> dict[str, str]:
    """An env file's values as compose reads them: each interpolated from the keys above it, then `outer`."""
    seen: dict[str, str] = {}
    for ln in doc.lines:
        if ln.key is None or ln.value is None:
            continue
        if _SINGLE_QUOTED.match(ln.text.lstrip("\n")):
            seen[ln.key] = ln.value
        else:
            seen[ln.key] = interpolate(ln.value, lambda k, s=seen: s[k] if k in s else outer(k))  # type: ignore[misc]
    return seen


def project_environment(files: Mapping[str, EnvDoc]) -> dict[str, str]:
    """The variables compose interpolates the compose file with: the root `.env`'s values."""
    root = files.get(ROOT_ENV)
    return _file_values(root, lambda _k: None) if root is not None else {}


@dataclass(frozen=True)
class Effective:
    """A value a service gets, and where it comes from (an env file's path, or `environment:`)."""

    value: str
    source: str


def service_environment(layout: EnvLayout, service: str, files: Mapping[str, EnvDoc],
                        project: Mapping[str, str]) -> dict[str, Effective]:
    """Every key the service gets from its env files and `environment:` entries, with its value and source."""
    env: dict[str, Effective] = {}
    for source in layout.services.get(service, ()):
        doc = files.get(source.path)
        if doc is None:
            continue

        def outer(k: str) -> str | None:
            return env[k].value if k in env else project.get(k)

        for key, value in _file_values(doc, outer).items():
            env[key] = Effective(value, source.path)
    for key, expr in layout.environment.get(service, {}).items():
        given = project.get(key) if expr is None else interpolate(expr, project.get)
        if given is not None:
            env[key] = Effective(given, ENVIRONMENT)
    return env


def every_service(layout: EnvLayout, files: Mapping[str, EnvDoc]) -> dict[str, dict[str, Effective]]:
    """`service_environment` of every service of the layout."""
    project = project_environment(files)
    return {s: service_environment(layout, s, files, project) for s in sorted(layout.services)}


def disputed(layout: EnvLayout, files: Mapping[str, EnvDoc],
             environments: Mapping[str, dict[str, Effective]]) -> dict[str, dict[str, Effective]]:
    """Per key whose files disagree (two env files set it to different values, or an `environment:` entry gives a
    service another value than its env files), what each service that gets it receives."""
    loaded = {e.path for entries in layout.services.values() for e in entries}
    values: dict[str, set[str | None]] = {}
    for path, doc in files.items():
        if path in loaded:
            for key, value in doc.values.items():
                values.setdefault(key, set()).add(value)
    out: dict[str, dict[str, Effective]] = {}
    for key, seen in values.items():
        got = {s: env[key] for s, env in environments.items() if key in env}
        overridden = any(e.source == ENVIRONMENT and e.value not in seen for e in got.values())
        if len(seen) > 1 or overridden:
            out[key] = got
    return out


def masked(per_key: Mapping[str, dict[str, Effective]], extra_secret_keys: frozenset[str] = frozenset()) -> dict:
    """`disputed`'s result safe to show: per key, per service, the value (`(secret)` for a secret) and its source."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for key in sorted(per_key):
        got = per_key[key]
        secret = envsecrets.is_secret(key, *(e.value for e in got.values()), extra_keys=extra_secret_keys)
        out[key] = {s: {"value": envsecrets.shown(e.value, secret), "from": e.source} for s, e in sorted(got.items())}
    return out


__all__ = ["ENVIRONMENT", "Effective", "disputed", "every_service", "interpolate", "masked", "project_environment",
           "service_environment"]
