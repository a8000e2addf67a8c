"""Benchmark: api downtime of a v1→v2 upgrade of the lab stack, stackshift vs Dify's documented procedure.

Both run in one invocation, alternating, each on a fresh deployment seeded with the same rows, with the
target images removed locally first (both must pull). A thread polls the api's /health every 50 ms; the
downtime is the gap between the last healthy v1 answer and the first healthy v2 answer.

Documented procedure (Dify release notes): merge .env, `docker compose down`, `tar` the volumes,
`git checkout <tag>`, `docker compose up -d` (images pulled by up; the entrypoints migrate, in api and worker).

Run: `.venv/bin/python -m bench.upgrade_downtime [--rounds 3] [--rows 1000000]` (after lab/setup).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")  # the lab's server, before Prefect loads

from blocks.stack_environment import StackEnvironment  # noqa: E402
from core import envsync  # noqa: E402
from core.envfile import write_atomic  # noqa: E402
from lab import stack  # noqa: E402

TARGET_IMAGE = "127.0.0.1:5000/demo/app:2.0.0"


class HealthWatch(threading.Thread):
    """Polls /health; records when v1 was last healthy before the outage and when v2 first answered healthy."""

    def __init__(self, dep: stack.Deployment, target_version: str = "2.0.0"):
        super().__init__(daemon=True)
        self.dep, self.target = dep, target_version
        self.last_old_ok = None
        self.first_new_ok = None
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            h = self.dep.api_health()
            now = time.monotonic()
            if h and h.get("status") == "ok":
                if h["version"] == self.target:
                    self.first_new_ok = self.first_new_ok or now
                    return
                self.last_old_ok = now
            time.sleep(0.05)

    @property
    def downtime(self) -> float:
        return self.first_new_ok - self.last_old_ok


def _drop_target_image():
    subprocess.run(["docker", "rmi", TARGET_IMAGE], capture_output=True)


def run_stackshift(root: Path, rows: int) -> tuple[float, dict]:
    dep = stack.create(root, "bench-ss", "v1.0.0", rows)
    StackEnvironment(**dep.block_fields()).save("bench-ss", overwrite=True)
    _drop_target_image()
    from flows.upgrade import upgrade

    watch = HealthWatch(dep)
    watch.start()
    result = upgrade(environment="bench-ss", target="v2.0.0")
    watch.join(60)
    dep.down()
    return watch.downtime, result["downtime"]


def run_documented(root: Path, rows: int) -> tuple[float, dict]:
    dep = stack.create(root, "bench-doc", "v1.0.0", rows)
    _drop_target_image()
    d = dep.compose_dir
    old = subprocess.run(["git", "-C", str(d), "show", "v1.0.0:.env.example"], capture_output=True, text=True).stdout
    new = subprocess.run(["git", "-C", str(d), "show", "v2.0.0:.env.example"], capture_output=True, text=True).stdout
    merged = envsync.merge_for(d / ".env", old, new).text  # done before the outage, and correctly, to be fair
    watch = HealthWatch(dep)
    watch.start()
    parts = {}
    t = time.monotonic()
    subprocess.run(["docker", "compose", "--project-directory", str(d), "-p", dep.name, "down"], check=True, capture_output=True)
    parts["down"] = time.monotonic() - t
    t = time.monotonic()
    subprocess.run(["tar", "-czf", str(root / "volumes-backup.tar.gz"), "-C", str(d), "volumes"], check=True)
    parts["tar"] = time.monotonic() - t
    subprocess.run(["git", "-C", str(d), "checkout", "-q", "v2.0.0"], check=True)
    write_atomic(d / ".env", merged)
    t = time.monotonic()
    subprocess.run(["docker", "compose", "--project-directory", str(d), "-p", dep.name, "up", "-d"], check=True,
                   capture_output=True)
    parts["up"] = time.monotonic() - t
    watch.join(300)
    parts["until healthy"] = watch.downtime - sum(parts.values())
    dep.down()
    return watch.downtime, {k: round(v, 2) for k, v in parts.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    ss, doc = [], []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            d1, parts1 = run_stackshift(Path(tmp), args.rows)
            ss.append((d1, parts1))
            print(f"round {i + 1}: stackshift {d1:.2f} s  {parts1}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            d2, parts2 = run_documented(Path(tmp), args.rows)
            doc.append((d2, parts2))
            print(f"round {i + 1}: documented {d2:.2f} s  {parts2}", flush=True)
    m_ss = statistics.median(d for d, _ in ss)
    m_doc = statistics.median(d for d, _ in doc)
    rp_mig = statistics.median(p["rollback-point"] + p["migrate"] for _, p in ss)
    print()
    print(f"rows seeded: {args.rows:,}; rounds: {args.rounds}")
    print(f"median api downtime: stackshift {m_ss:.2f} s, documented procedure {m_doc:.2f} s, ratio {m_ss / m_doc:.2f}")
    print(f"stackshift: median rollback point + migration {rp_mig:.2f} s; downtime beyond that {m_ss - rp_mig:.2f} s")
    for name in ("stop-writers", "rollback-point", "remove-retired", "start-db", "migrate", "start-target"):
        print(f"  {name:15s} median {statistics.median(p.get(name, 0) for _, p in ss):.2f} s")


if __name__ == "__main__":
    main()
