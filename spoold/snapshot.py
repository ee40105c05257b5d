"""The stats snapshot: what one daemon counted, as the watchers read it.

The daemon's ``Stats`` listener (``core/stats.py``) keeps these figures in
memory and publishes them every ``[metrics] interval`` seconds through its
backend: a file on the file spool, a key with an expiry per daemon on Redis.
The readers (``spoold metrics``, ``spoold top``, ``spoold status --watch``,
the dashboard) read them back with ``Snapshot.from_json``. This module is
the one place the format is written down; a leaf, so that the writer (the
core) and the readers (the CLI) share it without importing each other.

Counters count since the daemon started (Prometheus handles the reset at a
restart); every class named in them passed the allowlist, and rejections
are counted by a fixed ``kind`` (``job.REJECTION_KINDS``), never by the class
a rejected file claimed.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = 1  # bumped when a reader could misread a newer snapshot

# Fixed buckets (upper bounds, seconds), as Prometheus's classic histograms want them.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0, 3600.0)  # fmt: skip
PICKUP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
                  120.0, 600.0, 1800.0)  # fmt: skip
MINUTES_KEPT = 24 * 60  # the per-minute ring covers a day


@dataclass
class Histogram:
    """Observations in fixed buckets: ``counts[i]`` are those ≤ ``bounds[i]`` and above the
    bound before; the last count is those above every bound (+Inf)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0  # the sum of the observations

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        value = max(0.0, value)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # the first bound >= value
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        """Counts at or below each bound, then the total (Prometheus's ``le`` series)."""
        running, out = 0, []
        for number in self.counts:
            running += number
            out.append(running)
        return out

    def quantile(self, q: float) -> float | None:
        """An estimate of the ``q`` quantile (the bucket's upper bound), None if empty."""
        total = self.count
        if not total:
            return None
        rank = q * total
        for bound, seen in zip((*self.bounds, math.inf), self.cumulative(), strict=True):
            if seen >= rank:
                return bound if bound != math.inf else self.bounds[-1]
        return self.bounds[-1]


@dataclass
class Minute:
    """One minute of the daemon's work (``at``: the minute's start, epoch seconds)."""

    at: int
    started: int = 0
    done: int = 0
    failed: int = 0
    rejected: int = 0
    runtime: float = 0.0  # seconds of attempts that ended in this minute


@dataclass
class RunningAttempt:
    """An attempt running when the snapshot was taken."""

    job_id: str
    target: str  # class.method
    attempt: int
    started_at: float
    timeout: float


@dataclass
class Snapshot:
    """One daemon's figures at ``taken_at`` (all times on the backend's clock)."""

    daemon: str  # unique per daemon run: host:pid:nonce on Redis, host:pid on files
    host: str
    pid: int
    backend: str
    version: str  # spoold's
    python: str
    started_at: float
    taken_at: float
    interval: float  # seconds between snapshots: older than a few of these is stale
    busy: int
    slots: int  # [worker] concurrency
    held: int  # outcomes held back by the daemon's own trouble
    ready: int  # due and waiting for a slot
    scheduled: int  # waiting for a time (run_at, a retry)
    oldest_wait: float | None  # how long the oldest due job has waited, None: none waits
    held_back: dict[str, int] = field(default_factory=dict)  # class -> ready jobs at its limit
    received: dict[str, int] = field(default_factory=dict)  # class -> jobs accepted
    rejected: dict[str, int] = field(default_factory=dict)  # kind -> files refused
    attempts_started: dict[str, int] = field(default_factory=dict)  # class -> n
    attempts_finished: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> outcome
    jobs_finished: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> status
    retries_scheduled: dict[str, int] = field(default_factory=dict)  # class -> n
    last_success: dict[str, float] = field(default_factory=dict)  # class -> when
    duration: dict[str, Histogram] = field(default_factory=dict)  # class -> attempt durations
    pickup: Histogram = field(default_factory=lambda: Histogram(PICKUP_BUCKETS))
    minutes: list[Minute] = field(default_factory=list)  # oldest first, quiet minutes left out
    running: list[RunningAttempt] = field(default_factory=list)
    format: int = FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Snapshot:
        """Read a snapshot back; ValueError if it is not one (or of a newer format)."""
        try:
            document = json.loads(data)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            if document.get("format") != FORMAT:
                raise ValueError(f"format {document.get('format')!r}, this spoold reads {FORMAT}")
            return _snapshot(document)
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a stats snapshot: {exc!r}") from None

    def failed_since(self, since: float) -> int:
        """Jobs failed for good in the minutes from ``since`` on (the ring's resolution)."""
        first = int(since // 60 * 60)
        return sum(minute.failed for minute in self.minutes if minute.at >= first)

    def stale(self, now: float) -> bool:
        """Not renewed for three intervals: the daemon is stuck, or gone."""
        return now - self.taken_at > 3 * self.interval + 1.0


def _snapshot(document: dict[str, Any]) -> Snapshot:
    fields = dict(document)
    fields["duration"] = {
        name: _histogram(value, DURATION_BUCKETS) for name, value in document["duration"].items()
    }
    fields["pickup"] = _histogram(document["pickup"], PICKUP_BUCKETS)
    fields["minutes"] = [Minute(**minute) for minute in document["minutes"]]
    fields["running"] = [RunningAttempt(**attempt) for attempt in document["running"]]
    return Snapshot(**fields)


def _histogram(value: dict[str, Any], default: tuple[float, ...]) -> Histogram:
    bounds = tuple(float(bound) for bound in value.get("bounds", default))
    counts = [int(number) for number in value["counts"]]
    if len(counts) != len(bounds) + 1:
        raise ValueError("a histogram's counts do not match its buckets")
    return Histogram(bounds, counts, float(value["total"]))
