"""One way in to a stack's resources: the block's Docker endpoint, database credentials and HTTP checks.

Every command a step runs goes through `StackIO.run`, which adds the block's `DOCKER_HOST` and, only for the
steps that need it, the database password (in the child's environment, never argv). Steps talk to PostgreSQL
through `sql`, `databases` and `revisions` here. Tests hand steps a stand-in with the same methods.
"""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

from core.settings import Settings
from core.io import commands as c
from core.io import db as dbops
from core.errors import DockerHostUnreachable, UpgradeError
from core.io.executor import run
from core.parallel import all_at_once, first_failure
from core.io.http import CheckResult, http_probe
from core.io.compose import service_verdict
from core.io.pgsql import Statement
from core.polling import poll


LOCAL_ENGINE = "unix:///var/run/docker.sock"
ENGINE_LOOK_EVERY = 0.5  # seconds between two reads of the containers' states while waiting for health
JOB_LOG_LINES = 5  # a failed one-shot job's last log lines, in its failure's message


@dataclass(frozen=True)
class DockerEndpoint:
    """The Docker engine of one environment: the block's `docker_host`, else $DOCKER_HOST, else the local socket.
    Resolved once and given explicitly to the SDK and, as DOCKER_HOST, to every docker/compose command, so that
    both reach the same engine whatever the CLI's active `docker context` says."""

    host: str = LOCAL_ENGINE
    timeout: int = 30

    @classmethod
    def of(cls, cfg: Settings) -> DockerEndpoint:
        return cls(cfg.stack.docker_host or os.environ.get("DOCKER_HOST") or LOCAL_ENGINE)

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    def client(self):
        """A docker SDK client for this engine; raises DockerHostUnreachable if it does not answer a ping."""
        import docker

        where = self.host
        try:
            client = docker.DockerClient(base_url=self.host, timeout=self.timeout)
            client.ping()
        except Exception as exc:  # docker raises DockerException, requests' errors, OSError...
            raise DockerHostUnreachable(where, str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__) \
                from None
        return client


def container_states(client, project: str) -> dict[str, dict]:
    """Service → the `State` of its (newest) container in the project, one-off containers left out."""
    return {s: client.api.inspect_container(cid)["State"] for s, cid in _service_containers(client, project).items()}


def health_verdict(state: dict | None, job: bool = False) -> str:
    """ok | wait | failed, for one container's `State` (as `docker inspect` gives it): `service_verdict`, the one
    definition the verification uses too; `job` for a one-shot service (`ResolvedConfig.jobs`)."""
    if not state:
        return "wait"
    return service_verdict(state.get("Status"), (state.get("Health") or {}).get("Status") or "", state.get("ExitCode"),
                           job=job, restarting=bool(state.get("Restarting")))


def last_log_lines(client, project: str, service: str, lines: int = JOB_LOG_LINES) -> list[str]:
    """The last lines a service's (newest) container printed, stdout and stderr, for a failure's message."""
    cid = _service_containers(client, project, [service]).get(service)
    if cid is None:
        return []
    out = client.api.logs(cid, stdout=True, stderr=True, tail=lines)
    return [line for line in out.decode("utf-8", errors="replace").splitlines() if line.strip()][-lines:]


def describe_state(state: dict | None) -> str:
    if not state:
        return "has no container"
    health = (state.get("Health") or {})
    last = (health.get("Log") or [{}])[-1].get("Output", "").strip().splitlines()
    return (f"is {state.get('Status')}" + (f" ({health.get('Status')})" if health.get("Status") else "")
            + (f", exit code {state.get('ExitCode')}" if state.get("Status") == "exited" else "")
            + (f": {last[-1][:200]}" if last and health.get("Status") == "unhealthy" else ""))


def _service_containers(client, project: str, services: list[str] | None = None) -> dict[str, str]:
    """Service → id of its (newest) non one-off container in the project (only `services`, if given)."""
    out: dict[str, tuple[int, str]] = {}
    for ctr in client.api.containers(all=True, filters={"label": f"com.docker.compose.project={project}"}):
        labels = ctr.get("Labels") or {}
        service = labels.get("com.docker.compose.service")
        if labels.get("com.docker.compose.oneoff") == "True" or service is None or \
                (services is not None and service not in services):
            continue
        if service not in out or ctr.get("Created", 0) > out[service][0]:
            out[service] = (ctr.get("Created", 0), ctr["Id"])
    return {s: cid for s, (_, cid) in out.items()}


def _publishes(container: dict, ports: set[int]) -> bool:
    """Whether an inspected container publishes one of `ports` on the host."""
    bindings = (container.get("HostConfig") or {}).get("PortBindings") or {}
    return any(int(b.get("HostPort") or 0) in ports for binds in bindings.values() for b in (binds or []))


def _with_deps(services: set[str], deps: dict[str, set[str]]) -> set[str]:
    out, todo = set(), list(services)
    while todo:
        s = todo.pop()
        if s not in out:
            out.add(s)
            todo += deps.get(s, ())
    return out


@dataclass(frozen=True)
class _Waiting:
    """What a wait still waits on, as `core.polling.poll` reads it: done when nothing."""

    on: list[str]

    @property
    def ok(self) -> bool:
        return not self.on


def _at_once(calls: list) -> None:
    """Runs engine calls at the same time; raises the first failure once all have ended."""
    first_failure(all_at_once(calls))


@dataclass
class StackIO:
    """The real I/O of one environment, made from its block."""

    cfg: Settings
    project: str

    @property
    def endpoint(self) -> DockerEndpoint:
        return DockerEndpoint.of(self.cfg)

    @property
    def db(self) -> dbops.DbAccess:
        return dbops.DbAccess.of(self.cfg)

    @cached_property
    def env_secrets(self) -> list[str]:
        """Secret values of the stack's .env (as it is now): apps print them in tracebacks; errors must not."""
        from core.env import envmerge
        from core.env import envsecrets
        path = Path(self.cfg.stack.compose_dir) / self.cfg.stack.env_file
        try:
            values = envmerge.parse(path.read_text(encoding="utf-8-sig"), str(path)).values
        except (OSError, UnicodeDecodeError, UpgradeError):
            return []
        return envsecrets.secret_values(values, self.cfg.stack.secret_env_keys)

    def run(self, cmd: c.Command, *, db_password: bool = False) -> subprocess.CompletedProcess:
        env = dict(cmd.env) | self.endpoint.env
        if db_password:
            env["PGPASSWORD"] = self.cfg.database.password.get_secret_value()
        secrets = [*self.env_secrets, self.cfg.database.password.get_secret_value()]
        return run(c.Command(cmd.argv, env=env, stdout_path=cmd.stdout_path, ok_codes=cmd.ok_codes,
                             timeout=cmd.timeout or self.cfg.command_timeout_seconds, stdin=cmd.stdin),
                   secrets=secrets)

    def sql(self, statements: Sequence[Statement]) -> None:
        """Runs statements (constant strings, or composed by `core.io.pgsql`) on the maintenance database."""
        dbops.execute_maintenance(self.db, statements)

    def query(self, statement: Statement, params: tuple = ()) -> list[tuple]:
        return dbops.query_maintenance(self.db, statement, params)

    def dump_in_snapshot(self, dbname: str, cmd: c.Command) -> dict[str, int]:
        """Runs a `pg_dump` (argv without `--snapshot`) in a snapshot exported for it, and meanwhile counts every
        table's rows in that same snapshot (another thread, another session); returns the counts."""
        with dbops.exported_snapshot(self.db, dbname) as (snapshot, conn):
            dumped, counted = all_at_once([
                lambda: self.run(c.Command([*cmd.argv, "--snapshot", snapshot], timeout=cmd.timeout), db_password=True),
                lambda: dbops.count_rows(conn, one_core=True)], ["pg-dump", "count-rows"])
        first_failure([dumped, counted])
        return counted[0]

    def databases(self) -> set[str]:
        return dbops.database_names(self.db)

    def revisions(self, dbname: str) -> list[str]:
        return dbops.alembic_revisions(self.db, dbname)

    def wait_for_database(self, every: float = 0.3) -> str:
        t0 = time.monotonic()
        self.db.wait_until_reachable(dbops.MAINTENANCE_DB, deadline_seconds=self.cfg.health.timeout_seconds,
                                     every=every)
        return f"the database takes connections after {time.monotonic() - t0:.2f} s"

    def wait_answering(self, project: str, services: list[str], timeout: float, every: float = 0.05,
                       jobs: Collection[str] = ()) -> str | None:
        """Polls the environment's HTTP checks (their status only) until each answers as expected, failing at once
        when one of `services` turns unhealthy or exits with an error (Docker SDK); None when the environment has
        no HTTP checks."""
        from core.errors import ServicesNotHealthy

        if not self.cfg.health.http_checks:
            return None
        client = self.endpoint.client()
        probes = {check.name: http_probe(check.name, check.url, check.expect_status, None, None, timeout=2)
                  for check in self.cfg.health.http_checks}
        t0, last, looked = time.monotonic(), {}, 0.0

        def answered() -> _Waiting:
            nonlocal looked
            for name, probe in list(probes.items()):
                last[name] = probe()
                if last[name].ok:
                    del probes[name]
            # the engine is busy starting containers: ask it less
            if probes and time.monotonic() - looked >= ENGINE_LOOK_EVERY:
                looked = time.monotonic()
                states = container_states(client, project)
                failed = [self._failure(client, project, s, states.get(s), s in jobs) for s in services
                          if health_verdict(states.get(s), s in jobs) == "failed"]
                if failed:
                    raise ServicesNotHealthy("; ".join(failed))
            return _Waiting([f"{n}: {last[n].detail}" for n in probes])

        waiting = poll(answered, timeout, every)
        if not waiting.ok:
            raise ServicesNotHealthy(f"not answering after {timeout:.0f} s: " + "; ".join(waiting.on))
        return f"the HTTP checks answered after {time.monotonic() - t0:.2f} s"

    def http_checks(self, expected_version: str) -> list[CheckResult]:
        out = []
        for check in self.cfg.health.http_checks:
            probe = http_probe(check.name, check.url, check.expect_status, check.expect_version_field,
                               expected_version, expect_body=check.expect_body,
                               version_in_body=check.expect_version_in_body)
            out.append(poll(probe, deadline_seconds=min(30, self.cfg.health.timeout_seconds)))
        return out

    def wait_healthy(self, project: str, services: list[str], timeout: float, every: float = 0.05,
                     jobs: Collection[str] = ()) -> str:
        """Polls the project's containers (Docker SDK) until each of `services` runs and is healthy (or has no
        healthcheck), each of `jobs` among them having exited 0; raises HealthCheckFailed at once when one turns
        unhealthy or exits with an error, or at the deadline, naming the services and their state (a failed job with
        its last log lines)."""
        from core.errors import ServicesNotHealthy

        client = self.endpoint.client()
        t0 = time.monotonic()

        def healthy() -> _Waiting:
            states = container_states(client, project)
            waiting: list[str] = []
            failed: list[str] = []
            for service in services:
                state = states.get(service)
                verdict = health_verdict(state, service in jobs)
                if verdict == "ok":
                    continue
                if verdict == "failed":
                    failed.append(self._failure(client, project, service, state, service in jobs))
                else:
                    waiting.append(f"{service} {describe_state(state)}")
            if failed:
                raise ServicesNotHealthy("; ".join(failed))
            return _Waiting(waiting)

        waiting = poll(healthy, timeout, every)
        if not waiting.ok:
            raise ServicesNotHealthy(f"not healthy after {timeout:.0f} s: {'; '.join(waiting.on)}")
        return f"{', '.join(services)} healthy after {time.monotonic() - t0:.2f} s"

    @staticmethod
    def _failure(client, project: str, service: str, state: dict | None, job: bool) -> str:
        """A failed service in one line; a job with its last log lines."""
        said = last_log_lines(client, project, service) if job else []
        return f"{service} {describe_state(state)}" + (f" (last lines: {' | '.join(said)})" if said else "")

    def last_log_lines(self, project: str, service: str) -> list[str]:
        return last_log_lines(self.endpoint.client(), project, service)

    def failed_jobs(self, project: str, jobs: Collection[str]) -> list[str]:
        """The one-shot jobs that exited with an error, each with its exit code and last log lines (compose's own
        `depends_on` check says only "didn't complete successfully")."""
        client = self.endpoint.client()
        states = container_states(client, project)
        return [self._failure(client, project, job, states.get(job), True) for job in sorted(jobs)
                if health_verdict(states.get(job), True) == "failed"]

    def stop_containers(self, project: str, services: list[str], timeouts: dict[str, int] | None = None) -> str:
        """Stops the services' containers through the engine API, all at once. Each stops the way compose would
        stop it: its own stop signal and grace period, set on the container when compose created it, unless
        `timeouts` names the service (seconds before the engine kills it)."""
        client = self.endpoint.client()
        found = _service_containers(client, project, services)
        timeouts = timeouts or {}
        _at_once([partial(client.api.stop, cid, timeout=timeouts.get(s)) for s, cid in found.items()])
        return f"stopped {', '.join(sorted(found)) or 'nothing (not running)'}"

    def service_containers(self, project: str, services: list[str] | None) -> dict[str, str]:
        return _service_containers(self.endpoint.client(), project, services)

    def start_created(self, project: str, containers: dict[str, str], meanwhile: Callable[[], str] | None = None,
                      serving_first: bool = False) -> str | None:
        """Starts containers that `compose create` has just made current (service → id), through the engine API,
        then runs `meanwhile` (the wait). With `serving_first`, the services that publish the HTTP checks' ports go
        first, with what they depend on, and the others start while `meanwhile` runs. Within each part, services
        whose `depends_on` are all started go together, then the next group. None, starting nothing, if one of
        them is gone or already running: the caller then runs `compose up`."""
        client = self.endpoint.client()
        try:
            info = {s: client.api.inspect_container(cid) for s, cid in containers.items()}
        except Exception:  # docker.errors.NotFound: removed since
            return None
        if any(ctr["State"]["Status"] not in ("created", "exited") for ctr in info.values()):
            return None
        deps = {s: {d.split(":")[0] for d in (ctr["Config"]["Labels"].get("com.docker.compose.depends_on") or "")
                    .split(",") if d} & set(containers) for s, ctr in info.items()}
        serving = _with_deps({s for s, ctr in info.items() if _publishes(ctr, self._check_ports())}, deps) \
            if serving_first else set(containers)
        groups: list[str] = []
        started: set[str] = set()

        def start(part: set[str]) -> None:
            while not part <= started:
                ready = sorted(s for s in part - started if deps[s] <= started) or sorted(part - started)
                _at_once([lambda cid=containers[s]: client.api.start(cid) for s in ready])
                groups.append("+".join(ready))
                started.update(ready)

        start(serving)
        (waited, failed), (_, rest_failed) = all_at_once([meanwhile or str, lambda: start(set(containers) - serving)],
                                                         ["wait", "start-the-rest"])
        first_failure([(None, failed), (None, rest_failed)])
        return f"started {' then '.join(groups)} (engine API)" + (f"; {waited}" if waited else "")

    def _check_ports(self) -> set[int]:
        from urllib.parse import urlsplit

        out = set()
        for check in self.cfg.health.http_checks:
            url = urlsplit(check.url)
            out.add(url.port or (443 if url.scheme == "https" else 80))
        return out

    def remove_stack_containers(self) -> int:
        """Removes the stack's leftover one-off containers (migration, SQL rendering, revision-file copies)."""
        ids = self.run(c.Command(c.docker_ps_labelled(c.STACK_LABEL, self.project))).stdout.split()
        if ids:
            self.run(c.Command(c.docker_rm_force(ids)))
        return len(ids)

    def drop_probe_schemas(self) -> list[str]:
        names = []
        for dbname in [self.cfg.database.name, *self.cfg.database.extra_databases]:
            if dbname in self.databases():
                names += dbops.drop_probe_schemas(self.db, dbname)
        return names

    def drop_rehearsal_databases(self) -> list[str]:
        """Drops throw-away rehearsal databases a killed run left behind (`<db>__ss_rh_*`); returns their names."""
        from core.migrations import rehearsal
        names = rehearsal.leftovers(self.cfg.database.name, self.databases())
        for name in names:
            self.sql(rehearsal.drop_statements(name))
        return names
