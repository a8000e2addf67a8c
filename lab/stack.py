"""Deployments of the demo stack for the demo, the tests and the benchmark.

A deployment is a clone of the demo repository checked out at a release, with an operator's `.env`
(custom ports and password, a stale default, a user-only key) and real data seeded in PostgreSQL.
"""
from __future__ import annotations

import os
import random
import secrets
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from pydantic import SecretStr

from core.io.db import DbAccess
from lab import orphans
from lab.paths import DEMO_REPO, PROD_ENGINE  # noqa: F401 (PROD_ENGINE: where the tests find it)

SEEDED_TABLES = {"accounts": ("id", "name", "created_at"), "events": ("id", "account_id", "total_tokens", "payload")}


_GIVEN: set[int] = set()
_GIVING = threading.Lock()


def free_port() -> int:
    """A loopback port that nothing listens on, for a stack (or a server) to publish soon.

    Below the kernel's ephemeral range, from which outgoing connections take their source ports (one could take the
    port before the stack binds it); never the same twice in this process; and under pytest-xdist each worker draws
    from a slice of its own, so tests running in parallel never pick the same port."""
    last = min(int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]), 32_768) - 1
    first = max(1_024, last - 16_383)
    worker, workers = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and workers > 1:
        size = (last - first) // workers
        first += int(worker[2:]) * size
        last = first + size - 1
    with _GIVING:
        for _ in range(1000):
            port = random.randint(first, last)
            if port in _GIVEN:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _GIVEN.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {first}-{last}")


@dataclass
class Deployment:
    name: str
    compose_dir: Path
    backup_dir: Path
    api_port: int
    db_port: int
    db_password: str
    docker_host: str | None = None  # the engine the stack runs on (None: the local one, or $DOCKER_HOST)

    @property
    def docker_env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.docker_host} if self.docker_host else {}

    def compose(self, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", "--project-directory", str(self.compose_dir), "-p", self.name,
                               *args],
                              check=check, capture_output=True, text=True,
                              env=os.environ | self.docker_env | (env or {}))

    def connect(self, dbname: str = "app") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.db_port, user="app", password=self.db_password,
                               dbname=dbname, connect_timeout=5)

    def block_fields(self) -> dict:
        """Fields of a StackEnvironment block for this deployment."""
        return dict(
            compose_dir=self.compose_dir, project_name=self.name, db_host="127.0.0.1", db_port=self.db_port,
            db_name="app", db_user="app", db_password=self.db_password, backup_dir=self.backup_dir,
            health_timeout_seconds=60, docker_host=self.docker_host,
            http_checks=[{"name": "api health", "url": f"http://127.0.0.1:{self.api_port}/health",
                          "expect_status": 200, "expect_version_field": "version"}],
        )

    def api_health(self) -> dict | None:
        import json
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/health", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def down(self) -> None:
        self.compose("down", "--remove-orphans", "--timeout", "5", check=False)
        orphans.unclaim(self.name)


@dataclass(frozen=True)
class Seeded:
    """A stopped deployment's database directory and password, to start copies of it (`create(from_seed=…)`)."""

    data_dir: Path
    db_password: str


def seeded(root: Path, rows: int, release: str = "v1.0.0") -> Seeded:
    """Seeds `rows` once, stops the deployment cleanly and keeps its database directory: copying it is faster than
    seeding again (benchmarks start many deployments of one size)."""
    dep = create(root, f"seed-{rows}", release, rows)
    dep.compose("down", "--timeout", "30")
    return Seeded(dep.compose_dir / "volumes" / "db" / "data", dep.db_password)


def create(root: Path, name: str, release: str = "v1.0.0", rows: int = 200_000, *,  # noqa: PLR0913 (the stack, then where it runs and what it starts from)
           docker_host: str | None = None, from_seed: Seeded | None = None) -> Deployment:
    """Clones the demo stack at `release`, writes an operator's .env, starts it (on `docker_host`'s engine if
    given), seeds `rows` events (or starts on a copy of a seeded database directory)."""
    compose_dir = root / name
    subprocess.run(["git", "clone", "-q", str(DEMO_REPO), str(compose_dir)], check=True)
    subprocess.run(["git", "-C", str(compose_dir), "checkout", "-q", release], check=True)
    password = from_seed.db_password if from_seed else "pw-" + secrets.token_hex(8)
    dep = Deployment(name, compose_dir, root / f"{name}-backups", free_port(), free_port(), password, docker_host)
    if from_seed:
        (compose_dir / "volumes" / "db").mkdir(parents=True)
        subprocess.run(["cp", "-a", str(from_seed.data_dir), str(compose_dir / "volumes" / "db" / "data")], check=True)
    env = (compose_dir / ".env.example").read_text()
    env = env.replace("API_PORT=5001", f"API_PORT={dep.api_port}")
    env = env.replace("EXPOSE_DB_PORT=15432", f"EXPOSE_DB_PORT={dep.db_port}")
    env = env.replace("DB_PASSWORD=app-password", f"DB_PASSWORD={dep.db_password}")
    env = env.replace("LOG_LEVEL=INFO", "LOG_LEVEL = INFO")
    env += "\n# Mine: where support tickets go.\nSUPPORT_EMAIL=ops@example.com\n"
    (compose_dir / ".env").write_text(env)
    os.chmod(compose_dir / ".env", 0o600)
    orphans.claim(name)
    dep.compose("up", "--detach", "--wait", "--wait-timeout", "180")  # a loaded lab machine can take long
    if not from_seed:
        seed(dep, rows)
    return dep


def seed(dep: Deployment, rows: int) -> None:
    DbAccess("127.0.0.1", dep.db_port, "app", SecretStr(dep.db_password)).wait_until_reachable("app", 30)
    with dep.connect() as conn:
        conn.execute("INSERT INTO accounts (name) SELECT 'account ' || g FROM generate_series(1, 1000) g")
        conn.execute(
            "INSERT INTO events (account_id, total_tokens, payload) "
            "SELECT 1 + g %% 1000, g, md5(g::text) || repeat('x', 96) FROM generate_series(1, %s) g", (rows,))
        if conn.execute("SELECT to_regclass('event_links')").fetchone() != (None,):  # v2.0.1 on: a link per 100
            conn.execute("INSERT INTO event_links (event_id, note) SELECT id, 'link ' || id FROM events "
                         "WHERE id % 100 = 0")
    with dep.connect() as conn:
        conn.autocommit = True
        # Docker gives a container 64 MB of /dev/shm: a parallel vacuum's shared memory outgrows it at 10 M rows.
        conn.execute("SET max_parallel_maintenance_workers = 0")
        conn.execute("VACUUM ANALYZE")


def fingerprint(dep: Deployment) -> dict[str, tuple[int, int]]:
    """Row count and the sum of a 64-bit hash of every seeded row, per seeded table: the same as `checksums` in
    spirit, in constant memory (md5 over one aggregated string cannot hold 10 M rows)."""
    out = {}
    with dep.connect() as conn:
        for table, cols in SEEDED_TABLES.items():
            out[table] = tuple(conn.execute(sql.SQL(
                "SELECT count(*), coalesce(sum(hashtextextended(row({})::text, 0)), 0) FROM {}").format(
                _columns(cols), sql.Identifier(table))).fetchone())
    return out


def checksums(dep: Deployment) -> dict[str, tuple[int, str]]:
    """Row count and md5 over the seeded columns of each seeded table (unchanged by the v2 migration)."""
    out = {}
    with dep.connect() as conn:
        for table, cols in SEEDED_TABLES.items():
            out[table] = conn.execute(sql.SQL(
                "SELECT count(*), md5(string_agg(row({})::text, ',' ORDER BY id)) FROM {}").format(
                _columns(cols), sql.Identifier(table))).fetchone()
    return out


def _columns(names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))
