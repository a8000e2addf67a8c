"""`stackshift status` (what runs where) and `stackshift history` (an environment's past runs).

Read, never changed: the environment blocks, the run journals in each environment's backup folder (on the host
that runs it), its lock file, and from the Prefect API the digests its last verified upgrade published
(`<env>-digests`) and the state of each run's flow run. An environment whose run folders are on another host
shows what the Prefect server knows of it.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cli.render import secs

FINISHED_OK = ("completed", "recovered-forward")
HISTORY = 10


@dataclass
class RunRecord:
    """One upgrade run as its journal tells it."""

    run: str
    target: str
    commit: str
    status: str
    outcome: str
    started: float | None
    seconds: float | None
    downtime: float | None
    flow_run_id: str | None
    revision: list[str] = field(default_factory=list)  # the database's after the run
    images: dict[str, str] = field(default_factory=dict)


def runs_of(project_dir: Path) -> list[RunRecord]:
    """The runs of a stack, newest first, from the journals in its backup folder ([] when there is none here)."""
    from core.cutover.journal import JOURNAL, Journal, downtime

    out = []
    for path in sorted(Path(project_dir).glob(f"*/{JOURNAL}"), reverse=True):
        try:
            j = Journal.load(path)
        except (OSError, ValueError, TypeError):
            continue
        started = min((r.started for r in j.steps), default=None)
        ended = max((r.ended or r.started for r in j.steps), default=None)
        ok = j.status in FINISHED_OK
        out.append(RunRecord(
            run=j.run, target=str(j.target.get("ref", "")), commit=str((j.target if ok else j.previous).get("commit")
                                                                        or ""),
            status=j.status, outcome=j.outcome, started=started,
            seconds=round(ended - started, 1) if started is not None and ended is not None else None,
            downtime=downtime(j).get("total"), flow_run_id=j.flow_run_id,
            revision=list(j.target.get("heads") or []) if ok else list(j.previous.get("revision") or []),
            images=dict(j.target.get("images") or {}) if ok else {}))
    return out


def version_of(runs: list[RunRecord]) -> dict[str, Any]:
    """What the environment runs per its journals: the target of the newest run that ended well; a run that
    ended otherwise left the version before it (rolled back, or stopped before any change)."""
    for r in runs:
        if r.status in FINISHED_OK:
            return {"version": r.target, "commit": r.commit, "revision": r.revision}
        if r.status in ("rolled-back", "abandoned"):
            continue
        return {"version": "unknown", "open_run": r.run, "commit": r.commit, "revision": r.revision}
    if runs:
        return {"version": "as before stackshift", "commit": runs[-1].commit, "revision": runs[-1].revision}
    return {}


def lock_of(path: Path, here: str | None = None, alive=None) -> dict[str, Any] | None:
    """The lock's holder, or None when it is free. The holder writes its name into the file and empties it when it
    lets go; a holder killed on this host leaves its name behind, and is not a holder any more (the kernel let go
    of its lock): its process is gone."""
    from core.cutover.lock import read_holder

    holder = read_holder(path)
    if not holder:
        return None
    here = here or socket.gethostname()
    alive = alive or _alive
    if holder.get("host") == here and holder.get("pid") and not alive(int(holder["pid"])):
        return None
    return holder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else "—"


def run_line(r: RunRecord, state: str = "", url: str = "") -> str:
    """`2026-12-04 22:40 UTC  v2.0.0  completed in 45.0 s, downtime 4.1 s  (run 1a2b3c4d) URL`."""
    took = f" in {secs(r.seconds)}" if r.seconds is not None else ""
    down = f", downtime {secs(r.downtime)}" if r.downtime is not None and r.status != "abandoned" else ""
    prefect = f", Prefect: {state}" if state else ""
    line = f"{when(r.started)}  {r.target}  {r.status}{took}{down}{prefect}  (run {r.run})"
    return line + (f"  {url}" if url else "")


def status_lines(st: dict[str, Any]) -> list[str]:
    """One environment, in four lines or so."""
    v, env = st.get("version") or {}, st["environment"]
    where = f"commit {str(v.get('commit'))[:12]}, database at {', '.join(v.get('revision') or []) or '—'}"
    if v.get("open_run"):
        head = (f"{env}: unknown: run {v['open_run']} did not end (`stackshift recover -e {env}` finishes or rolls "
                f"it back); before it: {where}")
    elif v:
        head = f"{env}: {v['version']} ({where})"
    else:
        head = f"{env}: no run recorded here" + (f" (its run folders are on host {st['host']})" if st.get("host")
                                                 else "")
    lines = [head]
    if st.get("error"):
        return lines + [f"  cannot be read: {st['error']}"]
    if st.get("digests"):
        lines.append("  images: " + ", ".join(f"{s} {d.split('@')[-1][:19]}" for s, d in sorted(st["digests"].items()))
                     + (f" (verified for {st['digests_release']})" if st.get("digests_release") else ""))
    last = st.get("last_run")
    if last:
        r = RunRecord(**last)
        lines.append("  last run: " + run_line(r, st.get("last_run_state", ""), st.get("last_run_url", "")))
        if r.status not in FINISHED_OK and r.outcome:
            lines.append(f"    {r.outcome[:300]}")
    lock = st.get("lock")
    lines.append("  lock: free" if not lock else
                 f"  lock: held by run {lock.get('run')} on {lock.get('host')} (pid {lock.get('pid')}) since "
                 f"{lock.get('since')}")
    return lines


# --- reading ----------------------------------------------------------------------------------------------------
def environment_names() -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        docs = client.read_block_documents_by_type("stack-environment", include_secrets=False)
    return sorted(d.name for d in docs if d.name and not d.is_anonymous)


def environment_status(name: str) -> dict[str, Any]:
    """What `status` prints of one environment (also its `--json`)."""
    from core.cutover.lock import lock_path
    from flows.upgrade import load_environment

    st: dict[str, Any] = {"environment": name}
    try:
        cfg = load_environment(name)
    except Exception as exc:  # one unreadable block must not hide the others
        return st | {"error": f"{type(exc).__name__}: {exc}"}
    st["host"] = cfg.stack.host
    project_dir = Path(cfg.backup.dir) / cfg.stack.project_name
    runs = runs_of(project_dir)
    st["version"] = version_of(runs)
    st["lock"] = lock_of(lock_path(cfg.backup.dir, cfg.stack.project_name))
    st |= _published(name)
    if not st["version"] and st.get("digests_release"):
        st["version"] = {"version": st["digests_release"], "commit": st.get("digests_commit", ""), "revision": []}
    if runs:
        st["last_run"] = asdict(runs[0])
        st["last_run_state"], st["last_run_url"] = _flow_run(runs[0].flow_run_id)
    return st


def _published(name: str) -> dict[str, Any]:
    """The digests the environment's last verified upgrade published (`<env>-digests`)."""
    from tasks._common import artifact_key
    from tasks.promotion import DIGESTS, latest_rows

    try:
        rows = latest_rows(artifact_key(name, DIGESTS))
    except Exception:
        return {}
    if not rows:
        return {}
    return {"digests": {r["service"]: r["digest"] for r in rows}, "digests_release": rows[0].get("release", ""),
            "digests_commit": rows[0].get("commit", "")}


def _flow_run(flow_run_id: str | None) -> tuple[str, str]:
    """The flow run's state name on the Prefect server and its URL ("" when unknown)."""
    if not flow_run_id:
        return "", ""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    from tasks.promotion import run_url

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
        return (state.name or "" if state else ""), run_url(flow_run_id)
    except Exception:
        return "", run_url(flow_run_id)


# --- the verbs --------------------------------------------------------------------------------------------------
def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="what runs where: every environment's version, images, last run and lock",
                       description="Every environment block (or those given with -e): the version, commit and "
                                   "database revision its journals record, the image digests its last verified "
                                   "upgrade published, its last run and how it ended, and who holds its lock.")
    p.add_argument("--environment", "-e", action="append", help="only this environment (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON list, one object per environment")
    p.set_defaults(fn=status_cmd)
    p = sub.add_parser("history", help="an environment's past upgrade runs, newest first",
                       description="The environment's runs as their journals record them: when, to what, how they "
                                   "ended, how long they took and the downtime, with each run's URL.")
    p.add_argument("--environment", "-e", required=True, help="stack-environment block name, e.g. prod")
    p.add_argument("--limit", "-n", type=int, default=HISTORY, help=f"how many runs (default {HISTORY})")
    p.add_argument("--json", action="store_true", help="one JSON list, one object per run")
    p.set_defaults(fn=history_cmd)


def status_cmd(args: argparse.Namespace) -> int:
    names = args.environment or environment_names()
    found = [environment_status(n) for n in names]
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    if not found:
        print("No environment: save a stack-environment block first (see docs/cli.md).")
    for st in found:
        print("\n".join(status_lines(st)))
    return 1 if any(st.get("error") for st in found) else 0


def history_cmd(args: argparse.Namespace) -> int:
    from core.errors import UpgradeError
    from flows.upgrade import load_environment

    try:
        cfg = load_environment(args.environment)
    except UpgradeError as exc:
        print(f"stackshift: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    runs = runs_of(Path(cfg.backup.dir) / cfg.stack.project_name)[:args.limit]
    if args.json:
        print(json.dumps([asdict(r) for r in runs], indent=2))
        return 0
    if not runs:
        print(f"No run of {args.environment} recorded in {Path(cfg.backup.dir) / cfg.stack.project_name}.")
    for r in runs:
        state, url = _flow_run(r.flow_run_id)
        print(run_line(r, state, url))
        if r.status not in FINISHED_OK and r.outcome:
            print(f"    {r.outcome[:300]}")
    return 0
