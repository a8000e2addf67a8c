"""Deployments of the MLflow stack for the tests and the benchmark: a clone of the stack's repository at a release,
an operator's `.env` (own ports and password), started, and seeded through MLflow's own client."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pydantic import SecretStr

from core.discovery.apps import MLFLOW_RENDER_SQL, MLFLOW_VERSION_COMMAND
from core.io.db import DbAccess
from lab.mlflow.build import REPO
from lab import orphans
from lab.stack import free_port

INSIDE = Path(__file__).resolve().parent / "inside.py"


@dataclass
class MlflowDeployment:
    name: str
    compose_dir: Path
    backup_dir: Path
    port: int
    db_port: int
    db_password: str

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", "--project-directory", str(self.compose_dir), "-p", self.name,
                               *args], check=check, capture_output=True, text=True, timeout=timeout)

    def connect(self, dbname: str = "mlflow") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.db_port, user="mlflow", password=self.db_password,
                               dbname=dbname, connect_timeout=5)

    def client(self, *args: str, timeout: float = 1800) -> str:
        """Runs lab/mlflow/inside.py with MLflow's client in a one-off container of the server's current image."""
        done = self.compose("run", "--rm", "--no-deps", "--no-TTY", "--volume", f"{INSIDE}:/lab/inside.py:ro",
                            "server", "python3", "/lab/inside.py", *args, check=False, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"MLflow client {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def listing(self, artifacts: bool = True) -> dict:
        return json.loads(self.client("list", *([] if artifacts else ["--no-artifacts"])))

    def get(self, path: str) -> tuple[int, str]:
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def block_fields(self) -> dict:
        """A complete stack-environment block for this deployment (docs/operator-guide.md shows the same)."""
        return dict(
            compose_dir=self.compose_dir, project_name=self.name, db_host="127.0.0.1", db_port=self.db_port,
            db_name="mlflow", db_user="mlflow", db_password=self.db_password, backup_dir=self.backup_dir,
            db_services=["db"], writer_services=["server"], migrate_service="server",
            migration_switch=None,
            migrate_command=["mlflow", "db", "upgrade", "postgresql+psycopg2://mlflow@db:5432/mlflow"],
            migrations_path="/opt/mlflow/lib/python3.11/site-packages/mlflow/store/db_migrations/versions",
            render_sql_command=RENDER_SQL,
            rehearsal_command=["mlflow", "db", "upgrade", "postgresql+psycopg2://mlflow@db:5432/{database}"],
            version_command=MLFLOW_VERSION_COMMAND,
            stop_timeouts={"server": 15},
            health_timeout_seconds=300,  # a cold MLflow start on a busy 2-core host can take minutes
            http_checks=[
                {"name": "mlflow health", "url": f"http://127.0.0.1:{self.port}/health", "expect_body": "OK"},
                {"name": "mlflow version", "url": f"http://127.0.0.1:{self.port}/version",
                 "expect_version_in_body": True},
            ],
        )

    def down(self) -> None:
        self.compose("down", "--remove-orphans", "--volumes", "--timeout", "5", check=False)
        orphans.unclaim(self.name)


# MLflow renders offline with Alembic and its own env.py, given a URL of the right dialect (no connection is made):
# the same command `stackshift init` proposes for an MLflow stack.
RENDER_SQL = MLFLOW_RENDER_SQL


def create(root: Path, name: str, release: str = "3.6.0", *,  # noqa: PLR0913 (the stack, then how much it is seeded)
           experiments: int = 2, runs: int = 3, metric_rows: int = 1200) -> MlflowDeployment:
    compose_dir = root / name
    subprocess.run(["git", "clone", "-q", str(REPO), str(compose_dir)], check=True)
    subprocess.run(["git", "-C", str(compose_dir), "checkout", "-q", release], check=True)
    dep = MlflowDeployment(name, compose_dir, root / f"{name}-backups", free_port(), free_port(),
                           "pw-" + secrets.token_hex(8))
    env = (compose_dir / ".env.example").read_text()
    env = env.replace("MLFLOW_PORT=5000", f"MLFLOW_PORT={dep.port}")
    env = env.replace("EXPOSE_DB_PORT=15433", f"EXPOSE_DB_PORT={dep.db_port}")
    env = env.replace("DB_PASSWORD=mlflow-password", f"DB_PASSWORD={dep.db_password}")
    (compose_dir / ".env").write_text(env)
    os.chmod(compose_dir / ".env", 0o600)
    orphans.claim(name)
    dep.compose("up", "--detach", "--wait", "--wait-timeout", "180")
    DbAccess("127.0.0.1", dep.db_port, "mlflow", SecretStr(dep.db_password)).wait_until_reachable("mlflow", 30)
    if metric_rows:
        dep.client("seed", "--experiments", str(experiments), "--runs", str(runs), "--metric-rows", str(metric_rows))
        with dep.connect() as conn:
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
    return dep
