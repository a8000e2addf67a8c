"""What the Docker engine runs, read through the docker SDK (never by scraping text)."""
from __future__ import annotations

import docker

from core.io.compose import image_repo


def current_images(client: docker.DockerClient, project: str) -> dict[str, dict]:
    """Per service of the running project: configured image, image id and repo digest (docker SDK)."""
    out = {}
    for ctr in client.containers.list(filters={"label": f"com.docker.compose.project={project}"}):
        service = ctr.labels.get("com.docker.compose.service")
        if not service or ctr.labels.get("com.docker.compose.oneoff") == "True":
            continue
        ref = ctr.attrs["Config"]["Image"]
        image = client.images.get(ctr.attrs["Image"])
        repo = image_repo(ref)
        digests = [d for d in image.attrs.get("RepoDigests") or [] if d.startswith(repo + "@")]
        out[service] = {"image": ref, "id": image.id, "repo_digest": digests[0] if digests else None,
                        "repo_digests": digests}
    return out
