"""What end-to-end tests observe of a deployment, all read from real sources."""
import json
import os
import signal
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from core.io.compose import parse_ps
from core.cutover.lock import LOCK_FILE
from lab import stack
from tests.conftest import ROOT


def wait_for(flow_run_id, done, seconds: float = 300):
    """The flow run once `done(its state)`, read every second; the test fails after `seconds`."""
    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and done(run.state):
                return run
            time.sleep(1)
    pytest.fail(f"flow run {flow_run_id} is still {run.state.name if run.state else None} after {seconds} s")


def final(flow_run_id, seconds: float = 500):
    """The flow run once it has ended (its final state is reported after the flow let go of the stack's lock)."""
    return wait_for(flow_run_id, lambda s: s.is_final(), seconds)


def services(dep: stack.Deployment) -> dict:
    out = subprocess.run(["docker", "compose", "-p", dep.name, "ps", "--all", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    return {s.service: s for s in parse_ps(out)}


def revision(dep: stack.Deployment) -> list[str]:
    with dep.connect() as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def tables(dep: stack.Deployment) -> set[str]:
    with dep.connect() as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def schemas(dep: stack.Deployment) -> set[str]:
    with dep.connect() as conn:
        return {r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema)'")}


def databases(dep: stack.Deployment) -> set[str]:
    with dep.connect("postgres") as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")}


def head(dep: stack.Deployment) -> str:
    return subprocess.run(["git", "-C", str(dep.compose_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def snapshot(dep: stack.Deployment) -> dict:
    """Everything an upgrade could change: git HEAD, .env bytes and mode, containers, schema, data, databases,
    backups."""
    ctrs = subprocess.run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={dep.name}",
                           "--format", "{{.ID}} {{.Image}} {{.State}}"], check=False, capture_output=True,
                          text=True).stdout
    env = dep.compose_dir / ".env"
    return {
        "head": head(dep), "env": env.read_bytes(), "env_mode": env.stat().st_mode & 0o777,
        "containers": sorted(ctrs.splitlines()), "revision": revision(dep), "tables": tables(dep),
        "schemas": schemas(dep),
        "data": stack.checksums(dep), "databases": databases(dep),
        # the stack's lock file is taken (created) before anything is read: it is not a change to the stack
        "backups": sorted(p.name for p in dep.backup_dir.rglob("*") if p.is_file() and p.name != LOCK_FILE)
        if dep.backup_dir.exists() else [],
        "env_backups": sorted(p.name for p in (dep.compose_dir / "env-backup").glob("*"))
        if (dep.compose_dir / "env-backup").exists() else [],
    }


def artifacts(prefix: str) -> dict[str, str]:
    """Latest artifact of each key starting with `prefix`: key → its data (markdown text or table JSON)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=prefix)))
    out = {}
    for a in sorted(found, key=lambda a: a.created):
        out[a.key] = a.data if isinstance(a.data, str) else json.dumps(a.data)
    return out


class OwnPrefectServer:
    """A Prefect server of one test's own (its own home, database and port), for a test that stops the server: the
    lab's server keeps serving every other test meanwhile (they run in parallel), and nobody else's run is hit."""

    def __init__(self, home: Path):
        self.home = home
        self.url = f"http://127.0.0.1:{stack.free_port()}/api"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Starts it and returns at once (it takes seconds to serve: `wait_up`)."""
        port = self.url.split(":")[2].split("/")[0]
        env = os.environ | {"PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.url, "PREFECT_UI_ENABLED": "false",
                            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        with (self.home / "server.log").open("ab") as log:
            self.proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "prefect"), "server", "start", "--host",
                                          "127.0.0.1", "--port", port], env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                return True
        except OSError:
            return False

    def wait_up(self, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.up():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        log = (self.home / "server.log").read_text()[-3000:]
        pytest.fail(f"the test's own Prefect server did not serve on {self.url} in {seconds} s:\n{log}")

    def stop(self) -> None:
        """SIGTERM to the server's process group (what stopping a server sends), SIGKILL after 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    @contextmanager
    def as_api(self):
        """This process's Prefect client talks to this server inside the block."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.url}):
            yield
