"""A scratch PostgreSQL 15 server (the lab's Debian-built image) on a loopback port, for tests and benchmarks."""
from __future__ import annotations

import secrets
from contextlib import contextmanager
from dataclasses import dataclass

import docker
import psycopg
from pydantic import SecretStr

from core.io.db import DbAccess
from core.errors import DatabaseUnreachable
from lab.stack import free_port

IMAGE = "127.0.0.1:5000/demo/postgres:15"


@dataclass(frozen=True)
class Server:
    port: int
    user: str
    password: str
    dbname: str

    def dsn(self) -> str:
        """Without the password: give it in PGPASSWORD."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def connect(self, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                               dbname=self.dbname, autocommit=autocommit)


@contextmanager
def scratch_server(name_prefix: str = "stackshift-scratch-pg", shm: str = "256m"):
    """Starts a throw-away server and yields it; the container and its data go away on exit."""
    client = docker.from_env()
    port = free_port()
    password = secrets.token_urlsafe(12)
    ctr = client.containers.create(
        IMAGE, name=f"{name_prefix}-{secrets.token_hex(3)}", shm_size=shm,
        environment={"POSTGRES_USER": "lab", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "app",
                     "PGDATA": "/var/lib/postgresql/data/pgdata"},
        ports={"5432/tcp": ("127.0.0.1", port)},
    )
    server = Server(port, "lab", password, "app")
    try:  # created, then started inside the try: a container that cannot start is removed too
        ctr.start()
        try:
            DbAccess("127.0.0.1", port, server.user, SecretStr(password)).wait_until_reachable(server.dbname, 60)
        except DatabaseUnreachable as exc:
            raise RuntimeError(f"scratch PostgreSQL did not start ({exc}): " + ctr.logs(tail=20).decode()) from None
        yield server
    finally:
        ctr.remove(force=True, v=True)
