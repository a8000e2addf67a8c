"""Approve or reject a paused promotion without a browser (the UI's Resume dialog does the same).

    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python -m deployments.approve RUN_ID --approver NAME \
        [--reject] [--comment TEXT]

The fingerprint sent is the one the run's promotion summary shows (what an approver pastes into the form): read
that summary, prod's plan and its env diff before approving.
"""
from __future__ import annotations

import argparse
import re
import sys


def summary_fingerprint(flow_run_id: str) -> str:
    from tasks.promotion import run_artifacts

    md = run_artifacts(flow_run_id)["promotion-summary"].data
    return re.search(r"## Fingerprint\s+`([0-9a-f]{64})`", md).group(1)


def resume(flow_run_id, run_input: dict, seconds: float = 60) -> None:
    """Resumes a paused run with `run_input`. The form's schema is stored just after the run turns Paused: a resume
    in between is refused ("Run input schema not found"), so that one is retried for up to `seconds`."""
    import time

    from prefect.flow_runs import resume_flow_run

    deadline = time.monotonic() + seconds
    while True:
        try:
            resume_flow_run(flow_run_id, run_input=run_input)
            return
        except RuntimeError as exc:
            if "schema not found" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def decide(flow_run_id: str, approver: str, approve: bool, comment: str = "") -> None:
    resume(flow_run_id, {"decision": "approve" if approve else "reject", "approver": approver, "comment": comment,
                         "fingerprint": summary_fingerprint(flow_run_id)})


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Approve (or reject) a paused stackshift promotion.")
    parser.add_argument("flow_run_id")
    parser.add_argument("--approver", required=True, help="who decides (recorded with the decision)")
    parser.add_argument("--reject", action="store_true", help="reject: prod and staging stay as they are")
    parser.add_argument("--comment", default="")
    args = parser.parse_args(argv)
    decide(args.flow_run_id, args.approver, not args.reject, args.comment)
    print(f"{'rejected' if args.reject else 'approved'}: {args.flow_run_id}")


if __name__ == "__main__":
    main(sys.argv[1:])
