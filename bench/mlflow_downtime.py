"""Benchmark: downtime of an MLflow tracking server upgrade 3.6.0 → 3.17.2, stackshift vs MLflow's documented way.

Both run in one invocation, alternating, each on a fresh copy of one seeded 3.6.0 stack (seeded once through MLflow's
own client with `--metric-rows` metric rows, then copied with its volumes while stopped, so every round starts from
the same data). A thread polls the server every 50 ms; the downtime is the gap between the last answer of 3.6.0
(`/health` OK and `/version` 3.6.0) and the first of 3.17.2.

Documented procedure (MLflow's docs, `mlflow db upgrade`): stop the server, run `mlflow db upgrade <uri>` with the new
version (a one-off container of the 3.17.2 image after `git checkout 3.17.2`), start it (`docker compose up -d`).
The new image is local for both methods.

Run: `.venv/bin/python -m bench.mlflow_downtime [--rounds 1] [--metric-rows 1000000]` (after lab/setup; it builds
the MLflow stack if `lab/setup --mlflow` has not).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")  # the lab's server, before Prefect loads

from blocks.stack_environment import StackEnvironment  # noqa: E402
from lab.mlflow import stack as mlstack  # noqa: E402
from lab.mlflow import build  # noqa: E402
from lab.mlflow.build import REPO  # noqa: E402
from lab.stack import free_port  # noqa: E402
from bench.watch import Watch, mlflow_state  # noqa: E402

URI = "postgresql+psycopg2://mlflow@db:5432/mlflow"


def seed_template(root: Path, metric_rows: int) -> mlstack.MlflowDeployment:
    build.ensure()
    t = time.monotonic()
    dep = mlstack.create(root, "bench-mlflow-seed", "3.6.0", experiments=2, runs=5, metric_rows=metric_rows)
    with dep.connect() as conn:
        rows = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    print(f"seeded {rows:,} metric rows through MLflow's client in {time.monotonic() - t:.0f} s", flush=True)
    dep.compose("stop")
    return dep


def copy_of(template: mlstack.MlflowDeployment, root: Path, name: str) -> mlstack.MlflowDeployment:
    """A new deployment of the same release holding a copy of the template's volumes (same data, same password)."""
    d = root / name
    subprocess.run(["git", "clone", "-q", str(REPO), str(d)], check=True)
    subprocess.run(["git", "-C", str(d), "checkout", "-q", "3.6.0"], check=True)
    subprocess.run(["cp", "-a", str(template.compose_dir / "volumes"), str(d / "volumes")], check=True)
    dep = mlstack.MlflowDeployment(name, d, root / f"{name}-backups", free_port(), free_port(), template.db_password)
    env = (template.compose_dir / ".env").read_text()
    env = env.replace(f"MLFLOW_PORT={template.port}", f"MLFLOW_PORT={dep.port}")
    env = env.replace(f"EXPOSE_DB_PORT={template.db_port}", f"EXPOSE_DB_PORT={dep.db_port}")
    (d / ".env").write_text(env)
    os.chmod(d / ".env", 0o600)
    dep.compose("up", "--detach", "--wait", "--wait-timeout", "300")
    return dep


def run_stackshift(template, root: Path, accept_risk: bool) -> tuple[float, dict]:
    dep = copy_of(template, root, "bench-mlflow-ss")
    StackEnvironment(**dep.block_fields()).save(dep.name, overwrite=True)
    from flows.upgrade import upgrade

    watch = Watch(mlflow_state(dep, "3.6.0", "3.17.2"))
    watch.start()
    try:
        result = upgrade(environment=dep.name, target="3.17.2", accept_migration_risk=accept_risk)
        watch.join(120)
    finally:
        dep.down()
    return watch.downtime, result["downtime"]


def run_documented(template, root: Path) -> tuple[float, dict]:
    dep = copy_of(template, root, "bench-mlflow-doc")
    watch = Watch(mlflow_state(dep, "3.6.0", "3.17.2"))
    watch.start()
    parts = {}
    try:
        t = time.monotonic()
        dep.compose("stop", "server")
        parts["stop"] = time.monotonic() - t
        subprocess.run(["git", "-C", str(dep.compose_dir), "checkout", "-q", "3.17.2"], check=True)
        t = time.monotonic()
        dep.compose("run", "--rm", "--no-deps", "--no-TTY", "server", "mlflow", "db", "upgrade", URI, timeout=3600)
        parts["mlflow db upgrade"] = time.monotonic() - t
        t = time.monotonic()
        dep.compose("up", "--detach")
        parts["up"] = time.monotonic() - t
        watch.join(600)
        parts["until healthy"] = watch.downtime - sum(parts.values())
    finally:
        dep.down()
    return watch.downtime, {k: round(v, 2) for k, v in parts.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--metric-rows", type=int, default=1_000_000)
    ap.add_argument("--accept-migration-risk", action="store_true",
                    help="go ahead when the migration gate stops the upgrade (a forecast lock-hold over the limit)")
    args = ap.parse_args()
    ss, doc = [], []
    with tempfile.TemporaryDirectory(prefix="bench-mlflow-", dir="/var/tmp") as tmp:
        template = seed_template(Path(tmp), args.metric_rows)
        try:
            for i in range(args.rounds):
                with tempfile.TemporaryDirectory(prefix="round-", dir=tmp) as r:
                    d1, p1 = run_stackshift(template, Path(r), args.accept_migration_risk)
                ss.append((d1, p1))
                print(f"round {i + 1}: stackshift {d1:.2f} s  {p1}", flush=True)
                with tempfile.TemporaryDirectory(prefix="round-", dir=tmp) as r:
                    d2, p2 = run_documented(template, Path(r))
                doc.append((d2, p2))
                print(f"round {i + 1}: documented {d2:.2f} s  {p2}", flush=True)
        finally:
            template.down()
            shutil.rmtree(template.compose_dir / "volumes", ignore_errors=True)
    m_ss, m_doc = statistics.median(d for d, _ in ss), statistics.median(d for d, _ in doc)
    print()
    print(f"metric rows: {args.metric_rows:,}; rounds: {args.rounds}")
    print(f"median downtime: stackshift {m_ss:.2f} s, documented procedure {m_doc:.2f} s, ratio {m_ss / m_doc:.2f}")
    for name in ("stop-writers", "rollback-point", "start-db", "migrate", "start-target"):
        print(f"  stackshift {name:15s} median {statistics.median(p.get(name, 0) for _, p in ss):.2f} s")
    for name in ("stop", "mlflow db upgrade", "up", "until healthy"):
        print(f"  documented {name:18s} median {statistics.median(p.get(name, 0) for _, p in doc):.2f} s")


if __name__ == "__main__":
    main()
