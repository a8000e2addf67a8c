"""The probe's arithmetic, apart from the server: how long a timed statement would have taken without waiting for a
CPU, how busy the server was, and whether another round fits the probe's time budget.

A statement's wall time on a busy host is its own work plus the time its server process sat runnable on a run
queue while other processes had the CPUs. Linux counts that second part per process (`/proc/<pid>/schedstat`,
field 2, nanoseconds). The probe reads it for its own PostgreSQL backend before and after each timed statement, so

    calibrated seconds = wall seconds − seconds spent waiting for a CPU

is the statement's duration on an idle host: its CPU work, its I/O and its other waits, but no queueing behind
the load. The forecast, and so the gate, use the rates from calibrated seconds; the load of the moment is kept as
one factor (`load_factor` = wall / calibrated) that the report shows beside them. The same upgrade on the same data
then gets the same verdict whatever else the host is doing.

    >>> t = Timing(wall=2.0, cpu_wait=1.5)
    >>> t.calibrated, load_factor([t])
    (0.5, 4.0)
    >>> Timing(wall=2.0, cpu_wait=None).calibrated  # not measurable: the time as it was
    2.0
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MIN_SHARE = 0.01
"""A calibrated time is never below the time on a CPU, nor this share of the wall time (a counter read off a
statement's edges must not make it look free)."""


@dataclass(frozen=True)
class Timing:
    """One timed statement: its wall time, how much of it its server process waited for a CPU (None: the server
    does not let us read that, e.g. a role that is not superuser) and how much it ran on one."""

    wall: float
    cpu_wait: float | None
    on_cpu: float | None = None

    @property
    def calibrated(self) -> float:
        """Seconds the statement would have taken with a CPU free whenever it was ready to run."""
        if self.cpu_wait is None:
            return self.wall
        return max(self.wall - max(self.cpu_wait, 0.0), self.on_cpu or 0.0, self.wall * MIN_SHARE, 1e-6)


def load_factor(timings: list[Timing]) -> float:
    """How much slower than calibrated the timed statements ran (1.0: no CPU wait at all, or none measurable)."""
    calibrated = sum(t.calibrated for t in timings)
    return round(sum(t.wall for t in timings) / calibrated, 3) if calibrated > 0 else 1.0


def schedstat(text: str) -> tuple[float, float]:
    """(seconds on a CPU, seconds waiting on a run queue) from `/proc/<pid>/schedstat`: "<ns on cpu> <ns waiting>
    <timeslices>"."""
    on_cpu, waiting, *_ = [*text.split(), "", ""]
    if not (on_cpu.isdigit() and waiting.isdigit()):
        raise ValueError(f"not a schedstat line: {text[:60]!r}")
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def another_round(elapsed: float, last_round: float, budget: float, rounds_done: int, max_rounds: int) -> bool:
    """Whether the probe starts one more round: the first always runs; another only while one more round as long
    as the last one still ends within the budget (seconds of wall time, what the person waiting sees)."""
    if rounds_done == 0:
        return True
    return rounds_done < max_rounds and elapsed + last_round <= budget


@dataclass(frozen=True)
class Round:
    """One round of the probe: the scratch table's rows and heap (before and after its rewrite) and its three
    timed statements."""

    rows: int
    heap_bytes: int
    heap_after: int
    scan: Timing
    rewrite: Timing
    index: Timing

    @property
    def timings(self) -> tuple[Timing, ...]:
        return self.scan, self.rewrite, self.index

    def sort_seconds(self, scan_bps: float) -> float:
        """The index build less its heap scan: the sort (never below a fifth of the build)."""
        build = self.index.calibrated
        return max(build - self.heap_after / scan_bps, build * 0.2)


Pair = tuple[float, float]


def rates(rounds: list[Round]) -> tuple[Pair, Pair, Pair]:
    """Rewrite bytes/s, scan bytes/s and sort n·log2 n/s, each as (fast, slow): fast the best round's, slow the
    pooled rate (all the work over all the time). Pooled, because some rounds pay for work that comes in lumps (a
    new 16 MB WAL segment written out) and a real migration pays for it in proportion; and the best round against
    the pooled rate, because the slowest single round would make the range depend on how many rounds ran."""
    scan = _pair([r.heap_bytes for r in rounds], [r.scan.calibrated for r in rounds])
    rewrite = _pair([r.heap_bytes for r in rounds], [r.rewrite.calibrated for r in rounds])
    sort = _pair([r.rows * math.log2(r.rows) for r in rounds], [r.sort_seconds(scan[1]) for r in rounds])
    return rewrite, scan, sort


def _pair(work: list[float], seconds: list[float]) -> Pair:
    return max(w / s for w, s in zip(work, seconds, strict=True)), sum(work) / sum(seconds)
