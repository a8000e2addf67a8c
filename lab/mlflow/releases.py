"""The MLflow stack as its operators would deploy it: a compose directory in git, one tag per release.

- `server`: MLflow's tracking server from PyPI wheels (image built by `lab.mlflow.build`), with `init: true` (without
  it the server ignores SIGTERM and takes ~11 s to stop), `--allowed-hosts` naming the service (requests with
  `Host: server:5000` get 403 otherwise), artifacts proxied by the server into `./volumes/artifacts`.
- `db`: the lab's PostgreSQL 15, data in `./volumes/db/data`.

The backend URI carries no password: libpq reads `PGPASSWORD` from the service's environment, so neither the
server's argv nor a migration's (`mlflow db upgrade <uri>`) holds the secret. SQLAlchemy 2.1 changed the driver
behind `postgresql://`, hence `postgresql+psycopg2://`.

| tag | what it is |
|---|---|
| `3.6.0` | MLflow 3.6.0 (Alembic head `bf29a5ff90ea`) |
| `3.17.2` | MLflow 3.17.2 (head `dc11669786a5`, 27 revisions later) |
| `3.17.2-broken` | 3.17.2 whose health check can never pass (it probes a port nothing listens on) |
"""
from __future__ import annotations

from dataclasses import dataclass

VERSIONS = ("3.6.0", "3.17.2")
HEADS = {"3.6.0": "bf29a5ff90ea", "3.17.2": "dc11669786a5"}
# 3.6.0 does not start with SQLAlchemy 2.1; both get the same pins so the two images differ only in MLflow.
PIP_REQUIREMENTS = {v: [f"mlflow=={v}", "sqlalchemy<2.1", "psycopg2-binary"] for v in VERSIONS}
IMAGE_REPO = "mlflow/mlflow"
POSTGRES_IMAGE = "demo/postgres:15"  # the lab's PostgreSQL 15 (lab.build), shared with the demo stack

ENV_EXAMPLE = """\
# Registry the images come from.
REGISTRY=127.0.0.1:5000
# Where the tracking server is published (loopback only).
MLFLOW_PORT=5000
# Where PostgreSQL is published (loopback only), for backups and stackshift.
EXPOSE_DB_PORT=15433
DB_USERNAME=mlflow
DB_PASSWORD=mlflow-password
DB_DATABASE=mlflow
"""


@dataclass(frozen=True)
class Release:
    tag: str
    mlflow_version: str
    health_port: int = 5000  # the port the compose health check probes (the broken release probes a dead one)
    health_retries: int = 45  # a first start on an empty database creates the schema: it can take a while


RELEASES = [Release("3.6.0", "3.6.0"), Release("3.17.2", "3.17.2"), Release("3.17.2-broken", "3.17.2", 5999, 5)]


def compose_yaml(r: Release) -> str:
    probe = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{r.health_port}/health', timeout=2)"
    return f"""\
services:
  server:
    image: ${{REGISTRY:-127.0.0.1:5000}}/{IMAGE_REPO}:{r.mlflow_version}
    init: true
    restart: always
    environment:
      PGPASSWORD: ${{DB_PASSWORD:-mlflow-password}}
    command:
      - mlflow
      - server
      - --host=0.0.0.0
      - --port=5000
      - --workers=1
      - --backend-store-uri=postgresql+psycopg2://${{DB_USERNAME:-mlflow}}@db:5432/${{DB_DATABASE:-mlflow}}
      - --artifacts-destination=/mlartifacts
      - --allowed-hosts=server,server:5000,localhost,localhost:*,127.0.0.1,127.0.0.1:*
    ports:
      - "127.0.0.1:${{MLFLOW_PORT:-5000}}:5000"
    volumes:
      - ./volumes/artifacts:/mlartifacts
    depends_on:
      db:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "python3", "-c", "{probe}"]
      interval: 2s
      timeout: 3s
      retries: {r.health_retries}

  db:
    image: ${{REGISTRY:-127.0.0.1:5000}}/{POSTGRES_IMAGE}
    restart: always
    environment:
      POSTGRES_USER: ${{DB_USERNAME:-mlflow}}
      POSTGRES_PASSWORD: ${{DB_PASSWORD:-mlflow-password}}
      POSTGRES_DB: ${{DB_DATABASE:-mlflow}}
      PGDATA: /var/lib/postgresql/data/pgdata
    volumes:
      - ./volumes/db/data:/var/lib/postgresql/data
    ports:
      - "127.0.0.1:${{EXPOSE_DB_PORT:-15433}}:5432"
    healthcheck:
      test: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "${{DB_USERNAME:-mlflow}}", "-d", "${{DB_DATABASE:-mlflow}}"]
      interval: 2s
      timeout: 3s
      retries: 15
"""
