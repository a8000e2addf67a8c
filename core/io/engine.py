"""What the Docker engine runs, read through the docker SDK (never by scraping text)."""
from __future__ import annotations

import docker

from core.io.compose import image_repo


def current_images(client: docker.DockerClient, project: str) -> dict[str, dict]:
    """Per service of the project: configured image, image id and repo digests (docker SDK), read from the
    container `service_containers` picks: a one-shot job's exited container counts, its image is part of what the
    stack runs (a promotion pins it, a verification checks it)."""
    out = {}
    listed = client.api.containers(all=True, filters={"label": f"com.docker.compose.project={project}"})
    for service, container_id in service_containers(listed).items():
        ctr = client.containers.get(container_id)
        ref = ctr.attrs["Config"]["Image"]
        image = client.images.get(ctr.attrs["Image"])
        repo = image_repo(ref)
        digests = [d for d in image.attrs.get("RepoDigests") or [] if d.startswith(repo + "@")]
        out[service] = {"image": ref, "id": image.id, "repo_digest": digests[0] if digests else None,
                        "repo_digests": digests}
    return out


def service_containers(listed: list[dict]) -> dict[str, str]:
    """Service → id of the container that stands for it, from the engine's container list (`all=True`): its running
    container, else its newest (a one-shot job that ran and exited). One-off containers (`compose run`) are no
    service's."""
    best: dict[str, tuple[bool, int, str]] = {}
    for ctr in listed:
        labels = ctr.get("Labels") or {}
        service = labels.get("com.docker.compose.service")
        if not service or labels.get("com.docker.compose.oneoff") == "True":
            continue
        rank = (ctr.get("State") == "running", int(ctr.get("Created") or 0), ctr["Id"])
        best[service] = max(best.get(service, rank), rank)
    return {s: cid for s, (_, _, cid) in sorted(best.items())}
