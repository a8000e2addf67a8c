"""Deployments of the Dify-faithful stack: a clone of the repository at a Dify tag, run from its `docker/` folder as
Dify's install guide says (`cp .env.example .env`, `docker compose up -d`), with what an operator changes in `.env`
(ports on loopback, unique per deployment; a database password and a secret key of their own) and the override file
`stackshift init` asks for (PostgreSQL published on loopback).
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
from pydantic import SecretStr

from core.io.db import DbAccess
from lab import orphans
from lab.dify.releases import REPO
from lab.stack import free_port

OVERRIDE = """\
# The operator's: PostgreSQL on loopback, for stackshift and backups (Dify's compose file publishes no port for it).
services:
  db_postgres:
    ports:
      - "127.0.0.1:{port}:5432"
"""


@dataclass
class DifyDeployment:
    name: str
    checkout: Path
    backup_dir: Path
    nginx_port: int
    db_port: int
    db_password: str
    docker_host: str | None = None

    @property
    def compose_dir(self) -> Path:
        return self.checkout / "docker"

    @property
    def docker_env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.docker_host} if self.docker_host else {}

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", "--project-directory", str(self.compose_dir), "-p", self.name,
                               *args], check=check, capture_output=True, text=True, timeout=timeout,
                              env=os.environ | self.docker_env)

    def connect(self, dbname: str = "dify") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.db_port, user="postgres", password=self.db_password,
                               dbname=dbname, connect_timeout=5)

    def health(self) -> dict | None:
        """The api's `/health`, through nginx as a browser reaches it."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.nginx_port}/health", timeout=3) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def states(self) -> dict[str, tuple[str, int]]:
        """Every container of the project (one-shot jobs too): service → (state, exit code)."""
        done = self.compose("ps", "--all", "--format", "json")
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        return {r["Service"]: (r["State"], r["ExitCode"]) for r in rows}

    def revision(self) -> list[str]:
        with self.connect() as conn:
            return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]

    def down(self) -> None:
        self.compose("down", "--remove-orphans", "--timeout", "5", check=False)
        orphans.unclaim(self.name)


def operator_env(example: str, dep: DifyDeployment) -> str:
    """Dify's `.env.example` as an operator edits it: published ports on loopback (compose's `HOST:PORT` form in
    the EXPOSE_* values), a password and a secret key of their own."""
    plugin_port = free_port()
    swaps = {
        "EXPOSE_NGINX_PORT=80": f"EXPOSE_NGINX_PORT=127.0.0.1:{dep.nginx_port}",
        "EXPOSE_NGINX_SSL_PORT=443": f"EXPOSE_NGINX_SSL_PORT=127.0.0.1:{free_port()}",
        "EXPOSE_PLUGIN_DEBUGGING_PORT=5003": f"EXPOSE_PLUGIN_DEBUGGING_PORT=127.0.0.1:{plugin_port}",
        "DB_PASSWORD=difyai123456": f"DB_PASSWORD={dep.db_password}",
        "SECRET_KEY=sk-9f73s3ljTXVcMT3Blb3ljTqtsKiGHXVcMT3BlbkFJLK7U": f"SECRET_KEY=sk-{secrets.token_hex(16)}",
    }
    lines = example.splitlines()
    for old, new in swaps.items():
        at = lines.index(old)  # a template without the line is a different Dify: fail loudly
        lines[at] = new
    return "\n".join(lines) + "\n"


def create(root: Path, name: str, release: str = "1.12.1", *, rows: int = 500,
           docker_host: str | None = None) -> DifyDeployment:
    """Clones the stack at `release`, writes the operator's `.env` and override, starts it (`up --wait`) and seeds
    `rows` events through the app's own tables."""
    checkout = root / name
    subprocess.run(["git", "clone", "-q", str(REPO), str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "checkout", "-q", release], check=True)
    dep = DifyDeployment(name, checkout, root / f"{name}-backups", free_port(), free_port(),
                         "pw-" + secrets.token_hex(8), docker_host)
    env_file = dep.compose_dir / ".env"
    env_file.write_text(operator_env((dep.compose_dir / ".env.example").read_text(), dep))
    os.chmod(env_file, 0o600)
    (dep.compose_dir / "docker-compose.override.yaml").write_text(OVERRIDE.format(port=dep.db_port))
    orphans.claim(name)
    dep.compose("up", "--detach", "--wait", "--wait-timeout", "240")
    DbAccess("127.0.0.1", dep.db_port, "postgres", SecretStr(dep.db_password)).wait_until_reachable("dify", 30)
    if rows:
        seed(dep, rows)
    return dep


def seed(dep: DifyDeployment, rows: int) -> None:
    with dep.connect() as conn:
        conn.execute("INSERT INTO accounts (name) SELECT 'account ' || g FROM generate_series(1, 50) g")
        conn.execute("INSERT INTO events (account_id, total_tokens, payload) "
                     "SELECT 1 + g %% 50, g, md5(g::text) FROM generate_series(1, %s) g", (rows,))


def fingerprint(dep: DifyDeployment) -> dict[str, tuple]:
    """Row count and md5 of the seeded rows, per table."""
    with dep.connect() as conn:
        return {t: conn.execute(f"SELECT count(*), md5(string_agg(row({cols})::text, ',' ORDER BY id)) FROM {t}")
                .fetchone() for t, cols in (("accounts", "id, name"), ("events", "id, account_id, payload"))}
