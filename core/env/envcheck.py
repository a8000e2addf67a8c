"""Checks of a merged env against the target's compose files: compose accepts it, and the stack still starts.

What the compose files say is read from `docker compose config --format json`, run once on the merged env
with every profile enabled (`--profile '*'`), so that each service's `profiles` and `depends_on` are known.
A probe service added for that run reports COMPOSE_PROFILES as compose itself resolves it: read from the env
file with its `${VAR:-default}` expanded, or from the process environment, which overrides the file. From
that the active services follow, as `docker compose up` would start them.

A service the target needs is its database (named by the caller: the block's `db_services`, or the CLI's
`--db-service`) or a `depends_on` target that an active service requires (`required: false` ones are
optional). When one is left outside the active profiles, `check_startable` names the key, the conflict and a
value that fixes it, and stops, unless told to accept it.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.env import envsecrets
from core.env.envmerge import Change, ComposeRejectsEnv, MergeResult, parse
from core.errors import ComposeUnavailable, NeededServiceInactive

PROFILES_KEY = "COMPOSE_PROFILES"
PROBE_SERVICE = "stackshift-profiles-probe"
DEFAULT_DB_SERVICES = ("db", "db_postgres")
_REQUIRED = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*):?\?")


def required_variables(compose_text: str) -> frozenset[str]:
    """Variables a compose file requires: `${VAR:?msg}` (set and non-empty) and `${VAR?msg}` (set)."""
    return frozenset(_REQUIRED.findall(compose_text))


@dataclass(frozen=True)
class StackModel:
    """Every service of the target with its profiles and required dependencies, and the active profiles."""

    profiles: dict[str, tuple[str, ...]]
    needs: dict[str, tuple[str, ...]]  # service -> `depends_on` targets it requires
    active_profiles: tuple[str, ...]

    @classmethod
    def parse(cls, config_json: str) -> StackModel:
        """Reads `config --format json` of a run with every profile enabled and the probe service."""
        services = dict(json.loads(config_json).get("services") or {})
        probe = services.pop(PROBE_SERVICE, {})
        resolved = str((probe.get("environment") or {}).get(PROFILES_KEY) or "")
        return cls(
            profiles={s: tuple(d.get("profiles") or ()) for s, d in services.items()},
            needs={s: tuple(dep for dep, how in (d.get("depends_on") or {}).items() if how.get("required", True))
                   for s, d in services.items()},
            active_profiles=tuple(p.strip() for p in resolved.split(",") if p.strip()),
        )

    @property
    def services(self) -> list[str]:
        return sorted(self.profiles)

    def is_active(self, service: str) -> bool:
        """Whether `docker compose up` starts the service: it has no profile, or one of its profiles is active."""
        wanted = self.profiles[service]
        return not wanted or "*" in self.active_profiles or any(p in self.active_profiles for p in wanted)


@dataclass(frozen=True)
class Need:
    """A service the target needs that the active profiles leave out, and why it is needed."""

    service: str
    profiles: tuple[str, ...]
    why: str


def inactive_needs(model: StackModel, db_services) -> list[Need]:
    """The services the target needs (its database, required `depends_on` targets) that would not start."""
    why: dict[str, list[str]] = {}
    for service in db_services:
        if service in model.profiles and not model.is_active(service):
            why.setdefault(service, []).append("the database service")
    for service in model.services:
        if not model.is_active(service):
            continue
        for dep in model.needs[service]:
            if dep in model.profiles and not model.is_active(dep):
                why.setdefault(dep, []).append(f"needed by {service}")
    return [Need(s, model.profiles[s], ", ".join(w)) for s, w in why.items()]


def fixed_profiles(current: str | None, needs: list[Need]) -> str:
    """COMPOSE_PROFILES as it is, with a profile of each needed service appended."""
    items = [current] if current else []
    for need in needs:
        if need.profiles and need.profiles[0] not in items:
            items.append(need.profiles[0])
    return ",".join(items)


def _how_it_came(change: Change | None, value: str | None, secret: bool) -> str:
    """How the merge arrived at the key's value, for the message."""
    default = envsecrets.shown(change.template_new if change else None, secret)
    return {
        "conflict": f"you customized it, and the new template's default is now {default}",
        "customized": "you customized it",
        "deleted_kept": f"you deleted it from the file (the new template's default is {default})",
        "user_only": "your own key", "removed_kept": "your own value of a key the template dropped",
        "default_moved": "the new template's default", "added": "the new template's default",
        "re_added": "the new template's default",
    }.get(change.category if change else "", "as in your file" if value is not None else "not set")


def check_startable(result: MergeResult, env_label: str, model: StackModel, db_services, *, accept: bool,  # noqa: PLR0913 (the check's inputs, then the caller's policy by keyword)
                    override: str, extra_secret_keys: frozenset[str] = frozenset()) -> None:
    """Stops (NeededServiceInactive) when the merged env leaves a needed service outside the active profiles.

    With `accept`, records the finding as a note on the COMPOSE_PROFILES row of the report instead.

    Args:
        result: the merge; its text is the env checked, its changes say how COMPOSE_PROFILES came about.
        env_label: the env file as the operator knows it (for the message).
        model: the target's services, read by `read_model` from the same merged text.
        db_services: the database services; those the target does not define are ignored.
        accept: go ahead anyway (the CLI's `--accept-conflicts`, the flow's `accept_env_conflicts`).
        override: how to say "go ahead anyway" to this caller, e.g. "rerun with --accept-conflicts".
    """
    needs = inactive_needs(model, db_services)
    if not needs:
        return
    value = parse(result.text).values.get(PROFILES_KEY)
    change = result.change(PROFILES_KEY)
    secret = envsecrets.is_secret(PROFILES_KEY, value, change.template_new if change else None,
                                  extra_keys=extra_secret_keys)
    active = "none" if not model.active_profiles else ", ".join(model.active_profiles)
    left_out = "; ".join(f"{n.service} (profile {' or '.join(n.profiles)}: {n.why})" for n in needs)
    finding = (f"{PROFILES_KEY}={envsecrets.shown(value, secret)} ({_how_it_came(change, value, secret)}) makes the "
               f"active profiles {'(secret)' if secret else active}, which leave out {left_out}: the target stack "
               f"would start without {'it' if len(needs) == 1 else 'them'}")
    if PROFILES_KEY in os.environ:
        finding += f" ({PROFILES_KEY} is also set in the environment, which overrides the file)"
    fix = (f"{PROFILES_KEY}={fixed_profiles(value, needs)}" if not secret
           else f"{PROFILES_KEY} with profile(s) {', '.join(n.profiles[0] for n in needs if n.profiles)} added")
    if not accept:
        raise NeededServiceInactive(env_label, PROFILES_KEY, finding, fix, override)
    if change is None:
        change = Change(PROFILES_KEY, "conflict", value, value)
        result.changes.append(change)
    change.note = f"accepted: {finding}; {fix} would start {'it' if len(needs) == 1 else 'them'}"


def read_model(project_dir: Path, compose_files, env_text: str, secrets: list[str],
               scratch: Path | None = None) -> StackModel:
    """Runs `docker compose config` of the target on `env_text` with every profile and the probe.

    Raises ComposeRejectsEnv when compose refuses the env (e.g. a `${VAR:?}` left empty); its message is
    compose's, with every value in `secrets` replaced by ***. Raises ComposeUnavailable when `docker` cannot
    be run at all.
    """
    from core.io import commands as c
    from core.files import write_atomic
    from core.errors import error_line
    from core.io.executor import run, scrub

    with tempfile.TemporaryDirectory(prefix="stackshift-env-", dir=scratch) as tmp:  # holds the merged .env: 0700
        env, probe = Path(tmp) / ".env", Path(tmp) / "profiles-probe.yaml"
        write_atomic(env, env_text)
        probe.write_text(json.dumps({"services": {PROBE_SERVICE: {
            "image": "scratch", "environment": {PROFILES_KEY: "${" + PROFILES_KEY + ":-}"}}}}))
        # The scratch folder is the project folder, so an `env_file: ./.env` (Dify 1.14+) reads the merged env; the
        # target's `envs/` copies are seen through a link.
        if (Path(project_dir) / "envs").is_dir():
            (Path(tmp) / "envs").symlink_to((Path(project_dir) / "envs").resolve())
        paths = tuple(Path(f).resolve() for f in compose_files)
        project = c.ComposeProject(Path(tmp), (*paths, probe), env, "stackshift-env-check")
        try:
            done = run(c.compose_config_every_profile_json(project), check=False)
        except OSError as exc:
            raise ComposeUnavailable(exc.strerror or str(exc)) from None
    if done.returncode != 0:
        detail = scrub(error_line(done.stderr), secrets)
        files = ", ".join(str(f) for f in compose_files)
        raise ComposeRejectsEnv(f"`docker compose config` of {files} rejects the merged env: {detail}. Set the "
                                f"variable in your .env; nothing was written.")
    return StackModel.parse(done.stdout)


def default_db_services(model: StackModel) -> list[str]:
    """The usual database services (db, db_postgres) that the target defines."""
    return [s for s in DEFAULT_DB_SERVICES if s in model.profiles]
