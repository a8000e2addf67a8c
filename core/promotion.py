"""Staging → prod promotion, as plain functions: which host may run an environment, the release to promote, images
pinned by the digests staging verified, the fingerprint an approver signs, and the summary they read.

No Prefect here: `tasks/promotion.py` publishes and reads artifacts, `flows/promote.py` strings the runs together.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING

from core.errors import PlanChangedSinceApproval


if TYPE_CHECKING:
    from collections.abc import Sequence

    from core.cutover.facts import Facts

RELEASE_TAG = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


# --- the release ------------------------------------------------------------------------------------------------
def releases_newest_first(tags: list[str]) -> list[str]:
    """The `vX.Y.Z` tags among `tags`, highest first (pre-releases such as `v3.0.0-rc1` and other names are not
    releases)."""
    found = [(tuple(int(x) for x in m.groups()), t.strip()) for t in tags if (m := RELEASE_TAG.match(t.strip()))]
    return [t for _, t in sorted(found, reverse=True)]


def verified_release(rows: list[dict]) -> str | None:
    """The release an environment's last verified upgrade recorded (rows of `<env>-digests`), if any."""
    releases = {r.get("release") for r in rows} - {None, ""}
    return releases.pop() if len(releases) == 1 else None


# --- digests ----------------------------------------------------------------------------------------------------
def verified_digests(current_images: dict[str, dict]) -> dict[str, str]:
    """`{service: repo@sha256:…}` of the stack's containers (pre-flight's `current_images`: the running ones, and
    a one-shot job's exited one); services whose image has no registry digest are left out."""
    return {s: i["repo_digest"] for s, i in sorted(current_images.items()) if i.get("repo_digest")}


def still_runs(verified: list[dict], running: list[dict]) -> bool:
    """Whether an environment still runs what its last verified upgrade recorded (rows of `<env>-digests` and of
    `<env>-running`): the same digest for every service, nothing more, and the same compose commit."""
    if not verified or not running:
        return False
    return ({r["service"]: r["digest"] for r in verified} == {r["service"]: r["digest"] for r in running}
            and {r.get("commit") for r in verified} == {r.get("commit") for r in running})


# --- the fingerprint --------------------------------------------------------------------------------------------
def fingerprint_material(f: Facts) -> dict:
    """What an approver of a prod upgrade approves: where prod is now (commit, images, database revision), where it
    goes (commit, images by digest, revisions, services) and the env diff (secret values masked, so a secret's
    change is not seen: name its key in the block's secret_env_keys only if that is acceptable). Run-specific
    things (run id, folders, time, the forecast's durations) are left out, so that the same state gives the same
    fingerprint."""
    out = {
        "environment": f.run.environment, "project": f.settings.stack.project_name,
        "current": {"commit": f.current.commit, "revision": sorted(f.database.revision),
                    "images": {s: i.get("repo_digest") or i.get("id") for s, i in sorted(f.current.images.items())},
                    "services": sorted(f.current.services)},
        "target": {"ref": f.target.ref, "commit": f.target.commit, "images": dict(sorted(f.target.images.items())),
                   "heads": sorted(f.target.heads), "pending": list(f.target.pending_revisions),
                   "services": sorted(f.target.services)},
        "env": [{k: str(v) for k, v in sorted(row.items())} for row in f.env_sync.rows],
    }
    if f.online.verdicts:  # per pending statement: prepared online, or in the downtime and why (none when off)
        out["online"] = online_verdicts(f)
    if f.env_sync.copies:  # Dify's split layout: each envs/**.env copy's rows (absent ones too), as reviewed
        out["env_copies"] = [{"path": c["path"], "existed": c["existed"],
                              "rows": [{k: str(v) for k, v in sorted(row.items())} for row in c["rows"]]}
                             for c in f.env_sync.copies]
    return out


def online_verdicts(f: Facts) -> list[dict]:
    """What the approver approves of the online preparation: each flagged statement prepared online or in the
    downtime, with the reason for the latter (a prepared one's summary holds row estimates, which change run to run,
    so it is left out)."""
    return [{"line": v["line"], "table": v["table"], "column": v["column"], "status": v["status"],
             **({} if v["status"] == "prepared online" else {"reason": v["reason"]})} for v in f.online.verdicts]


def fingerprint(f: Facts) -> str:
    blob = json.dumps(fingerprint_material(f), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def check_approved(environment: str, f: Facts, approved: str) -> None:
    """Refuses a plan whose fingerprint is not the one the approver approved (prod or the digests changed since)."""
    now = fingerprint(f)
    if now != approved:
        raise PlanChangedSinceApproval(environment, approved, now)


# --- what people read -------------------------------------------------------------------------------------------
def migration_verdict(migrations: dict) -> str:
    if not migrations.get("pending"):
        return "nothing to migrate"
    gate = migrations.get("gate") or []
    return ("BLOCKED: " + "; ".join(gate)) if gate else f"ok: {migrations['pending']} pending revision(s) within limits"


def summary_markdown(release: str, staging: str, prod: str, *,  # noqa: PLR0913 (each a separate part of the summary)
                     digests: dict[str, str], verdict: str, fp: str, links: dict[str, str], notes: list[str],
                     env: Sequence[str] = (), online: Sequence[str] = ()) -> str:
    """What the approver reads: how staging went, the digests prod will run, prod's migration verdict (with each
    flagged statement's online verdict, `online`) and env changes (`env`: `report.env_summary` of prod's plan), the
    links to review, the fingerprint."""
    lines = [f"# Promotion of {release}: {staging} → {prod}", ""]
    lines += [f"- {n}" for n in notes]
    lines += ["", "## Images verified on staging (prod will run exactly these)", "",
              "| service | digest |", "|---|---|"]
    lines += [f"| {s} | `{d}` |" for s, d in sorted(digests.items())]
    lines += ["", f"## Migration verdict on {prod}", "", verdict, ""]
    if online:
        lines += ["Per statement (online preparation, while the old version serves, or in the downtime):", "",
                  *[f"- {line}" for line in online], ""]
    if env:
        lines += [f"## Env changes on {prod} (the env diff has every key)", ""] + [f"- {e}" for e in env] + [""]
    lines += ["## Review before approving", ""]
    lines += [f"- [{title}]({url})" for title, url in links.items()]
    lines += ["", "## Fingerprint", "", f"`{fp}`", "",
              "It covers the digests and prod's plan (with each statement's online verdict) and env diff as shown. "
              "Paste it into the approval form's "
              "Fingerprint field; prod is upgraded only if prod's plan still gives the same fingerprint when the "
              "upgrade starts."]
    return "\n".join(lines) + "\n"
