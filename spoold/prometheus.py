"""Prometheus's text exposition format (version 0.0.4) of spoold's figures: one pure function.

``render`` turns the daemons' stats snapshots (``spoold/snapshot.py``) and the
job counts read from the backend into the text Prometheus scrapes.
``spoold metrics`` (``cli/metrics.py``) serves it at ``/metrics``; the daemon
writes it to node_exporter's textfile (``[metrics] textfile``). A leaf, so
that both can import it without importing each other; no client library.

What it promises a dashboard:

- Series are bounded by the config: a class becomes a label value only if it
  is on the allowlist (``classes``), whatever a snapshot names; rejections
  are counted by their fixed kind (``job.REJECTION_KINDS``), every kind
  exported, 0 included; outcomes and statuses are fixed sets too. The only
  other label is ``daemon``, a snapshot's ``host`` (one per host), never a
  pid: a restart keeps its series.
- Counters and histograms are summed over the daemons (several on Redis).
  They count since each daemon started, so a restart resets them, which
  Prometheus's ``rate()`` and ``increase()`` take as a counter reset.
- The output is deterministic: families in a fixed order, label values
  sorted, so two renders of the same figures are the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from spoold.exec.protocol import Outcome
from spoold.job import REJECTION_KINDS
from spoold.snapshot import DURATION_BUCKETS, PICKUP_BUCKETS, Histogram, Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

STATES = ("tmp", "incoming", "scheduled", "active", "done", "failed")
OUTCOMES = (Outcome.OK, Outcome.ERROR, Outcome.TIMEOUT, Outcome.CRASHED, Outcome.INTERRUPTED,
            Outcome.CANCELLED)  # fmt: skip
STATUSES = ("done", "failed", "cancelled")

# Said in the HELP of every figure that comes from the snapshots, as the exporter guide asks
# of values that are not read at scrape time.
SNAPSHOTS = "from the daemons' stats snapshots, taken every [metrics] interval"

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    """One metric: its HELP and TYPE lines, then its samples (name suffix, labels, value)."""

    name: str
    kind: str  # counter, gauge, histogram
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, labels: Labels = (), suffix: str = "") -> None:
        self.samples.append((suffix, labels, value))

    def text(self) -> str:
        text = HELP[self.name] + (COUNTER_NOTE if self.kind == "counter" else "")
        lines = [f"# HELP {self.name} {_escape_help(text)}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{self.name}{suffix}{_labels(labels)} {_number(value)}"
                  for suffix, labels, value in self.samples]  # fmt: skip
        return "\n".join(lines) + "\n"


# Each metric's HELP. What comes from the snapshots says so, as the exporter guide asks of
# figures that are not read at scrape time.
HELP = {
    "spoold_build_info": "spoold's version, Python's and the backend of the daemons (always 1).",
    "spoold_up": "1 if the daemon's stats snapshot is fresh (renewed within three [metrics]"
    " intervals), else 0; a daemon is its host.",
    "spoold_start_time_seconds": "When the daemon started, in Unix seconds.",
    "spoold_stats_timestamp_seconds": "When the daemon took its latest stats snapshot, in Unix"
    " seconds: a stuck or stopped daemon's stops moving.",
    "spoold_workers_busy": "Worker slots running an attempt; 0 for a daemon whose snapshot is"
    f" stale ({SNAPSHOTS}).",
    "spoold_workers_max": "Worker slots ([worker] concurrency); 0 for a daemon whose snapshot"
    f" is stale ({SNAPSHOTS}).",
    "spoold_jobs": "Jobs in each state, counted in the backend at scrape time (done and"
    " failed: the records kept).",
    "spoold_oldest_waiting_job_age_seconds": "How long the oldest job that is due and not"
    " started has waited, as the daemons last measured it; 0 when none waits.",
    "spoold_jobs_held_back": "Ready jobs passed over because their class is at its [limits]"
    f" (concurrency or rate), by class ({SNAPSHOTS}).",
    "spoold_jobs_received_total": "Jobs accepted at intake, by class.",
    "spoold_jobs_rejected_total": "Job files refused at intake, by a fixed reason (never by"
    " the class a refused file names).",
    "spoold_attempts_started_total": "Attempts started, by class.",
    "spoold_attempts_finished_total": "Attempts finished, by class and outcome.",
    "spoold_jobs_finished_total": "Jobs finished for good, by class and status (done,"
    " failed after their last attempt, or cancelled).",
    "spoold_retries_scheduled_total": "Retries scheduled after a failed attempt, by class.",
    "spoold_attempt_duration_seconds": "How long attempts ran, by class (the classes that ran"
    f" since their daemon started; {SNAPSHOTS}).",
    "spoold_pickup_latency_seconds": "From the moment a job became due (submitted, its"
    f" run_at, its retry's time) to its attempt's start ({SNAPSHOTS}).",
    "spoold_last_success_timestamp_seconds": "When a job of the class last finished done, in"
    f" Unix seconds (no series before one has since its daemon started; {SNAPSHOTS}).",
}
COUNTER_NOTE = f" Counted since each daemon started, summed over the daemons; {SNAPSHOTS}."


def render(
    snapshots: Sequence[Snapshot],
    counts: Mapping[str, int],
    oldest_wait: float | None,
    now: float,
    *,
    classes: Collection[str],
) -> str:
    """The text exposition of the daemons' ``snapshots`` and the backend's job ``counts``.

    ``counts``: jobs per state, read from the backend at scrape time (a state
    left out has no series: unknown is not 0). ``oldest_wait``: how long the
    oldest due job has waited, None when none waits. ``now`` tells a stale
    snapshot (``spoold_up`` 0). ``classes``: the allowlist's classes, the only
    class label values there can be.
    """
    allowed = sorted(set(classes))
    families = [
        *_daemon_families(snapshots, now),
        _gauge("spoold_jobs", [(_one("state", state), counts[state])
                               for state in STATES if state in counts]),
        _gauge("spoold_oldest_waiting_job_age_seconds", [((), oldest_wait or 0.0)]),
        _held_back(snapshots, allowed, now),
        *_counter_families(snapshots, allowed),
        _duration(snapshots, allowed),
        _pickup(snapshots),
        _last_success(snapshots, allowed),
    ]  # fmt: skip
    return "".join(family.text() for family in families)


def _held_back(snapshots: Sequence[Snapshot], allowed: list[str], now: float) -> Family:
    """Ready jobs passed over because their class is at its [limits]: as the live daemons
    last counted them (on Redis each counts the whole spool: the largest count, not a sum)."""
    live = [snapshot for snapshot in snapshots if not snapshot.stale(now)]
    return _gauge("spoold_jobs_held_back", [
        (_one("class", c), max((s.held_back.get(c, 0) for s in live), default=0)) for c in allowed
    ])  # fmt: skip


def waiting_age(
    snapshots: Sequence[Snapshot], now: float, backend_age: float | None
) -> float | None:
    """How long the oldest due job has waited, for ``render``'s ``oldest_wait``.

    What the live daemons last measured (they know which jobs are due; a job
    waiting for its ``run_at`` is not waiting). With no live daemon nothing
    picks jobs up, so every waiting job waits: ``backend_age``, the oldest
    waiting job's age as the backend tells it (``SpoolStatus.oldest_waiting_age``).
    """
    live = [snapshot for snapshot in snapshots if not snapshot.stale(now)]
    if not live:
        return backend_age
    ages = [snapshot.oldest_wait for snapshot in live if snapshot.oldest_wait is not None]
    return max(ages, default=None)


# -- per daemon --


def _daemon_families(snapshots: Sequence[Snapshot], now: float) -> list[Family]:
    hosts = _by_host(snapshots)
    live = {host: [s for s in group if not s.stale(now)] for host, group in hosts.items()}
    builds = sorted({(s.version, s.python, s.backend) for s in snapshots})

    def each(
        value: Callable[[list[Snapshot]], float], groups: dict[str, list[Snapshot]]
    ) -> list[tuple[Labels, float]]:
        return [(_one("daemon", host), value(group)) for host, group in groups.items()]

    return [
        _gauge("spoold_build_info", [((("version", version), ("python", python),
                                       ("backend", backend)), 1)
                                     for version, python, backend in builds]),
        _gauge("spoold_up", [(_one("daemon", host), 1 if live[host] else 0) for host in hosts]),
        _gauge("spoold_start_time_seconds", each(lambda g: max(s.started_at for s in g), hosts)),
        _gauge("spoold_stats_timestamp_seconds", each(lambda g: max(s.taken_at for s in g), hosts)),
        _gauge("spoold_workers_busy", each(lambda g: sum(s.busy for s in g), live)),
        _gauge("spoold_workers_max", each(lambda g: sum(s.slots for s in g), live)),
    ]  # fmt: skip


def _by_host(snapshots: Sequence[Snapshot]) -> dict[str, list[Snapshot]]:
    """The snapshots by host, hosts sorted: a host may briefly have two (a restart on
    Redis, where the last run's snapshot has not expired yet), or two daemons share a
    ``host_id`` by mistake; either way the host is one series."""
    hosts: dict[str, list[Snapshot]] = {}
    for snapshot in snapshots:
        hosts.setdefault(snapshot.host, []).append(snapshot)
    return dict(sorted(hosts.items()))


# -- counters --


def _counter_families(snapshots: Sequence[Snapshot], allowed: list[str]) -> list[Family]:
    def by_class(name: str, table: Callable[[Snapshot], Mapping[str, int]]) -> Family:
        totals = _sum(table(s) for s in snapshots)
        return _counter(name, [(_one("class", c), totals.get(c, 0)) for c in allowed])

    rejected = _sum(s.rejected for s in snapshots)
    return [
        by_class("spoold_jobs_received_total", lambda s: s.received),
        _counter("spoold_jobs_rejected_total",
                 [(_one("reason", kind), rejected.get(kind, 0)) for kind in REJECTION_KINDS]),
        by_class("spoold_attempts_started_total", lambda s: s.attempts_started),
        _two_level("spoold_attempts_finished_total", [s.attempts_finished for s in snapshots],
                   allowed, "outcome", OUTCOMES),
        _two_level("spoold_jobs_finished_total", [s.jobs_finished for s in snapshots],
                   allowed, "status", STATUSES),
        by_class("spoold_retries_scheduled_total", lambda s: s.retries_scheduled),
    ]  # fmt: skip


def _two_level(
    name: str,
    tables: Iterable[Mapping[str, Mapping[str, int]]],
    allowed: list[str],
    label: str,
    values: Sequence[str],
) -> Family:
    totals: dict[tuple[str, str], int] = {}
    for table in tables:
        for class_path, by in table.items():
            for value, number in by.items():
                totals[class_path, value] = totals.get((class_path, value), 0) + number
    return _counter(name, [((("class", class_path), (label, value)),
                            totals.get((class_path, value), 0))
                           for class_path in allowed for value in values])  # fmt: skip


def _sum(tables: Iterable[Mapping[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for table in tables:
        for key, number in table.items():
            totals[key] = totals.get(key, 0) + number
    return totals


# -- histograms --


def _duration(snapshots: Sequence[Snapshot], allowed: list[str]) -> Family:
    family = Family("spoold_attempt_duration_seconds", "histogram")
    for class_path in allowed:
        found = [(s.taken_at, s.duration[class_path])
                 for s in snapshots if class_path in s.duration]  # fmt: skip
        if found:
            _add_histogram(family, _merge(found, DURATION_BUCKETS), _one("class", class_path))
    return family


def _pickup(snapshots: Sequence[Snapshot]) -> Family:
    family = Family("spoold_pickup_latency_seconds", "histogram")
    _add_histogram(family, _merge([(s.taken_at, s.pickup) for s in snapshots], PICKUP_BUCKETS))
    return family


def _merge(found: Sequence[tuple[float, Histogram]], default: tuple[float, ...]) -> Histogram:
    """The sum of several daemons' histograms, in the buckets of the newest snapshot's.

    Daemons of different versions may have different buckets: an observation
    counted at or below bound b goes to the first bucket whose bound is at least
    b, where it is still true (it may then be missing from a lower bucket).
    """
    bounds = max(found, key=lambda pair: pair[0])[1].bounds if found else default
    merged = Histogram(bounds)
    for _taken_at, histogram in found:
        for upper, number in zip((*histogram.bounds, math.inf), histogram.counts, strict=True):
            index = next((i for i, bound in enumerate(bounds) if bound >= upper), len(bounds))
            merged.counts[index] += number
        merged.total += histogram.total
    return merged


def _add_histogram(family: Family, histogram: Histogram, labels: Labels = ()) -> None:
    for bound, seen in zip((*histogram.bounds, math.inf), histogram.cumulative(), strict=True):
        family.add(seen, (*labels, ("le", _number(bound))), "_bucket")
    family.add(histogram.total, labels, "_sum")
    family.add(histogram.count, labels, "_count")


# -- the rest --


def _last_success(snapshots: Sequence[Snapshot], allowed: list[str]) -> Family:
    latest: dict[str, float] = {}
    for snapshot in snapshots:
        for class_path, when in snapshot.last_success.items():
            latest[class_path] = max(when, latest.get(class_path, when))
    return _gauge("spoold_last_success_timestamp_seconds",
                  [(_one("class", c), latest[c]) for c in allowed if c in latest])  # fmt: skip


def _one(name: str, value: str) -> Labels:
    return ((name, value),)


def _gauge(name: str, samples: Iterable[tuple[Labels, float]]) -> Family:
    return _family(name, "gauge", samples)


def _counter(name: str, samples: Iterable[tuple[Labels, float]]) -> Family:
    return _family(name, "counter", samples)


def _family(name: str, kind: str, samples: Iterable[tuple[Labels, float]]) -> Family:
    family = Family(name, kind)
    for labels, value in samples:
        family.add(value, labels)
    return family


# -- the format --

_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_HELP_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n"})


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{value.translate(_LABEL_ESCAPES)}"'
                          for name, value in labels) + "}"  # fmt: skip


def _escape_help(text: str) -> str:
    return text.translate(_HELP_ESCAPES)


def _number(value: float) -> str:
    """A sample value or an ``le`` bound as Prometheus writes them: 3, 0.25, 1.0, +Inf."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
