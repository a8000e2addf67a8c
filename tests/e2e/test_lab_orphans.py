"""`lab/setup` removes the test stacks a session that never ended left on the engines (lab/orphans.py), and only
those: a stack claimed by a live process stays."""
import contextlib
import secrets

import docker

from lab import orphans

IMAGE = "127.0.0.1:5000/lab/base:bookworm"


def test_an_unclaimed_test_stack_is_removed_and_a_claimed_one_stays():
    client = docker.from_env()
    prefix = f"e2e-orphan-{secrets.token_hex(3)}-"  # this test's own names: other sessions' stacks are not touched
    left, mine = prefix + "left", prefix + "mine"
    orphans.claim(mine)
    made = []
    try:
        for project in (left, mine):
            label = {orphans.PROJECT: project}
            client.networks.create(f"{project}_default", labels=label)
            made.append(client.containers.run(IMAGE, ["sleep", "300"], detach=True, labels=label,
                                              network=f"{project}_default", name=f"{project}-db-1"))
        assert orphans.remove_orphans(None, prefix=prefix) == [left]
        remaining = {name.lstrip("/") for c in client.api.containers(all=True, filters={"label": orphans.PROJECT})
                     for name in c["Names"]}
        assert f"{left}-db-1" not in remaining and f"{mine}-db-1" in remaining
        assert not client.networks.list(names=[f"{left}_default"])
        assert client.networks.list(names=[f"{mine}_default"])
    finally:
        orphans.unclaim(mine)
        for container in made:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        for network in client.networks.list(filters={"label": f"{orphans.PROJECT}={mine}"}):
            network.remove()
        client.close()
