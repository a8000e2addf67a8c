"""The proposal made from the stack as `init` read it: database, writers, migration, checks, backup."""
from __future__ import annotations

import re

from pydantic import SecretStr

from core.discovery import apps, checks
from core.discovery.proposal import Probes, Proposal, ReadStack, published
from core.io.compose import ResolvedConfig, image_repo
from core.settings import DatabaseSettings

PG_PORT = 5432
POSTGRES_ENV = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")  # the official image's initdb variables


def database_services(config: ResolvedConfig) -> dict[str, str]:
    """Services that run PostgreSQL, with why: a postgres image; failing that (an image of another name), the
    official image's POSTGRES_* variables (only failing that: Dify's api shares them with its database)."""
    by_image = {s: f"image {config.image(s)}" for s in config.services
                if "postgres" in image_repo(config.image(s)).rsplit("/", 1)[-1]}
    if by_image:
        return by_image
    out = {}
    for s in config.services:
        named = [k for k in POSTGRES_ENV if k in config.environment(s)]
        if named:
            out[s] = f"{named[0]} in its environment"
    return out


def _mentions(spec: dict, host: str) -> bool:
    """Whether a service's command or environment addresses `host` as a database (`@host:` or `@host/`)."""
    command = spec.get("command") or []
    env = (spec.get("environment") or {}).values()
    texts = [*(command if isinstance(command, list) else [command]), *map(str, env)]
    return any(re.search(rf"@{re.escape(host)}[:/]", t) for t in texts if t)


def writers(config: ResolvedConfig, dbs: list[str]) -> dict[str, tuple[str, str]]:
    """The long-running services that use a database service: service → (that database service, why). A service
    uses it when it depends on it, addresses it in a URL, or keeps a database of its own there (DB_HOST and a
    DB_DATABASE other than the server's POSTGRES_DB: Dify's plugin daemon). A DB_HOST alone is not enough: Dify
    1.14+ gives its shared settings, DB_HOST included, to services that never open the database."""
    jobs, out = set(config.jobs()), {}
    for s in config.services:
        if s in dbs or s in jobs:
            continue
        spec, env = config.raw["services"][s], config.environment(s)
        on = [d for d in (spec.get("depends_on") or {}) if d in dbs]
        named = [d for d in dbs if _mentions(spec, d)]
        own = [d for d in dbs if env.get("DB_HOST") == d and env.get("DB_DATABASE")
               and env["DB_DATABASE"] != config.environment(d).get("POSTGRES_DB")]
        if on:
            out[s] = (on[0], f"depends on {on[0]}")
        elif named:
            out[s] = (named[0], f"addresses {named[0]} in its command or environment")
        elif own:
            out[s] = (own[0], f"keeps its database {env['DB_DATABASE']} on {own[0]}")
    return out


def discover(stack: ReadStack, probes: Probes | None = None) -> Proposal:
    """The environment block `init` proposes for the stack (see the package's docstring)."""
    probes = probes or Probes()
    p = Proposal()
    _stack_group(p, stack)
    dbs = database_services(stack.config)
    if not dbs:
        p.gap("database", "no service runs PostgreSQL (no postgres image, no POSTGRES_* variables): stackshift "
                          "upgrades stacks whose Alembic migrations run against a PostgreSQL of their own")
        return p
    users = writers(stack.config, list(dbs))
    primary = max(dbs, key=lambda d: sum(1 for used, _ in users.values() if used == d))
    app = apps.recognise(stack.config, users)
    p.app = app.name if app else "unknown"
    p.set("writers", "services", sorted(users), "; ".join(f"{s} {why}" for s, (_, why) in sorted(users.items()))
          or "no service depends on the database")
    migrate = app.migrating_service(stack.config, users) if app else None
    if app is None or migrate is None:
        p.gap("migration", "no service is recognisably the one that migrates (Dify's dify-api, `mlflow server`, or "
                           "a service with MIGRATION_ENABLED in its environment): write the block by hand "
                           "(docs/init.md shows its fields)")
    _database_group(p, stack.config, primary, dbs, app=app, migrate=migrate)
    if app is not None and migrate is not None:
        app.propose(p, stack.config, migrate, probes)
    checks.propose(p, stack.config, [s for s in users if s != primary], probes)
    return p


def _stack_group(p: Proposal, stack: ReadStack) -> None:
    p.set("stack", "compose_dir", str(stack.compose_dir), "the folder given")
    p.set("stack", "project_name", stack.project, stack.why_project)
    p.set("stack", "compose_files", list(stack.compose_files), "the files compose reads for this project")
    if stack.docker_host:
        p.set("stack", "docker_host", stack.docker_host, "DOCKER_HOST of this shell")
    p.set("backup", "dir", str(stack.backup_dir), stack.why_backup)


def _database_group(p: Proposal, config: ResolvedConfig, primary: str, dbs: dict[str, str], *,  # noqa: PLR0913 (what was found so far)
                    app: apps.App | None, migrate: str | None) -> None:
    env = config.environment(primary)
    renamed = [s for s in DatabaseSettings.model_fields["services"].default if s not in dbs]
    p.set("database", "services", [*dbs, *renamed], "; ".join(f"{s}: {why}" for s, why in dbs.items())
          + (f"; {', '.join(renamed)} too, a default name: a release that renames its database service (Dify 1.x: "
             f"db → db_postgres) still finds it" if renamed else ""))
    where = published(config, primary, PG_PORT)
    if where is None:
        p.gap("database.port", f"{primary} publishes no port for PostgreSQL ({PG_PORT}), so stackshift cannot reach "
                               f"it from this host: publish it on loopback in an override file (ports: "
                               f"[\"127.0.0.1:{PG_PORT}:{PG_PORT}\"]), restart the stack, and run init again")
    else:
        p.set("database", "host", where[0], f"{primary} publishes {PG_PORT} there")
        p.set("database", "port", where[1], f"{primary}'s published port for {PG_PORT}")
    user = env.get("POSTGRES_USER") or "postgres"
    p.set("database", "user", user, f"POSTGRES_USER of {primary}" if "POSTGRES_USER" in env
          else "the postgres image's default superuser")
    found = app.app_database(config, migrate, primary) if app and migrate else None
    name, why = found or (env.get("POSTGRES_DB") or user, f"POSTGRES_DB of {primary}")
    p.set("database", "name", name, why)
    extra = sorted({e["DB_DATABASE"] for s in config.services if s != primary
                    for e in [config.environment(s)] if e.get("DB_HOST") == primary and e.get("DB_DATABASE")} - {name})
    if extra:
        p.set("database", "extra_databases", extra, f"other services' DB_DATABASE on {primary} (backed up and "
                                                    f"restored with the app's)")
    if env.get("POSTGRES_PASSWORD"):
        p.password = SecretStr(env["POSTGRES_PASSWORD"])
        p.password_from = f"POSTGRES_PASSWORD of {primary}, from the stack's .env or the compose file's default"
