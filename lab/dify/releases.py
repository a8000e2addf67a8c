"""The Dify-faithful stack's releases: Dify's real compose files, each image renamed into the lab's registry.

The git repository (`lab.dify.build`) is laid out like Dify's: the compose directory is `docker/`, the tags are
Dify's (no `v`), `docker/.env`, `docker/volumes/` and `docker/docker-compose.override.yaml` are untracked.

| tag | what it is |
|---|---|
| `1.12.1` | Dify 1.12.1's `docker/docker-compose.yaml` and `.env.example` (shared/fixtures/dify) |
| `1.15.0` | the split layout (`tests/fixtures/dify-split/1.15.0/docker`: compose, `.env.example`, `envs/**`) |
| `1.15.0-broken` | 1.15.0 whose api image carries two more revisions, the second failing on any seeded row |
| `1.15.0-badjob` | 1.15.0 whose one-shot job `init_permissions` fails (exit 3): its image is `busybox:badjob` |

Every file is Dify's, byte for byte, except the `image:` lines: `langgenius/dify-api:1.12.1` becomes
`127.0.0.1:5000/langgenius/dify-api:1.12.1`. Pre-flight asks each image's registry whether the target's images
exist, and docker.io cannot be reached here; the stand-ins are also tagged under the bare names on the first engine.
`nginx/` and `ssrf_proxy/` hold stand-ins of Dify's entrypoint scripts and templates (lab/dify/docker).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab.paths import LAB_HOME

REGISTRY = "127.0.0.1:5000"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REPO = LAB_HOME / "dify-stack.git"
HEADS = {"1.12.1": "a1b2c3d4e5f6", "1.15.0": "b2c3d4e5f6a7", "1.15.0-broken": "d4e5f6a7b8c9"}
API_REVISIONS = {
    "1.12.1": ["a1_baseline.py"],
    "1.15.0": ["a1_baseline.py", "b2_v2_schema.py"],
    "1.15.0-broken": ["a1_baseline.py", "b2_v2_schema.py", "c3_v3_audit.py", "d4_v3_broken.py"],
}


@dataclass(frozen=True)
class Standin:
    """A stand-in image: the roles of `standin.py` it links in `/usr/local/bin`, and its command."""

    ref: str
    roles: tuple[str, ...]
    cmd: tuple[str, ...]


STANDINS = [
    Standin("redis:6-alpine", ("redis-server", "redis-cli"), ("redis-server",)),
    Standin("ubuntu/squid:latest", ("squid",), ("squid", "-NYC")),
    Standin("nginx:latest", ("nginx",), ("nginx", "-g", "daemon off;")),
    Standin("semitechnologies/weaviate:1.27.0", ("weaviate",), ("weaviate",)),
    *(Standin(f"langgenius/dify-sandbox:{t}", ("dify-sandbox", "curl"), ("dify-sandbox",))
      for t in ("0.2.12", "0.2.15")),
    *(Standin(f"langgenius/dify-plugin-daemon:{t}", ("dify-plugin-daemon",), ("dify-plugin-daemon",))
      for t in ("0.5.3-local", "0.6.3-local")),
    *(Standin(f"langgenius/dify-web:{t}", ("dify-web",), ("dify-web",)) for t in ("1.12.1", "1.15.0")),
    Standin("langgenius/dify-agent-backend:1.15.0", ("dify-agent-backend",), ("dify-agent-backend",)),
    Standin("langgenius/dify-agent-local-sandbox:1.15.0", ("dify-agent-local-sandbox", "curl"),
            ("dify-agent-local-sandbox",)),
]
BUSYBOX = "busybox:latest"
BADJOB = "busybox:badjob"  # its `sh` fails: the one-shot job of 1.15.0-badjob exits 3
POSTGRES = "postgres:15-alpine"
API = "langgenius/dify-api"


def shared_fixtures() -> Path:
    """Dify's real files (shared/fixtures/dify), found as the tests find them (tests/conftest.py)."""
    from tests.conftest import DIFY

    return DIFY


def renamed(compose: str) -> str:
    """The compose file with every image of an active service moved into the lab's registry."""
    ours = {s.ref for s in STANDINS} | {BUSYBOX, POSTGRES} | {f"{API}:{t}" for t in API_REVISIONS}

    def one(m: re.Match) -> str:
        return f"{m[1]}{REGISTRY}/{m[2]}" if m[2] in ours else m[0]
    return re.sub(r"^(\s+image: )(\S+)$", one, compose, flags=re.M)


def release_files(tag: str) -> dict[str, bytes]:
    """The `docker/` folder of a tag: path under the repository → bytes."""
    if tag == "1.12.1":
        fixtures = shared_fixtures()
        files = {"docker/docker-compose.yaml": (fixtures / "docker-compose.1.12.1.yaml").read_bytes(),
                 "docker/.env.example": (fixtures / "env.example.1.12.1").read_bytes()}
    else:
        split = ROOT / "tests" / "fixtures" / "dify-split" / "1.15.0"
        files = {str(p.relative_to(split)): p.read_bytes() for p in sorted(split.rglob("*")) if p.is_file()}
    compose = renamed(files["docker/docker-compose.yaml"].decode())
    if tag.endswith("-broken"):
        compose = compose.replace(f"{API}:1.15.0", f"{API}:{tag}")
    if tag.endswith("-badjob"):
        compose = compose.replace(f"{REGISTRY}/{BUSYBOX}", f"{REGISTRY}/{BADJOB}")
    files["docker/docker-compose.yaml"] = compose.encode()
    files |= {f"docker/{p.relative_to(HERE / 'docker')}": p.read_bytes()
              for p in sorted((HERE / "docker").rglob("*")) if p.is_file()}
    return files


GITIGNORE = """\
docker/.env
docker/envs/**/*.env
docker/volumes/
docker/docker-compose.override.yaml
docker/nginx/conf.d/
docker/env-backup/
"""
TAGS = ("1.12.1", "1.15.0", "1.15.0-broken", "1.15.0-badjob")
