"""One way in to a stack's resources: the block's Docker endpoint, database credentials and HTTP checks.

Every command a step runs goes through `StackIO.run`, which adds the block's `DOCKER_HOST` and, only for the
steps that need it, the database password (in the child's environment, never argv). Steps talk to PostgreSQL
through `sql`, `databases` and `revisions` here. Tests hand steps a stand-in with the same methods.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

from core import commands as c
from core import db as dbops
from core.errors import DockerHostUnreachable
from core.executor import run
from core.verify import CheckResult, http_probe, poll


@dataclass(frozen=True)
class DockerEndpoint:
    """The Docker engine of one environment (the block's `docker_host`; the local engine when unset)."""

    host: str | None = None
    timeout: int = 30

    @classmethod
    def of(cls, cfg) -> "DockerEndpoint":
        return cls(cfg.docker_host or None)

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host} if self.host else {}

    def client(self):
        """A docker SDK client for this engine; raises DockerHostUnreachable if it does not answer a ping."""
        import docker

        where = self.host or "the local engine (DOCKER_HOST unset)"
        try:
            client = docker.DockerClient(base_url=self.host, timeout=self.timeout) if self.host else \
                docker.from_env(timeout=self.timeout)
            client.ping()
        except Exception as exc:  # docker raises DockerException, requests' errors, OSError...
            raise DockerHostUnreachable(where, str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__) \
                from None
        return client


@dataclass
class StackIO:
    """The real I/O of one environment, made from its block."""

    cfg: object
    project: str

    @property
    def endpoint(self) -> DockerEndpoint:
        return DockerEndpoint.of(self.cfg)

    @property
    def db(self) -> dbops.DbAccess:
        return dbops.DbAccess.of(self.cfg)

    def run(self, cmd: c.Command, *, db_password: bool = False) -> subprocess.CompletedProcess:
        env = dict(cmd.env) | self.endpoint.env
        if db_password:
            env["PGPASSWORD"] = self.cfg.db_password.get_secret_value()
        return run(c.Command(cmd.argv, env=env, stdout_path=cmd.stdout_path, ok_codes=cmd.ok_codes,
                             timeout=cmd.timeout or self.cfg.command_timeout_seconds, stdin=cmd.stdin))

    def sql(self, statements: list[str]) -> None:
        dbops.execute_maintenance(self.db, statements)

    def databases(self) -> set[str]:
        return dbops.database_names(self.db)

    def revisions(self, dbname: str) -> list[str]:
        return dbops.alembic_revisions(self.db, dbname)

    def wait_for_database(self) -> None:
        self.db.wait_until_reachable(dbops.MAINTENANCE_DB, deadline_seconds=self.cfg.health_timeout_seconds)

    def http_checks(self, expected_version: str) -> list[CheckResult]:
        out = []
        for check in self.cfg.http_checks:
            probe = http_probe(check.name, check.url, check.expect_status, check.expect_version_field,
                               expected_version)
            out.append(poll(probe, deadline_seconds=min(30, self.cfg.health_timeout_seconds)))
        return out

    def remove_stack_containers(self) -> int:
        """Removes the stack's leftover one-off containers (migration, SQL rendering, revision-file copies)."""
        ids = self.run(c.Command(c.docker_ps_labelled(c.STACK_LABEL, self.project))).stdout.split()
        if ids:
            self.run(c.Command(c.docker_rm_force(ids)))
        return len(ids)

    def drop_probe_schemas(self) -> list[str]:
        names = []
        for dbname in [self.cfg.db_name, *self.cfg.extra_databases]:
            if dbname in self.databases():
                names += dbops.drop_probe_schemas(self.db, dbname)
        return names
