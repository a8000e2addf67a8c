"""Runs inside a one-off container of the MLflow image (the lab mounts it there): MLflow's own Python client, talking
to the stack's tracking server over HTTP, seeds it or lists everything it holds. Not part of stackshift.

    python3 inside.py seed --experiments 2 --runs 3 --metric-rows 1200
    python3 inside.py list        # JSON on stdout: experiments, runs, params, tags, metric histories, artifacts
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.tracking import MlflowClient

os.environ.setdefault("MLFLOW_TRACKING_URI", "http://server:5000")  # artifact uploads read the global URI
BATCH = 1000  # log_batch takes at most 1000 metrics per call
KEYS = ("loss", "accuracy")


def client() -> MlflowClient:
    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def seed(args) -> None:
    c = client()
    t0 = time.monotonic()
    per_run = max(1, args.metric_rows // (args.experiments * args.runs))
    steps = max(1, per_run // len(KEYS))
    jobs = []
    for e in range(args.experiments):
        exp_id = c.create_experiment(f"experiment-{e}", tags={"team": f"team-{e % 2}", "seeded-by": "stackshift-lab"})
        for r in range(args.runs):
            run = c.create_run(exp_id, run_name=f"run-{e}-{r}", tags={"model": "gbm" if r % 2 else "mlp"})
            rid = run.info.run_id
            c.log_batch(rid, params=[Param(f"p{i}", str(i * (r + 1))) for i in range(5)],
                        tags=[RunTag("dataset", f"data-v{r}"), RunTag("note", "seeded through the MLflow client")])
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "model.json"), "w") as f:
                    json.dump({"experiment": e, "run": r, "weights": list(range(r + 3))}, f)
                os.makedirs(os.path.join(d, "plots"))
                with open(os.path.join(d, "plots", "curve.csv"), "w") as f:
                    f.write("\n".join(f"{s},{1 / (s + 1)}" for s in range(50)))
                c.log_artifacts(rid, d)
            jobs.append((rid, e, r))

    def metrics(job) -> int:
        rid, e, r = job
        c2 = client()
        rows = [Metric(k, float((s * 7 + e + r + i) % 1000) / 1000, 1_700_000_000_000 + s, s)
                for s in range(steps) for i, k in enumerate(KEYS)]
        for i in range(0, len(rows), BATCH):
            c2.log_batch(rid, metrics=rows[i:i + BATCH])
        c2.set_terminated(rid)
        return len(rows)

    with ThreadPoolExecutor(args.threads) as pool:
        total = sum(pool.map(metrics, jobs))
    print(json.dumps({"experiments": args.experiments, "runs": len(jobs), "metric_rows": total,
                      "seconds": round(time.monotonic() - t0, 1)}))


def _artifacts(c: MlflowClient, rid: str, path: str | None = None) -> dict:
    out = {}
    for a in c.list_artifacts(rid, path):
        if a.is_dir:
            out |= _artifacts(c, rid, a.path)
        else:
            with tempfile.TemporaryDirectory() as d:
                local = c.download_artifacts(rid, a.path, d)
                with open(local, "rb") as f:
                    out[a.path] = {"size": a.file_size, "sha256": hashlib.sha256(f.read()).hexdigest()}
    return out


def listing(args) -> None:
    c = client()
    out = {"experiments": []}
    for exp in sorted(c.search_experiments(view_type=ViewType.ALL), key=lambda x: int(x.experiment_id)):
        runs, token = [], None
        while True:
            page = c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token)
            runs += page
            token = page.token
            if not token:
                break
        listed = []
        for run in sorted(runs, key=lambda x: x.info.run_id):
            histories = {k: sorted((m.step, m.timestamp, m.value) for m in c.get_metric_history(run.info.run_id, k))
                         for k in sorted(run.data.metrics)}
            listed.append({
                "run_id": run.info.run_id, "name": run.info.run_name, "status": run.info.status,
                "start_time": run.info.start_time, "end_time": run.info.end_time,
                "lifecycle_stage": run.info.lifecycle_stage, "artifact_uri": run.info.artifact_uri,
                "params": dict(sorted(run.data.params.items())),
                "tags": dict(sorted(run.data.tags.items())),
                "latest_metrics": dict(sorted(run.data.metrics.items())),
                "metric_histories": histories,
                "artifacts": _artifacts(c, run.info.run_id) if args.artifacts else None,
            })
        out["experiments"].append({
            "id": exp.experiment_id, "name": exp.name, "artifact_location": exp.artifact_location,
            "lifecycle_stage": exp.lifecycle_stage, "tags": dict(sorted(exp.tags.items())), "runs": listed,
        })
    json.dump(out, sys.stdout, sort_keys=True)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--experiments", type=int, default=2)
    s.add_argument("--runs", type=int, default=3)
    s.add_argument("--metric-rows", type=int, default=1200)
    s.add_argument("--threads", type=int, default=4)
    s.set_defaults(fn=seed)
    ls = sub.add_parser("list")
    ls.add_argument("--no-artifacts", dest="artifacts", action="store_false")
    ls.set_defaults(fn=listing)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
