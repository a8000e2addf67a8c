"""Benchmark: api downtime of a v1→v2 upgrade of the lab stack, stackshift vs Dify's documented procedure, at two
database sizes in one invocation; the floor of every other part of the outage; a rollback at the larger size.

Per size and round, both methods run alternately, each on a fresh deployment seeded with the same rows, with the
target images removed locally first (both must pull). A thread polls the api's /health every 50 ms; the downtime
is the gap between the last healthy v1 answer and the first healthy v2 answer.

- **stackshift**: the upgrade flow (rollback point `auto`: pre-flight picks FILE_COPY or PITR from the measured
  copy rate; the larger size also accepts the migration gate's risk explicitly). Its breakdown comes from the run's
  journal; "beyond the migration" is the api downtime minus the migrate step.
- **documented** (Dify's release notes): merge .env (done before, and correctly, to be fair), `docker compose
  down`, `tar` the volumes, `git checkout <tag>`, `docker compose up -d` (the entrypoints migrate, in api and
  worker).
- **bare floor**: on a small deployment, the same cutover as bare commands, each timed alone (`docker compose stop`,
  `pg_create_restore_point`, `git checkout`, `docker compose rm --stop` (set beside stackshift's `stop-retired`),
  `docker compose up --wait`, `docker compose run`): what the plain tools take for each step here.
- **rollback**: at the larger size, an upgrade to a release that fails its health check, with a row written through
  the app after the online backup; every row must be back.

Run: `.venv/bin/python -m bench.upgrade_downtime [--rounds 3] [--sizes 1000000,10000000]` (after lab/setup).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")  # the lab's server, before Prefect loads

from blocks.stack_environment import StackEnvironment  # noqa: E402
from core.env import envsync  # noqa: E402
from core.files import write_atomic  # noqa: E402
from core.io import pgsql  # noqa: E402
from core.cutover.journal import Journal  # noqa: E402
from lab import stack  # noqa: E402
from bench.watch import Watch, api_state  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_IMAGE = "127.0.0.1:5000/demo/app:2.0.0"
CUTOVER = ("stop-writers", "checkout-target", "rollback-point", "install-env", "stop-retired", "start-db", "migrate",
           "start-target")
BESIDE = {"checkout-target"}  # runs beside the writers' stop (one Together step): not added to the outage twice


def _drop_target_image(image: str = TARGET_IMAGE):
    subprocess.run(["docker", "rmi", image], check=False, capture_output=True)


def _compose(dep: stack.Deployment, *args: str) -> float:
    t = time.monotonic()
    subprocess.run(["docker", "compose", "--project-directory", str(dep.compose_dir), "-p", dep.name, *args],
                   check=True, capture_output=True)
    return time.monotonic() - t


def run_stackshift(root: Path, rows: int, seed: stack.Seeded) -> tuple[float, dict, str]:
    dep = stack.create(root, "bench-ss", "v1.0.0", rows, from_seed=seed)
    StackEnvironment(**dep.block_fields()).save("bench-ss", overwrite=True)
    _drop_target_image()
    from flows.upgrade import upgrade

    watch = Watch(api_state(dep, "2.0.0"))
    watch.start()
    result = upgrade(environment="bench-ss", target="v2.0.0", accept_migration_risk=True)
    watch.join(60)
    dep.down()
    return watch.downtime, result["downtime"], result["rollback_point"]["method"]


def run_documented(root: Path, rows: int, seed: stack.Seeded, release: str = "v1.0.0",
                   target: str = "v2.0.0") -> tuple[float, dict]:
    """The documented procedure from `release` to `target` (demo tags: `vX.Y.Z`, whose app image is `X.Y.Z`)."""
    dep = stack.create(root, "bench-doc", release, rows, from_seed=seed)
    _drop_target_image(f"127.0.0.1:5000/demo/app:{target[1:]}")
    d = dep.compose_dir
    old = subprocess.run(["git", "-C", str(d), "show", f"{release}:.env.example"], check=False, capture_output=True,
                         text=True).stdout
    new = subprocess.run(["git", "-C", str(d), "show", f"{target}:.env.example"], check=False, capture_output=True,
                         text=True).stdout
    merged = envsync.merge_for(d / ".env", old, new).text  # done before the outage, and correctly, to be fair
    watch = Watch(api_state(dep, target[1:]))
    watch.start()
    parts = {"down": _compose(dep, "down")}
    t = time.monotonic()
    subprocess.run(["tar", "-czf", str(root / "volumes-backup.tar.gz"), "-C", str(d), "volumes"], check=True)
    parts["tar"] = time.monotonic() - t
    subprocess.run(["git", "-C", str(d), "checkout", "-q", target], check=True)
    write_atomic(d / ".env", merged, keep_mode=True)
    parts["up"] = _compose(dep, "up", "-d")
    watch.join(900)
    parts["until healthy"] = watch.downtime - sum(parts.values())
    dep.down()
    return watch.downtime, {k: round(v, 2) for k, v in parts.items()}


def bare_floor(root: Path) -> dict[str, float]:
    """The cutover as bare commands on a small deployment, each timed alone."""
    dep = stack.create(root, "bench-bare", "v1.0.0", 1000)
    d = dep.compose_dir
    parts = {"stop-writers": _compose(dep, "stop", "api", "worker")}
    with dep.connect("postgres") as conn:
        conn.autocommit = True
        t = time.monotonic()
        conn.execute(pgsql.restore_point("bench"))
        parts["rollback-point"] = time.monotonic() - t
    t = time.monotonic()
    subprocess.run(["git", "-C", str(d), "checkout", "-q", "v2.0.0"], check=True)
    parts["checkout-target"] = time.monotonic() - t
    env = (d / ".env").read_text().replace("DB_HOST=db\n", "DB_HOST=db_postgres\n")
    write_atomic(d / ".env", env, keep_mode=True)
    parts["remove-retired"] = _compose(dep, "rm", "--stop", "--force", "db")
    parts["start-db"] = _compose(dep, "up", "--detach", "--wait", "--no-deps", "db_postgres")
    parts["migrate(one-off)"] = _compose(dep, "run", "--rm", "--no-deps", "-e", "MIGRATION_ENABLED=false", "api",
                                         "python3", "-m", "alembic", "upgrade", "head")
    parts["start-target"] = _compose(dep, "up", "--detach", "--wait", "--remove-orphans")
    dep.down()
    return parts


def run_rollback(root: Path, rows: int, seed: stack.Seeded) -> dict:
    """An upgrade to v3.0.0-unhealthy (its api never turns healthy) with a write through the app after the online
    backup: it must roll back with every row, the late one included."""
    dep = stack.create(root, "bench-rb", "v1.0.0", rows, from_seed=seed)
    StackEnvironment(**dep.block_fields()).save("bench-rb", overwrite=True)
    marker = root / "marker"
    spec = "backup:write-state:hold-after"  # the dump, the volumes and (PITR) the base backup are done
    env = os.environ | {"STACKSHIFT_INJECT_FAULT": spec, "STACKSHIFT_INJECT_FAULT_MARKER": str(marker)}
    proc = subprocess.Popen([str(ROOT / "stackshift"), "upgrade", "-e", "bench-rb", "-t", "v3.0.0-unhealthy",
                             "--accept-migration-risk"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    while not (marker.exists() and marker.read_text() == spec):
        if proc.poll() is not None:
            raise SystemExit(f"the rollback run ended early: {proc.communicate()[1][-2000:]}")
        time.sleep(0.1)
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{dep.api_port}/items", data=b'{"name": "late"}', method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        late = json.loads(resp.read())["id"]
    before = stack.fingerprint(dep)
    marker.unlink()
    proc.communicate(timeout=3600)
    run = next(p for p in (dep.backup_dir / "bench-rb").iterdir() if p.is_dir() and not p.name.startswith("."))
    journal = Journal.load(run / "journal.json")
    steps = {r.id: round((r.ended or r.started) - r.started, 2) for r in journal.steps if r.phase == "rollback"}
    with dep.connect() as conn:
        late_back = conn.execute("SELECT name FROM accounts WHERE id = %s", (late,)).fetchone() == ("late",)
    result = {"status": journal.status, "method": next(r.kind for r in journal.steps if r.id == "rollback-point"),
              "rows identical": stack.fingerprint(dep) == before, "late row back": late_back,
              "rows": sum(n for n, _ in before.values()), "rollback steps": steps}
    dep.down()
    return result


def med(values) -> float:
    values = list(values)
    return statistics.median(values) if values else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="1000000,10000000", help="rows seeded, comma-separated")
    ap.add_argument("--no-rollback", action="store_true", help="skip the rollback at the largest size")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict] = {n: {"ss": [], "doc": [], "bare": []} for n in sizes}
    seed_dir = tempfile.TemporaryDirectory(prefix="bench-seed-", dir="/var/tmp")
    seeds = {}
    for rows in sizes:
        t = time.monotonic()
        seeds[rows] = stack.seeded(Path(seed_dir.name), rows)
        print(f"seeded {rows:,} rows in {time.monotonic() - t:.0f} s (each deployment starts on a copy)", flush=True)
    for i in range(args.rounds):
        for rows in sizes:
            r = results[rows]
            with tempfile.TemporaryDirectory(prefix="bench-", dir="/var/tmp") as tmp:
                down, parts, method = run_stackshift(Path(tmp), rows, seeds[rows])
                r["ss"].append((down, parts, method))
                print(f"round {i + 1}, {rows:,} rows: stackshift {down:.2f} s ({method}) {parts}", flush=True)
            with tempfile.TemporaryDirectory(prefix="bench-", dir="/var/tmp") as tmp:
                down, parts = run_documented(Path(tmp), rows, seeds[rows])
                r["doc"].append((down, parts))
                print(f"round {i + 1}, {rows:,} rows: documented {down:.2f} s {parts}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-", dir="/var/tmp") as tmp:
            floor = bare_floor(Path(tmp))
            results[sizes[0]]["bare"].append(floor)
            print(f"round {i + 1}: bare floor {({k: round(v, 2) for k, v in floor.items()})}", flush=True)
    rollback = None
    if not args.no_rollback:
        with tempfile.TemporaryDirectory(prefix="bench-", dir="/var/tmp") as tmp:
            rollback = run_rollback(Path(tmp), sizes[-1], seeds[sizes[-1]])
            print(f"rollback at {sizes[-1]:,} rows: {rollback}", flush=True)

    seed_dir.cleanup()
    floors = results[sizes[0]]["bare"]
    print(f"\nrounds: {args.rounds}; medians")
    for rows in sizes:
        r = results[rows]
        m_ss, m_doc = med(d for d, _, _ in r["ss"]), med(d for d, _ in r["doc"])
        mig = med(p.get("migrate", 0) for _, p, _ in r["ss"])
        beyond = med(d - p.get("migrate", 0) for d, p, _ in r["ss"])
        methods = sorted({m for _, _, m in r["ss"]})
        print(f"\n{rows:,} rows: api downtime stackshift {m_ss:.2f} s ({'/'.join(methods)}), documented procedure "
              f"{m_doc:.2f} s, ratio {m_ss / m_doc:.2f}")
        print(f"  stackshift beyond the migration step: {beyond:.2f} s (migration step {mig:.2f} s)")
        print(f"  {'step':18s} {'stackshift':>10s} {'bare floor':>10s}")
        for name in CUTOVER:
            ss = med(p.get(name, 0) for _, p, _ in r["ss"])
            bare_key = {"migrate": "migrate(one-off)", "stop-retired": "remove-retired"}.get(name, name)
            bare = med(f.get(bare_key, 0) for f in floors) if floors else float("nan")
            print(f"  {name:18s} {ss:10.2f} {bare:10.2f}")
        gaps = med(d - sum(p.get(n, 0) for n in CUTOVER if n not in BESIDE) for d, p, _ in r["ss"])
        print(f"  {'outside the steps':18s} {gaps:10.2f}   (api downtime minus the steps: task runs, journal, polling)")
        for part in ("down", "tar", "up", "until healthy"):
            print(f"  documented {part:14s} {med(p[part] for _, p in r['doc']):.2f} s")
    if rollback:
        print(f"\nrollback at {sizes[-1]:,} rows: {json.dumps(rollback)}")


if __name__ == "__main__":
    main()
