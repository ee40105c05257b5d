"""What each page shows, read from the backend's ``Catalog``: plain data for the templates.

The overview reuses what ``spoold top`` reads (``cli.view.gather``: the
daemons' stats snapshots, the counts per state, the running attempts, the
newest failures) and adds the charts of the snapshots' per-minute rings,
the failures of the last day and week (from the records themselves, so
they survive a restart), and the slowest and busiest class.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spoold.cli.view import Rate, TopView, finished_rate, gather, read_part
from spoold.core.backend import Catalog, StoredJob
from spoold.prometheus import waiting_age
from spoold.snapshot import Snapshot
from spoold.web import charts
from spoold.web.redact import HIDDEN, for_viewer

DAY = 86400.0
STATE_ORDER = ("incoming", "scheduled", "active", "done", "failed")
TEXT_SHOWN = 200_000  # characters of a record, a traceback or raw bytes shown at most


@dataclass(frozen=True)
class DaemonRow:
    name: str  # host and pid
    state: str  # up, stale, stopped
    busy: int | None
    slots: int | None
    started_at: float | None
    heard_ago: float | None
    version: str = ""


@dataclass(frozen=True)
class ClassFigure:
    name: str
    figure: str  # "1.2 s mean", "340 attempts"


@dataclass(frozen=True)
class RateFigure:
    figure: str  # "12 jobs/min", "—"
    note: str  # over what: "last full minute", "no full minute yet"


@dataclass
class Overview:
    view: TopView
    daemons: list[DaemonRow]
    busy: int
    slots: int
    counts: list[tuple[str, int | None]]
    rate: RateFigure
    oldest_wait: float | None
    failed_day: int | None
    failed_week: int | None
    hour_chart: charts.Chart
    day_chart: charts.Chart
    slowest: ClassFigure | None
    busiest: ClassFigure | None
    errors: list[str] = field(default_factory=list)


def overview(catalog: Catalog, place: str, now: float, interval: float) -> Overview:
    view = gather(catalog, place, now, interval=interval, shown=10)
    errors = list(view.errors)
    fresh = view.fresh()
    status = view.status
    counts = [(state, status.counts.get(state) if status else None) for state in STATE_ORDER]
    snapshots = list(view.snapshots)
    oldest = waiting_age(snapshots, now, status.oldest_waiting_age if status else None)
    failed_day = read_part(errors, lambda: catalog.finished_since("failed", now - DAY))
    failed_week = read_part(errors, lambda: catalog.finished_since("failed", now - 7 * DAY))
    hour = charts.per_minute(snapshots, now, minutes=60, bucket=1)
    day = charts.per_minute(snapshots, now, minutes=24 * 60, bucket=10)
    return Overview(
        view=view,
        daemons=_daemons(view),
        busy=sum(s.busy for s in fresh),
        slots=sum(s.slots for s in fresh),
        counts=counts,
        rate=rate_figure(finished_rate(fresh, now)),
        oldest_wait=oldest,
        failed_day=failed_day,
        failed_week=failed_week,
        hour_chart=charts.bar_chart(hour, label="jobs finished per minute, last hour"),
        day_chart=charts.bar_chart(day, label="jobs finished per minute, last 24 hours"),
        slowest=_slowest(snapshots),
        busiest=_busiest(snapshots),
        errors=list(dict.fromkeys(errors)),
    )


def rate_figure(rate: Rate | None) -> RateFigure:
    """The throughput card: ``spoold top``'s rate, its figure and its window apart."""
    if rate is None:
        return RateFigure("?", "no daemon's stats to count from")
    if rate.minutes == 0:
        return RateFigure("—", "counted once a daemon has been up a full minute")
    per_minute = rate.per_minute
    figure = f"{per_minute:.0f}" if per_minute >= 10 else f"{per_minute:.1f}".removesuffix(".0")
    window = "the last full minute" if rate.minutes == 1 else f"the last {rate.minutes} minutes"
    return RateFigure(f"{figure} jobs/min", f"finished, average over {window}")


def _daemons(view: TopView) -> list[DaemonRow]:
    rows = []
    seen = set()
    for snapshot in view.snapshots:
        seen.add((snapshot.host, snapshot.pid))
        state = "stopped" if view.gone(snapshot) else "stale" if snapshot.stale(view.now) else "up"
        rows.append(
            DaemonRow(
                f"{snapshot.host} pid {snapshot.pid}",
                state,
                snapshot.busy,
                snapshot.slots,
                snapshot.started_at,
                view.now - snapshot.taken_at,
                snapshot.version,
            )
        )
    status = view.status
    if status is not None:
        for daemon in status.daemons:  # on Redis: heard of, but no snapshot (yet)
            if (daemon.host, daemon.pid) not in seen:
                name = f"{daemon.host} pid {daemon.pid}"
                rows.append(DaemonRow(name, "up", daemon.busy, daemon.max, None, daemon.heard_ago))
        pid = status.daemon_pid
        if pid is not None and not status.daemons and not any(r.state == "up" for r in rows):
            rows.append(DaemonRow(f"pid {pid}" if pid > 0 else "running", "up", None, None,
                                  None, None))  # fmt: skip
    return rows


def _slowest(snapshots: Sequence[Snapshot]) -> ClassFigure | None:
    """The class with the longest mean attempt, since its daemons started."""
    totals: dict[str, tuple[float, int]] = {}
    for snapshot in snapshots:
        for name, histogram in snapshot.duration.items():
            spent, count = totals.get(name, (0.0, 0))
            totals[name] = (spent + histogram.total, count + histogram.count)
    means = {name: spent / count for name, (spent, count) in totals.items() if count}
    if not means:
        return None
    name = max(means, key=lambda key: means[key])
    return ClassFigure(name, f"{duration_text(means[name])} mean per attempt")


def _busiest(snapshots: Sequence[Snapshot]) -> ClassFigure | None:
    """The class with the most attempts finished, since its daemons started."""
    totals: dict[str, int] = {}
    for snapshot in snapshots:
        for name, outcomes in snapshot.attempts_finished.items():
            totals[name] = totals.get(name, 0) + sum(outcomes.values())
    if not totals:
        return None
    name = max(totals, key=lambda key: totals[key])
    noun = "attempt" if totals[name] == 1 else "attempts"
    return ClassFigure(name, f"{totals[name]:,} {noun}")


# -- one job --


@dataclass(frozen=True)
class Attempt:
    number: int
    outcome: str
    started_at: float | None
    finished_at: float | None
    error: str | None
    traceback: str | None


@dataclass
class JobPage:
    job: StoredJob
    shown: dict[str, Any] | None  # the record as this viewer may see it
    pretty: str  # it as indented JSON, or the raw text (hidden without auth)
    attempts: list[Attempt]
    target: str
    status: str | None
    retryable: bool


def job_page(job: StoredJob, *, signed_in: bool, redact: Sequence[str]) -> JobPage:
    shown = for_viewer(job.document, signed_in=signed_in, keys=redact) if job.document else None
    if shown is not None:
        pretty = json.dumps(shown, indent=2, ensure_ascii=False, default=str)
    else:
        pretty = job.text if signed_in else HIDDEN
    doc = shown or {}
    return JobPage(
        job=job,
        shown=shown,
        pretty=_capped(pretty),
        attempts=_attempts(doc),
        target=f"{doc.get('class', '?')}.{doc.get('method', '?')}",
        status=doc.get("status") if isinstance(doc.get("status"), str) else None,
        retryable=job.state == "failed",
    )


def _attempts(doc: dict[str, Any]) -> list[Attempt]:
    history = doc.get("history")
    if not isinstance(history, list):
        return []
    found = []
    for index, entry in enumerate(history, 1):
        if not isinstance(entry, dict):
            continue
        found.append(
            Attempt(
                number=_attempt_number(entry.get("attempt"), index),
                outcome=str(entry.get("outcome", "?")),
                started_at=_number(entry.get("started_at")),
                finished_at=_number(entry.get("finished_at")),
                error=_capped(entry["error"]) if isinstance(entry.get("error"), str) else None,
                traceback=_capped(entry["traceback"])
                if isinstance(entry.get("traceback"), str)
                else None,
            )
        )
    return found


def _attempt_number(value: Any, index: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else index


def _capped(text: str) -> str:
    if len(text) <= TEXT_SHOWN:
        return text
    return text[:TEXT_SHOWN] + f"\n… ({len(text) - TEXT_SHOWN:,} more characters not shown)"


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def duration_text(seconds: float) -> str:
    """``4 ms``, ``1.2 s``, ``3 min 05 s``, ``2 h 03 min``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600):02d} h"
