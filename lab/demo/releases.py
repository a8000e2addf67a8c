"""The demo stack's releases: what each tag of the demo repository contains.

Each release is a `docker-compose.yaml` and a `.env.example`, published as a tag of a local git
repository the way Dify publishes its `docker/` directory, plus the app image it names.
"""
from dataclasses import dataclass, field

APP_REVISIONS = {
    "1.0.0": ["a1_baseline.py"],
    "2.0.0": ["a1_baseline.py", "b2_v2_schema.py"],
    "3.0.0": ["a1_baseline.py", "b2_v2_schema.py", "c3_v3_audit.py", "d4_v3_broken.py"],
    # the seed's case beside v2: 2.0.1 adds a small table pointing at events.id; 2.1.0's only migration widens it
    "2.0.1": ["a1_baseline.py", "b2_v2_schema.py", "e5_v201_event_links.py"],
    "2.1.0": ["a1_baseline.py", "b2_v2_schema.py", "e5_v201_event_links.py", "f6_v210_widen_events_id.py"],
}
HEADS = {"1.0.0": "a1b2c3d4e5f6", "2.0.0": "b2c3d4e5f6a7", "3.0.0": "d4e5f6a7b8c9", "2.0.1": "e5f6a7b8c9d0",
         "2.1.0": "f6a7b8c9d0e1"}
POSTGRES_TAG = "15"


@dataclass(frozen=True)
class Release:
    tag: str
    app_version: str
    db_service: str
    env_example: str
    api_extra_env: dict = field(default_factory=dict)
    after: str = ""  # the tag this release's commit follows in the demo repository (default: the previous one)


def _env_example(*, log_level: str, db_host: str, legacy: bool, v2_keys: bool) -> str:
    lines = [
        "# Demo stack settings, shaped like Dify's docker/.env.example.",
        "",
        "# ------------------------------",
        "# Common",
        "# ------------------------------",
        "",
        "# Log level of api and worker.",
        f"LOG_LEVEL={log_level}",
    ]
    if legacy:
        lines += ["# Old compatibility switch.", "LEGACY_MODE=false"]
    lines += [
        "# Run `alembic upgrade head` when a container starts (like Dify's MIGRATION_ENABLED).",
        "MIGRATION_ENABLED=true",
        "# Port of the api on 127.0.0.1.",
        "API_PORT=5001",
        "# Key used to sign sessions; change it.",
        "SECRET_KEY=sk-change-me",
    ]
    if v2_keys:
        lines += ["# Worker threads.", "WORKER_CONCURRENCY=2", 'FEATURE_FLAGS="search,export"']
    lines += [
        "",
        "# ------------------------------",
        "# Database",
        "# ------------------------------",
        "",
        f"DB_HOST={db_host}",
        "DB_PORT=5432",
        "DB_USERNAME=app",
        "DB_PASSWORD=app-password",
        "DB_DATABASE=app",
        "# Port of PostgreSQL on 127.0.0.1.",
        "EXPOSE_DB_PORT=15432",
        "# Registry the images come from.",
        "REGISTRY=127.0.0.1:5000",
        "",
    ]
    return "\n".join(lines)


V1_ENV = _env_example(log_level="INFO", db_host="db", legacy=True, v2_keys=False)
V2_ENV = _env_example(log_level="WARNING", db_host="db_postgres", legacy=False, v2_keys=True)

RELEASES = [
    Release("v1.0.0", "1.0.0", "db", V1_ENV),
    Release("v2.0.0", "2.0.0", "db_postgres", V2_ENV),
    Release("v3.0.0", "3.0.0", "db_postgres", V2_ENV),
    Release("v3.0.0-unhealthy", "2.0.0", "db_postgres", V2_ENV, {"SIMULATE_UNHEALTHY": "true"}, "v2.0.0"),
    # v2.0.1 → v2.1.0: a primary key widened int → bigint on the biggest table (the online preparation's case)
    Release("v2.0.1", "2.0.1", "db_postgres", V2_ENV, after="v2.0.0"),
    Release("v2.1.0", "2.1.0", "db_postgres", V2_ENV),
    Release("v2.1.0-unhealthy", "2.1.0", "db_postgres", V2_ENV, {"SIMULATE_UNHEALTHY": "true"}, "v2.0.1"),
]


def compose_yaml(release: Release) -> str:
    """The release's docker-compose.yaml (api and worker share one image; the db keeps ./volumes/db/data).

    Health checks every 2 s: each check is a process the engine starts in the container, about 75 ms of CPU with
    the engine's share (measured: a database container checked every 500 ms took 0.077 of a core while idle). Docker
    20.10 has no faster `start_interval`, so a start is seen healthy up to 2 s late; the test stacks live long."""
    extra = "".join(f"      {k}: \"{v}\"\n" for k, v in release.api_extra_env.items())
    db = release.db_service
    return f"""\
x-shared-env: &shared-env
  LOG_LEVEL: ${{LOG_LEVEL:-INFO}}
  MIGRATION_ENABLED: ${{MIGRATION_ENABLED:-true}}
  SECRET_KEY: ${{SECRET_KEY:-sk-change-me}}
  DB_HOST: ${{DB_HOST:-{db}}}
  DB_PORT: ${{DB_PORT:-5432}}
  DB_USERNAME: ${{DB_USERNAME:-app}}
  DB_PASSWORD: ${{DB_PASSWORD:-app-password}}
  DB_DATABASE: ${{DB_DATABASE:-app}}

services:
  api:
    image: ${{REGISTRY:-127.0.0.1:5000}}/demo/app:{release.app_version}
    restart: always
    environment:
      <<: *shared-env
      APP_ROLE: api
{extra}    ports:
      - "127.0.0.1:${{API_PORT:-5001}}:5001"
    volumes:
      - ./volumes/app/storage:/app/storage
    depends_on:
      {db}:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:5001/health', timeout=2)"]
      interval: 2s
      timeout: 3s
      retries: 3
      start_period: 10s

  worker:
    image: ${{REGISTRY:-127.0.0.1:5000}}/demo/app:{release.app_version}
    restart: always
    environment:
      <<: *shared-env
      APP_ROLE: worker
    volumes:
      - ./volumes/app/storage:/app/storage
    depends_on:
      {db}:
        condition: service_healthy

  {db}:
    image: ${{REGISTRY:-127.0.0.1:5000}}/demo/postgres:{POSTGRES_TAG}
    restart: always
    environment:
      POSTGRES_USER: ${{DB_USERNAME:-app}}
      POSTGRES_PASSWORD: ${{DB_PASSWORD:-app-password}}
      POSTGRES_DB: ${{DB_DATABASE:-app}}
      PGDATA: /var/lib/postgresql/data/pgdata
    volumes:
      - ./volumes/db/data:/var/lib/postgresql/data
    ports:
      - "127.0.0.1:${{EXPOSE_DB_PORT:-15432}}:5432"
    healthcheck:
      test: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "${{DB_USERNAME:-app}}", "-d", "${{DB_DATABASE:-app}}"]
      interval: 2s
      timeout: 3s
      retries: 15
      start_period: 10s
"""
