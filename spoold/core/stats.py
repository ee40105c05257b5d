"""Stats: what the loop saw, counted for watchers (metrics, ``spoold top``, a dashboard).

A listener on the daemon's events (``events.py``): counters by class and by
outcome, rejections by their fixed kind, fixed-bucket histograms of attempt
duration and pickup latency, and a per-minute ring over a day. It counts and
never does I/O: the daemon takes a ``Snapshot`` (``spoold/snapshot.py``) every
``[metrics] interval`` and hands it to the backend to publish. Every class it
names passed the allowlist before it counted (a rejected file's class is never
a key), so the series a watcher sees are bounded by the config.

Pickup latency is an attempt's start minus the moment its job became due: its
submission, its ``run_at``, or its retry's due time, whichever is latest, so a
deliberate delay is not counted as waiting.
"""

from __future__ import annotations

import platform
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spoold.core.events import Listener
from spoold.live import Live
from spoold.snapshot import (
    DURATION_BUCKETS,
    MINUTES_KEPT,
    PICKUP_BUCKETS,
    Histogram,
    Minute,
    RunningAttempt,
    Snapshot,
)

if TYPE_CHECKING:
    from spoold.exec.messages import Attempt
    from spoold.job import Job


@dataclass(frozen=True)
class Identity:
    """Who the snapshots are from: fixed for the daemon's run."""

    daemon: str
    host: str
    pid: int
    backend: str
    version: str
    started_at: float


@dataclass(frozen=True)
class Gauges:
    """What the daemon reads of itself and its backend when it takes a snapshot."""

    busy: int
    slots: int
    held: int
    ready: int
    scheduled: int
    oldest_ready: float | None  # when the longest-waiting due job became due
    running: list[RunningAttempt]  # the attempts handed to the launcher, as the dispatcher has them
    held_back: Mapping[str, int] = field(default_factory=dict)  # class -> ready jobs at [limits]


class Stats(Listener):
    """Counts the daemon's events; ``snapshot`` hands them out as one ``Snapshot``."""

    def __init__(self, identity: Identity, live: Live, clock: Callable[[], float]) -> None:
        self.identity = identity
        self.live = live  # for the interval in force
        self.clock = clock  # the backend's
        self.accepted: Counter[str] = Counter()  # by class
        self.refused: Counter[str] = Counter()  # by rejection kind
        self.attempts_started: Counter[str] = Counter()
        self.attempts_finished: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.jobs_finished: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.retries_scheduled: Counter[str] = Counter()
        self.last_success: dict[str, float] = {}
        self.duration: dict[str, Histogram] = {}
        self.pickup = Histogram(PICKUP_BUCKETS)
        self.minutes: dict[int, Minute] = {}  # by the minute's start; insertion order is time

    # -- the events --

    def received(self, job: Job) -> None:
        self.accepted[job.class_path] += 1

    def rejected(self, job_id: str, reason: str, kind: str) -> None:
        self.refused[kind] += 1
        self._minute(self.clock()).rejected += 1

    def started(self, job: Job, pid: int) -> None:
        now = self.clock()
        self.attempts_started[job.class_path] += 1
        self.pickup.observe(now - _became_due(job))
        self._minute(now).started += 1

    def finished(self, job: Job, attempt: Attempt) -> None:
        took = max(0.0, attempt["finished_at"] - attempt["started_at"])
        self.attempts_finished[job.class_path][attempt["outcome"]] += 1
        histogram = self.duration.get(job.class_path)
        if histogram is None:
            histogram = self.duration[job.class_path] = Histogram(DURATION_BUCKETS)
        histogram.observe(took)
        self._minute(self.clock()).runtime += took

    def retry_scheduled(self, job: Job, due_at: float) -> None:
        self.retries_scheduled[job.class_path] += 1

    def filed(self, job_id: str, status: str, class_path: str) -> None:
        if status not in ("done", "failed", "cancelled"):
            return  # a rejection: counted by its kind, under no class
        now = self.clock()
        self.jobs_finished[class_path][status] += 1
        minute = self._minute(now)
        if status == "done":
            self.last_success[class_path] = now
            minute.done += 1
        elif status == "failed":  # (a cancel is somebody's choice, not a failure)
            minute.failed += 1

    def _minute(self, now: float) -> Minute:
        start = int(now // 60 * 60)
        minute = self.minutes.get(start)
        if minute is None:
            minute = self.minutes[start] = Minute(start)
            self._forget_before(start - (MINUTES_KEPT - 1) * 60)
        return minute

    def _forget_before(self, start: int) -> None:
        for old in [at for at in self.minutes if at < start]:
            del self.minutes[old]

    # -- the snapshot --

    def snapshot(self, now: float, gauges: Gauges) -> Snapshot:
        self._forget_before(int(now // 60 * 60) - (MINUTES_KEPT - 1) * 60)
        me = self.identity
        oldest = gauges.oldest_ready
        return Snapshot(
            daemon=me.daemon, host=me.host, pid=me.pid, backend=me.backend,
            version=me.version, python=platform.python_version(), started_at=me.started_at,
            taken_at=now, interval=self.live.config.metrics.interval,
            busy=gauges.busy, slots=gauges.slots, held=gauges.held, ready=gauges.ready,
            scheduled=gauges.scheduled,
            oldest_wait=None if oldest is None else max(0.0, now - oldest),
            held_back=dict(gauges.held_back),
            received=dict(self.accepted), rejected=dict(self.refused),
            attempts_started=dict(self.attempts_started),
            attempts_finished={name: dict(by) for name, by in self.attempts_finished.items()},
            jobs_finished={name: dict(by) for name, by in self.jobs_finished.items()},
            retries_scheduled=dict(self.retries_scheduled),
            last_success=dict(self.last_success),
            duration={name: _copy(histogram) for name, histogram in self.duration.items()},
            pickup=_copy(self.pickup),
            minutes=[_copy_minute(minute) for minute in self.minutes.values()],
            running=gauges.running,
        )  # fmt: skip


def _became_due(job: Job) -> float:
    return max(job.enqueued_at, job.run_at or 0.0, job.due_at or 0.0)


def _copy(histogram: Histogram) -> Histogram:
    return Histogram(histogram.bounds, list(histogram.counts), histogram.total)


def _copy_minute(minute: Minute) -> Minute:
    return Minute(minute.at, minute.started, minute.done, minute.failed, minute.rejected,
                  minute.runtime)  # fmt: skip
