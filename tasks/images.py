"""Pull task: every target image, before anything is stopped."""
from __future__ import annotations

from prefect import task

from core import commands as c
from core.executor import run
from tasks._common import TASK_DEFAULTS


@task(name="pull-images", retries=3, retry_delay_seconds=[2, 5, 15], **TASK_DEFAULTS)
def pull_images(runner) -> list[str]:
    """Pulls the target's images (retried with backoff: a pull changes nothing that is running)."""
    cfg, env = runner.cfg, runner.docker_env()
    images = sorted(set(runner.plan.facts.target_images.values()))
    if cfg.registry_username and cfg.registry_password:
        registry = images[0].split("/", 1)[0]
        run(c.Command(c.docker_login(registry, cfg.registry_username), env=env,
                      stdin=cfg.registry_password.get_secret_value().encode()))
    for image in images:
        run(c.Command(c.docker_pull(image), env=env))
    return images
