"""Leaving the `stackshift` process once its work is done and its outcome printed.

At interpreter exit Prefect's event and log workers drain their queues, each queued item retried against the server
(the events client reconnects ten times per event, ~8 s an event). With the server gone (stopped, or its host down)
that drain held the command for minutes after the upgrade had ended: what they hold cannot reach a server that does
not answer, and the journal, not the server, records the outcome. So without a server the process leaves at once."""
from __future__ import annotations

import os
import sys


def leave(code: int) -> int:
    """Returns `code` for a normal exit while the Prefect server answers; otherwise ends the process now with it."""
    from tasks._common import api_reachable

    if api_reachable(timeout=2):
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
