"""Test stacks left behind by a test session that did not end (killed, or its machine stopped), removed.

Their containers have `restart: always`: each engine start brings them back, and their health checks
then cost the machine CPU through every later run. Seen: one such database container took 0.08 of the 2 cores
through a whole end-to-end run.

Every test stack (`e2e-*`, on either engine) is claimed by the process that starts it: `$LAB_HOME/stacks/<project>`
holds that process's pid and start time. A stack whose claim is missing, or whose claiming process is gone, is an
orphan: `python -m lab.orphans` (run by `lab/setup`) removes its containers, networks and volumes. A live session's
stacks are claimed by live processes, so a run beside another is left alone.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import docker

from lab.paths import LAB_HOME, PROD_ENGINE

OWNERS = LAB_HOME / "stacks"
PREFIX = "e2e-"
PROJECT = "com.docker.compose.project"
ENGINES = (None, PROD_ENGINE)  # the lab's two engines (lab/setup)


def _identity(pid: int) -> str | None:
    """`pid start-time` of a live process (the start time tells a reused pid apart), None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"  # field 22, counted after the command's parentheses


def claim(project: str) -> None:
    """Marks `project` as this process's (before its containers are created)."""
    OWNERS.mkdir(parents=True, exist_ok=True)
    (OWNERS / project).write_text(f"{_identity(os.getpid())}\n")


def unclaim(project: str) -> None:
    (OWNERS / project).unlink(missing_ok=True)


def is_orphan(project: str) -> bool:
    try:
        owner = (OWNERS / project).read_text().strip()
    except OSError:
        return True
    pid = owner.split()[0] if owner else ""
    return not pid.isdigit() or _identity(int(pid)) != owner


def remove_orphans(base_url: str | None, prefix: str = PREFIX) -> list[str]:
    """Removes every orphaned test stack (project named `prefix…`) on one engine; returns their project names."""
    client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
    try:
        # the low-level listing: `containers.list` inspects each one, and another session's may be gone by then
        listed = client.api.containers(all=True, filters={"label": PROJECT})
        projects = {(c.get("Labels") or {}).get(PROJECT, "") for c in listed}
        gone = sorted(p for p in projects if p.startswith(prefix) and is_orphan(p))
        for project in gone:
            label = {"label": f"{PROJECT}={project}"}
            for container in client.api.containers(all=True, filters=label):
                with contextlib.suppress(docker.errors.NotFound):
                    client.api.remove_container(container["Id"], force=True)
            for network in client.networks.list(filters=label):
                try:
                    network.remove()
                except docker.errors.APIError as exc:  # a stale endpoint (dockerd 20.10): said, and left
                    print(f"[lab] the network {network.name} of {project} could not be removed: {exc}")
            for volume in client.volumes.list(filters=label):
                volume.remove(force=True)
            unclaim(project)
    finally:
        client.close()
    return gone


def main() -> None:
    for engine in ENGINES:
        gone = remove_orphans(engine)
        if gone:
            where = "the prod engine" if engine else "the first engine"
            print(f"[lab] removed {len(gone)} test stack(s) left running on {where} by a test session that did not "
                  f"end: {', '.join(gone)}")


if __name__ == "__main__":
    main()
