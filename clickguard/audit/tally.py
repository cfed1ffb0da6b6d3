"""What the proxy decided, counted for /metrics: requests, decisions by action and reason, timings.

The counting is on the request path, so it is plain integers in dicts and lists (well under a
microsecond a record, against the milliseconds of the record's own write); the ops listener turns
them into Prometheus series when it is scraped (`clickguard.proxy.ops`), never per request.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

# Seconds: from a millisecond up to the inspection deadline's order of magnitude.
TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Observations counted into fixed buckets; safe from any thread (the inspection pool's too)."""

    def __init__(self, bounds: Sequence[float] = TIME_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Count one observation."""
        i = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def cumulative(self) -> tuple[list[tuple[str, int]], float]:
        """Prometheus' buckets (le -> observations at or below it, '+Inf' last) and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets, total


class Tally:
    """The proxy's counts since it started."""

    def __init__(self) -> None:
        self.requests = 0  # HTTP requests the proxy handled (past proxy authentication; the click host's too)
        self.decisions: defaultdict[tuple[str, str], int] = defaultdict(int)  # (event, action) -> records
        self.reasons: defaultdict[tuple[str, str], int] = defaultdict(int)  # (action, code) -> records
        self.inspection = Histogram()  # seconds from a held body's submission to its reading
        self.audit_write = Histogram()  # seconds until a record was recorded (or refused)

    def decided(self, entry: Mapping[str, Any]) -> None:
        """Count one audit record (called where every record is made: Runtime.record)."""
        action = entry["action"]
        self.decisions[entry["event"], action] += 1
        for code in entry["reasons"]:
            self.reasons[action, code] += 1

    def time_reading(self, reading: Future[Any]) -> None:
        """Observe the time from now until a reading submitted to the inspection pool is done."""
        started = time.perf_counter()
        reading.add_done_callback(lambda _: self.inspection.observe(time.perf_counter() - started))
