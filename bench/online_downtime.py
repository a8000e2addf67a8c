"""Benchmark (issue 21): api downtime of the lab stack's v2.0.1 → v2.1.0 upgrade, whose only migration widens the
biggest table's primary key `events.id` int → bigint (its sequence too; `event_links` points at it), three ways side
by side per round and size, in one invocation:

- **online**: stackshift with `online_preparation=auto`: the widening is prepared while v2.0.1 serves (shadow column,
  trigger, batched backfill, swap); the app's own ALTER then changes only the catalog in the downtime;
- **off**: stackshift with `online_preparation=off`: the app's ALTER rewrites the table in the downtime;
- **documented**: Dify's documented procedure (`bench.upgrade_downtime.run_documented`: down, tar, checkout, up).

Each run is on a fresh deployment started on a copy of one seeded database per size, with the target image removed
locally first. The downtime watcher (`bench.watch`) polls the api's /health every 50 ms. A user writes through the
app's HTTP API (`lab.writer.AppWriter`: new events, more tokens on seeded ones) from a few seconds before each
stackshift upgrade: its write latency p50/p99 and errors are reported before the upgrade (the baseline) and during
the preparation, whose wall time comes from the run's journal (`prepare-online`).

    .venv/bin/python -m bench.online_downtime --sizes 10000000,30000000 --rounds 3   (after lab/setup)

`--release v1.0.0 --target v2.0.0 --no-documented` measures the demo's v2 instead (it widens `events.total_tokens`
and builds an index without CONCURRENTLY, which stays in the downtime).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_API_URL", "http://127.0.0.1:4200/api")  # the lab's server, before Prefect loads

from blocks.stack_environment import StackEnvironment  # noqa: E402
from core.cutover.journal import Journal  # noqa: E402
from lab import stack  # noqa: E402
from lab.writer import AppWriter  # noqa: E402
from bench.upgrade_downtime import _drop_target_image, run_documented  # noqa: E402
from bench.watch import Watch, api_state  # noqa: E402
from tests.e2e import server  # noqa: E402

RELEASE, TARGET = "v2.0.1", "v2.1.0"
BASELINE_SECONDS = 3.0


def run_stackshift(root: Path, rows: int, seed: stack.Seeded, online: str,
                   releases: tuple[str, str] = (RELEASE, TARGET)) -> dict:
    """One stackshift upgrade (from, to) with `online_preparation=online`, a user writing through the app meanwhile."""
    release, target = releases
    name = f"bench-online-{online}"
    dep = stack.create(root, name, release, rows, from_seed=seed)
    StackEnvironment(**dep.block_fields(), online_preparation=online).save(name, overwrite=True)
    _drop_target_image(f"127.0.0.1:5000/demo/app:{target[1:]}")
    from flows.upgrade import upgrade

    writer = AppWriter(dep.api_port, list(range(1, rows + 1, 97)))
    writer.start()
    time.sleep(BASELINE_SECONDS)
    started = time.time()
    watch = Watch(api_state(dep, target[1:]))
    watch.start()
    try:
        result = upgrade(environment=name, target=target, accept_migration_risk=True)
        watch.join(60)
    finally:
        writer.stop()
        dep.down()
        server.remove(name)  # its block and what the run named after it: nothing left on the Prefect server
    journal = Journal.load(Path(result["backup"]) / "journal.json")
    prep = journal.record("prepare-online")
    out = {"downtime": watch.downtime, "migrate": result["downtime"].get("migrate", 0.0),
           "baseline": writer.during(started - BASELINE_SECONDS, started)}
    if prep is not None and prep.ended is not None:
        out |= {"preparation": prep.ended - prep.started, "during": writer.during(prep.started, prep.ended)}
    return out


def one_round(rows: int, seed: stack.Seeded, release: str, target: str, documented: bool) -> dict:
    out = {}
    for online in ("auto", "off"):
        with tempfile.TemporaryDirectory(prefix="bench-", dir="/var/tmp") as tmp:
            out[online] = run_stackshift(Path(tmp), rows, seed, online, (release, target))
    if documented:
        with tempfile.TemporaryDirectory(prefix="bench-", dir="/var/tmp") as tmp:
            down, parts = run_documented(Path(tmp), rows, seed, release, target)
            out["documented"] = {"downtime": down, "parts": parts}
    return out


def med(values) -> float:
    values = [v for v in values if not math.isnan(v)]  # NaN: no write in that window
    return statistics.median(values) if values else float("nan")


def report(rows: int, rounds: list[dict]) -> None:
    auto, off, doc = ([r[k] for r in rounds if k in r] for k in ("auto", "off", "documented"))
    print(f"\n{rows:,} rows, {len(rounds)} round(s), medians:")
    print(f"  api downtime: online {med(r['downtime'] for r in auto):.2f} s (migrate step "
          f"{med(r['migrate'] for r in auto):.2f} s) | off {med(r['downtime'] for r in off):.2f} s (migrate step "
          f"{med(r['migrate'] for r in off):.2f} s) | documented {med(r['downtime'] for r in doc):.2f} s")
    prepared = [r for r in auto if "preparation" in r]
    if len(prepared) < len(auto):
        print(f"  {len(auto) - len(prepared)} online round(s) prepared nothing online")
    if prepared:
        print(f"  preparation (the old version serving): {med(r['preparation'] for r in prepared):.1f} s")
        for label, key in (("before the upgrade", "baseline"), ("during the preparation", "during")):
            w = [r[key] for r in prepared]
            print(f"  app writes {label}: p50 {med(x['p50_ms'] for x in w):.1f} ms, p99 "
                  f"{med(x['p99_ms'] for x in w):.1f} ms, {sum(x['writes'] for x in w)} writes, "
                  f"{sum(x['errors'] for x in w)} errors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="10000000,30000000", help="events rows seeded, comma-separated")
    ap.add_argument("--release", default=RELEASE, help=f"the release upgraded from (default {RELEASE})")
    ap.add_argument("--target", default=TARGET, help=f"the release upgraded to (default {TARGET})")
    ap.add_argument("--no-documented", action="store_true", help="only stackshift, online and off")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, list[dict]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="bench-seed-", dir="/var/tmp") as seed_dir:
        seeds = {}
        for rows in sizes:
            t = time.monotonic()
            seeds[rows] = stack.seeded(Path(seed_dir), rows, args.release)
            print(f"seeded {rows:,} rows in {time.monotonic() - t:.0f} s (each deployment starts on a copy)",
                  flush=True)
        for i in range(args.rounds):
            for rows in sizes:
                r = one_round(rows, seeds[rows], args.release, args.target, not args.no_documented)
                results[rows].append(r)
                print(f"round {i + 1}, {rows:,} rows: " + "; ".join(
                    f"{k} {v['downtime']:.2f} s" for k, v in r.items()) + f"; online {r['auto']}", flush=True)
    for rows in sizes:
        report(rows, results[rows])


if __name__ == "__main__":
    main()
