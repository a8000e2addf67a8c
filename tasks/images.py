"""Pull task: every target image, before anything is stopped."""
from __future__ import annotations

import time

from prefect import task

from core.io import commands as c
from core.cutover import steps as st
from core.errors import CommandFailed, PullFailed
from core.io.compose import tag_of_pinned
from tasks._common import TASK_DEFAULTS


@task(name="pull", task_run_name="pull", retries=3, retry_delay_seconds=[2, 5, 15], **TASK_DEFAULTS)
def pull(ctx: st.StepContext, after: st.Outcome | None = None) -> st.Outcome:
    """Pulls the target's images on the environment's engine (an image pinned by digest is pulled by digest and
    its tag pointed at it) (retried with backoff: a pull changes nothing that is
    running). The registry login happened in pre-flight, before its first pull."""
    t0 = time.monotonic()
    images = sorted(set(ctx.facts.target.images.values()))
    for image in images:
        try:
            ctx.io.run(c.Command(c.docker_pull(image)))
            pinned = tag_of_pinned(image)
            if pinned:  # compose starts the release's tag: point it at exactly the pinned digest on this engine
                ctx.io.run(c.Command(c.docker_tag(*pinned)))
        except CommandFailed as exc:
            raise PullFailed("pull", f"{image}: {exc}") from None
    return st.Outcome("pull", "backup", "Pull the target's images", time.monotonic() - t0, ", ".join(images))
