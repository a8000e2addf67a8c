"""How an app migrates, one strategy per kind of app: Dify, MLflow, and any Alembic app with a migration switch.

Each says whether a stack is one of its kind (`migrating_service`), which database the migration runs against
(`app_database`), and fills the block's `migration` group (and what else it knows) on a `Proposal` with the reason for
each value. `recognise` tries them in order, the most specific first.
"""
from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit, urlunsplit

from core.discovery.proposal import Probes, Proposal
from core.io.compose import ResolvedConfig, image_repo
from core.settings import MigrationSettings

SWITCH = "MIGRATION_ENABLED"

# MLflow renders its SQL offline with Alembic and its own env.py, given a URL of the right dialect (no connection is
# made); `{range}` is FROM:TO.
MLFLOW_RENDER_SQL = [
    "python3", "-c",
    "import os, sys; import mlflow.store.db_migrations as m; from alembic import command; "
    "from alembic.config import Config; d = os.path.dirname(m.__file__); c = Config(os.path.join(d, 'alembic.ini')); "
    "c.set_main_option('script_location', d); c.set_main_option('sqlalchemy.url', 'postgresql://'); "
    "command.upgrade(c, sys.argv[1], sql=True)",
    "{range}",
]
MLFLOW_VERSION_COMMAND = ["python3", "-c", "import importlib.metadata as m; print('mlflow', m.version('mlflow'))"]


def _prefer_api(candidates: list[str]) -> str | None:
    return "api" if "api" in candidates else (sorted(candidates)[0] if candidates else None)


class App:
    """An app stackshift knows how to migrate; the base is "an Alembic app with a migration switch"."""

    name = "an Alembic app"

    def migrating_service(self, config: ResolvedConfig, writers: Collection[str]) -> str | None:
        """The writer whose image runs the migration: one with the switch in its environment (`api` first)."""
        return _prefer_api([s for s in writers if SWITCH in config.environment(s)])

    def app_database(self, config: ResolvedConfig, service: str, db_service: str) -> tuple[str, str] | None:
        """The database the migration runs against, with why: the service's DB_DATABASE when it points at the
        database service."""
        env = config.environment(service)
        if env.get("DB_HOST") == db_service and env.get("DB_DATABASE"):
            return env["DB_DATABASE"], f"DB_DATABASE of {service}, whose DB_HOST is {db_service}"
        return None

    def propose(self, p: Proposal, config: ResolvedConfig, service: str, probes: Probes) -> None:
        defaults = MigrationSettings()
        p.set("migration", "service", service, f"{service} has {SWITCH} in its environment: its entrypoint "
                                               f"migrates, and the switch turns that off")
        p.set("migration", "switch", SWITCH, f"in {service}'s environment")
        p.set("migration", "command", list(defaults.command), "Alembic's upgrade to the head, in the app's image")
        p.set("migration", "versions_path", defaults.versions_path,
              "where an Alembic app's revision files usually are; `stackshift check` reads them there")
        p.set("migration", "render_sql_command", list(defaults.render_sql_command or ()),
              "Alembic's offline mode prints the pending SQL without a database")


class Dify(App):
    name = "Dify"

    def migrating_service(self, config: ResolvedConfig, writers: Collection[str]) -> str | None:
        return _prefer_api([s for s in writers if image_repo(config.image(s)).endswith("langgenius/dify-api")
                            and SWITCH in config.environment(s)])

    def propose(self, p: Proposal, config: ResolvedConfig, service: str, probes: Probes) -> None:
        p.set("migration", "service", service, f"{service} runs {config.image(service)}, Dify's api image")
        p.set("migration", "switch", SWITCH, f"Dify's switch for migrating at start, in {service}'s environment")
        p.set("migration", "command", ["flask", "upgrade-db"], "Dify's own migration command (its entrypoint runs it "
                                                               "when MIGRATION_ENABLED is true)")
        p.set("migration", "replace_entrypoint", True, "Dify's entrypoint ignores its arguments (but with MODE=job): "
                                                       "given `flask upgrade-db` it would start the server")
        p.set("migration", "versions_path", "/app/api/migrations/versions", "where the dify-api image keeps them")
        p.set("migration", "render_sql_command", ["flask", "db", "upgrade", "{range}", "--sql"],
              "Flask-Migrate's offline mode prints the pending SQL")


class Mlflow(App):
    name = "MLflow"

    def migrating_service(self, config: ResolvedConfig, writers: Collection[str]) -> str | None:
        return _prefer_api([s for s in writers if _command(config, s)[:2] == ["mlflow", "server"]])

    def app_database(self, config: ResolvedConfig, service: str, db_service: str) -> tuple[str, str] | None:
        uri = backend_uri(_command(config, service))
        name = urlsplit(uri).path.lstrip("/") if uri else ""
        return (name, f"the database of {service}'s --backend-store-uri") if name else None

    def propose(self, p: Proposal, config: ResolvedConfig, service: str, probes: Probes) -> None:
        uri = backend_uri(_command(config, service))
        parts = urlsplit(uri or "")
        if not uri or not parts.scheme.startswith("postgresql"):
            p.gap("migration.command", f"{service} has no PostgreSQL --backend-store-uri: write the block by hand")
            return
        if parts.password:
            p.gap("migration.command", f"{service}'s --backend-store-uri carries a password, which the migration's "
                                       f"argv would show: move it to PGPASSWORD in {service}'s environment")
            return
        p.set("migration", "service", service, f"{service} runs `mlflow server`")
        p.set("migration", "switch", None, "MLflow migrates when it starts and has no switch; stackshift migrates "
                                           "once before, with the server stopped")
        p.set("migration", "command", ["mlflow", "db", "upgrade", uri], f"{service}'s --backend-store-uri (no "
                                                                        f"password in it)")
        p.set("migration", "render_sql_command", MLFLOW_RENDER_SQL, "Alembic's offline mode with MLflow's env.py")
        p.set("migration", "rehearsal", {"command": ["mlflow", "db", "upgrade",
                                                     urlunsplit(parts._replace(path="/{database}"))]},
              "offline SQL stops at MLflow's revisions that read the database: the rest is rehearsed on a copy")
        p.set("health", "version_command", MLFLOW_VERSION_COMMAND, "prints the installed MLflow version quickly")
        p.set("health", "timeout_seconds", 300, "a cold MLflow start imports the whole package: minutes on a busy "
                                                "host")
        image = config.image(service)
        folder = probes.package_dir(image, "mlflow") if probes.package_dir else None
        if folder is None:
            p.gap("migration.versions_path", f"could not find the mlflow package in {image} (is the image on this "
                                             f"engine?)")
        else:
            p.set("migration", "versions_path", f"{folder}/store/db_migrations/versions",
                  f"the mlflow package's folder in {image}")


def _command(config: ResolvedConfig, service: str) -> list[str]:
    command = config.raw["services"][service].get("command") or []
    return [str(a) for a in command] if isinstance(command, list) else str(command).split()


def backend_uri(command: list[str]) -> str | None:
    """`--backend-store-uri X` or `--backend-store-uri=X` of an `mlflow server` command."""
    for i, arg in enumerate(command):
        if arg.startswith("--backend-store-uri="):
            return arg.split("=", 1)[1]
        if arg == "--backend-store-uri" and i + 1 < len(command):
            return command[i + 1]
    return None


KINDS: tuple[App, ...] = (Dify(), Mlflow(), App())


def recognise(config: ResolvedConfig, writers: Collection[str]) -> App | None:
    """The first kind of app whose migrating service is among the writers."""
    return next((app for app in KINDS if app.migrating_service(config, writers)), None)
