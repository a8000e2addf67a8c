"""Which host may run an environment: a block's `host` names it; `$STACKSHIFT_HOST` (a worker's environment) or
the machine's hostname says which host this is."""
from __future__ import annotations

import os
import socket

from core.errors import WrongHost

HOST_VAR = "STACKSHIFT_HOST"


def this_host() -> str:
    """The host this process runs on, as the environments' blocks name it: `$STACKSHIFT_HOST` (set in the worker's
    environment), else the machine's hostname."""
    return os.environ.get(HOST_VAR) or socket.gethostname()


def check_host(expected: str | None, environment: str, here: str | None = None) -> None:
    """Raises WrongHost unless the environment's host (`Settings.stack.host`) is unset or names this host."""
    here = here or this_host()
    if expected and expected != here:
        raise WrongHost(environment, expected, here)
