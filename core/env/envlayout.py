"""The target's env layout, read from its compose file: which env files each service loads, in which order, and
every template the target ships.

Since Dify 1.14 the root `.env.example` holds only the essentials; optional settings live in
`envs/**/*.env.example`. Compose loads, per service, the matching `envs/**.env` copies (`required: false`) and
then `./.env` **last**, so `.env` wins. The templates themselves are never loaded: a key reaches a container
from `.env`, from an `envs/**.env` copy the operator made, or from the compose file's own `${VAR:-default}`.

`EnvLayout.parse` reads `docker compose config --no-interpolate --format json` (every profile): each service's
`env_file` list as compose resolved it (short and long syntax, `required`), and every `${VAR}` the file still
interpolates. `read_templates` parses every `*.env.example` beside the compose file; a malformed one is refused
(EnvParseError, file and line) before anything is written.
"""
from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.env.envdoc import EnvDoc, EnvParseError, parse, read_env_file
from core.errors import EnvSyncError

ROOT_TEMPLATE = ".env.example"
ROOT_ENV = ".env"
COMPOSE = "docker-compose.yaml"
_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class EnvSource:
    """One `env_file` entry of a service: its path relative to the project folder, and whether it must exist."""

    path: str
    required: bool = True


@dataclass(frozen=True)
class Home:
    """Where a key's default lives in the target: the template's path (relative), the line and its value."""

    file: str
    text: str
    value: str | None


@dataclass(frozen=True)
class EnvLayout:
    """Per service its env files in load order (the last one wins), and the variables compose interpolates."""

    services: dict[str, tuple[EnvSource, ...]]
    interpolated: frozenset[str]
    environment: dict[str, dict[str, str | None]] = field(default_factory=dict)  # service -> its `environment:`

    @classmethod
    def parse(cls, config_json: str, project_dir: Path) -> EnvLayout:
        """Reads `config --no-interpolate --format json` of the target (paths made relative to `project_dir`)."""
        services = dict(json.loads(config_json).get("services") or {})
        root = project_dir.resolve()
        layout: dict[str, tuple[EnvSource, ...]] = {}
        environment = {name: _environment(svc.get("environment")) for name, svc in services.items()}
        for name, svc in services.items():
            entries = []
            for e in svc.get("env_file") or ():
                path, required = (e, True) if isinstance(e, str) else (e["path"], bool(e.get("required", True)))
                p = Path(path)
                p = p.parent.resolve() / p.name if p.is_absolute() else p  # a symlinked `.env` is still `.env`
                rel = p.relative_to(root) if p.is_relative_to(root) else p
                entries.append(EnvSource(rel.as_posix(), required))
            layout[name] = tuple(entries)
        return cls(layout, frozenset(_VAR.findall(config_json)), environment)

    @property
    def split(self) -> bool:
        """Whether a service loads env files besides `.env` (Dify's layout since 1.14)."""
        return any(s.path != ROOT_ENV for entries in self.services.values() for s in entries)

    def loading(self, env_path: str) -> list[str]:
        """The services that load the env file `env_path` (relative)."""
        return sorted(s for s, entries in self.services.items() if any(e.path == env_path for e in entries))

    def effective_source(self, service: str, key: str, present: dict[str, EnvDoc]) -> str | None:
        """The env file whose value of `key` the service gets (the last one in its list that exists and sets it),
        given the env files `present` (relative path -> parsed file); `environment:` entries are not counted."""
        found = None
        for e in self.services.get(service, ()):
            doc = present.get(e.path)
            if doc is not None and key in doc.values:
                found = e.path
        return found


def _environment(entries) -> dict[str, str | None]:
    """A service's `environment:` as a mapping (compose prints the list form `KEY=value` as written)."""
    if isinstance(entries, dict):
        return {k: (None if v is None else str(v)) for k, v in entries.items()}
    out: dict[str, str | None] = {}
    for item in entries or ():
        key, eq, value = str(item).partition("=")
        out[key] = value if eq else None
    return out


@dataclass(frozen=True)
class Elsewhere:
    """What the target uses besides its root template: the keys its `envs/**` templates define (`homes`), and the
    variables its compose file reads (`interpolated`)."""

    homes: Mapping[str, Home]
    interpolated: frozenset[str]
    layout: EnvLayout | None = None  # the target's layout it was read from (for what each service gets)

    @classmethod
    def of(cls, layout: EnvLayout, templates: dict[str, EnvDoc]) -> Elsewhere:
        return cls(homes(templates), layout.interpolated, layout)


def read_layout(compose_file: Path, scratch: Path | None = None) -> EnvLayout:
    """The target's layout from `docker compose config --no-interpolate` of `compose_file` (every profile).

    Raises ComposeRejectsEnv with compose's own message when it refuses the file (an old Compose that does not
    know the `path:`/`required:` form of `env_file` among them), ComposeUnavailable when docker cannot run.
    """
    from core.errors import ComposeUnavailable, error_line
    from core.io import commands as c
    from core.io.executor import run

    compose_file = Path(compose_file).resolve()
    with tempfile.TemporaryDirectory(prefix="stackshift-layout-", dir=scratch) as tmp:
        empty = Path(tmp) / ".env"
        empty.write_text("")
        project = c.ComposeProject(compose_file.parent, (compose_file,), empty, "stackshift-env-layout")
        try:
            done = run(c.compose_config_layout_json(project), check=False)
        except OSError as exc:
            raise ComposeUnavailable(exc.strerror or str(exc)) from None
    if done.returncode != 0:
        raise ComposeLayoutUnreadable(compose_file, error_line(done.stderr))
    return EnvLayout.parse(done.stdout, compose_file.parent)


class ComposeLayoutUnreadable(EnvSyncError):
    """`docker compose config` refuses the target's compose file itself, so its env layout cannot be read."""

    def __init__(self, path: Path, detail: str):
        self.detail = detail
        super().__init__(f"`docker compose config` cannot read {path}: {detail}. Fix the compose file; if it uses "
                         f"the `path:`/`required:` form of `env_file`, that needs Docker Compose 2.24 or later "
                         f"(`docker compose version`). Nothing was written.")


def template_of(env_path: str) -> str:
    """The template an env copy is made from: `envs/x/y.env` -> `envs/x/y.env.example`."""
    return env_path + ".example"


def read_templates(project_dir: Path) -> dict[str, EnvDoc]:
    """Every `envs/**/*.env.example` beside the compose file, parsed (relative path -> document), in path order.

    Raises EnvParseError (file, line, what to do) for one that cannot be read or parsed: nothing is written then.
    """
    docs: dict[str, EnvDoc] = {}
    for path in sorted((project_dir / "envs").glob("**/*.env.example")):
        rel = path.relative_to(project_dir).as_posix()
        docs[rel] = parse(read_env_file(path, "envs template"), str(path))
    return docs


def homes(templates: dict[str, EnvDoc]) -> dict[str, Home]:
    """For each key an `envs/**` template defines, the first template (in path order) that defines it."""
    out: dict[str, Home] = {}
    for rel, doc in templates.items():
        for key, value in doc.values.items():
            if key not in out:
                text = doc.lines[doc.index[key]].text.lstrip("\n")
                out[key] = Home(rel, text if text.endswith("\n") else text + "\n", value)
    return out


def missing_templates(layout: EnvLayout, templates: dict[str, EnvDoc]) -> list[str]:
    """The `envs/**.env` files services load whose template the target does not ship."""
    wanted = {e.path for entries in layout.services.values() for e in entries if e.path != ROOT_ENV}
    return sorted(p for p in wanted if template_of(p) not in templates)


class EnvTemplatesMissing(EnvSyncError):
    """The target's compose file loads `envs/**.env` files whose templates the target does not ship: its `envs/`
    folder is incomplete, or the compose file is another release's."""

    def __init__(self, where: Path, templates: list[str]):
        self.templates = templates
        super().__init__(f"the target's compose file loads env files whose templates are not in {where}: "
                         f"{', '.join(templates)}. Check that the compose file and its envs/ folder belong to the "
                         f"same release (`git status`, `git checkout -- envs`); nothing was written.")


def require_templates(layout: EnvLayout, templates: dict[str, EnvDoc], project_dir: Path) -> None:
    """Raises EnvTemplatesMissing when a service loads an `envs/**.env` whose template the target does not ship."""
    missing = missing_templates(layout, templates)
    if missing:
        raise EnvTemplatesMissing(project_dir / "envs", [template_of(m) for m in missing])


def existing_copies(project_dir: Path, layout: EnvLayout) -> list[str]:
    """The `envs/**.env` copies services load that exist in the operator's folder."""
    wanted = {e.path for entries in layout.services.values() for e in entries if e.path != ROOT_ENV}
    return sorted(p for p in wanted if (project_dir / p).is_file())


__all__ = ["COMPOSE", "ROOT_ENV", "ROOT_TEMPLATE", "Elsewhere", "EnvLayout", "EnvParseError", "EnvSource",
           "EnvTemplatesMissing", "Home", "existing_copies", "homes", "missing_templates", "read_templates",
           "require_templates", "template_of"]
