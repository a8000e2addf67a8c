"""A user of the demo app writing through its HTTP API while an upgrade runs (the tests' and the benchmarks'): new
events (POST /events) and one more token on existing ones (`touch`), one request at a time. It keeps what each
write that succeeded did (to compare the table with afterwards), each write's wall-clock start and latency, and the
failed ones (refused, reset, an error status): the old version's write latency and errors during a preparation."""
from __future__ import annotations

import http.client
import json
import random
import statistics
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable


# refused, reset, an error status (HTTPError is an OSError), a cut answer
BROKEN_ANSWERS = (OSError, http.client.HTTPException, ValueError)
Row = tuple[int, int, str]  # events: account_id, total_tokens, payload


class AppWriter(threading.Thread):
    """Writes until `stop()` or until `until()` is true (checked before each write)."""

    def __init__(self, api_port: int, touch_ids: list[int], until: Callable[[], bool] | None = None,
                 pause: float = 0.005):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{api_port}/events"
        self.touch_ids, self.until, self.pause = touch_ids, until, pause
        self.inserted: dict[int, Row] = {}
        self.touched: Counter[int] = Counter()
        self.writes: list[tuple[float, float]] = []   # (wall-clock start, latency in s) of each write that succeeded
        self.errors: list[tuple[float, str]] = []     # (wall-clock start, what went wrong)
        self._halt = threading.Event()
        self._rng = random.Random(21)

    def run(self) -> None:
        n = 0
        while not self._halt.is_set() and not (self.until is not None and self.until()):
            n += 1
            if n % 2 and self.touch_ids:
                self._write({"touch": self._rng.choice(self.touch_ids)})
            else:
                self._write({"account_id": 1 + n % 1000, "total_tokens": n, "payload": f"app write {n}"})
            time.sleep(self.pause)

    def _write(self, body: dict) -> None:
        start, t0 = time.time(), time.monotonic()
        req = urllib.request.Request(self.url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                new_id = json.loads(resp.read())["id"]
        except BROKEN_ANSWERS as exc:
            self.errors.append((start, f"{type(exc).__name__}: {exc}"))
            return
        self.writes.append((start, time.monotonic() - t0))
        if "touch" in body:
            self.touched[body["touch"]] += 1
        else:
            self.inserted[new_id] = (body["account_id"], body["total_tokens"], body["payload"])

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def expected(self, seeded: dict[int, Row]) -> dict[int, Row]:
        """The events table as it must be: the seeded rows, each touched one with its tokens, and the new ones."""
        out = {i: (a, t + self.touched.get(i, 0), p) for i, (a, t, p) in seeded.items()}
        return out | self.inserted

    def during(self, start: float, end: float) -> dict:
        """The writes begun between two wall-clock times: how many, their latency p50/p99 (ms) and the errors."""
        lat = sorted(s for t, s in self.writes if start <= t <= end)
        errors = [e for t, e in self.errors if start <= t <= end]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
        return {"writes": len(lat), "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else float("nan"),
                "p99_ms": round(p99 * 1000, 1), "errors": len(errors), "first_errors": errors[:3]}


def events(dep) -> dict[int, Row]:
    """Every row of the deployment's events table, by id."""
    with dep.connect() as conn:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
            "SELECT id, account_id, total_tokens, payload FROM events ORDER BY id")}
