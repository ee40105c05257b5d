"""What ``spoold top`` and ``spoold status --watch`` show: one ``TopView`` read from the
backend's ``Catalog`` (the daemons' stats snapshots, the counts per state, the running
attempts, the newest failures), and the figures both show (jobs/min, busy/max).

A part the backend cannot read (Redis down, permission denied) is left empty and
its error kept as one line: the view never dies of it and tries again at the next
refresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import TypeVar

from spoold.backends.files import admin
from spoold.config import Config
from spoold.core.backend import Catalog, CatalogError, JobSummary, RunningJob, SpoolStatus
from spoold.errors import describe_os_error
from spoold.snapshot import Snapshot

T = TypeVar("T")

FAILURES_SHOWN = 50  # newest failures the view keeps (a screen shows fewer)
# Past this many records in failed/, read only the newest ids instead of every record:
# reading 100,000 records takes seconds, too long for a view that refreshes every 2.
FAILED_READ_ALL = 1000
FAILED_NEWEST_IDS = 200
RATE_WINDOW = 5  # minutes averaged for jobs/min, at most


# -- the data --


@dataclass(frozen=True)
class RunningRow:
    """One attempt running now."""

    job_id: str
    target: str  # class.method
    attempt: int
    started_at: float  # on the backend's clock
    timeout: float | None  # seconds; 0: no limit; None: unknown (read without a snapshot)
    host: str = ""

    def elapsed(self, now: float) -> float:
        """Seconds it has run at ``now``; never below 0 (a daemon's clock may run ahead)."""
        return max(now - self.started_at, 0.0)


@dataclass(frozen=True)
class FailureRow:
    """One job in failed/ (failed for good, or rejected)."""

    job_id: str
    target: str
    attempts: int
    age: float  # seconds since it failed
    error: str  # the last error, or a rejection's reason
    rejected: bool = False


Row = RunningRow | FailureRow


@dataclass(frozen=True)
class TopView:
    """What one refresh read; ``render`` draws it."""

    now: float  # when it was read
    place: str  # the spool's folder, or the Redis server and key prefix
    interval: float = 2.0  # seconds between refreshes (said in the footer)
    snapshots: tuple[Snapshot, ...] = ()
    status: SpoolStatus | None = None  # None: could not be read
    running: tuple[RunningRow, ...] = ()
    running_from_snapshots: bool = True  # False: read from the jobs (no timeout known)
    failures: tuple[FailureRow, ...] = ()  # newest first
    failures_note: str = ""  # how the failures were chosen, when not from every record
    errors: tuple[str, ...] = ()  # what could not be read, one line each

    def fresh(self) -> list[Snapshot]:
        """The snapshots of daemons that run and publish: the ones whose figures count."""
        return [s for s in self.snapshots if not s.stale(self.now) and not self.gone(s)]

    def gone(self, snapshot: Snapshot) -> bool:
        """The backend says this snapshot's daemon no longer runs (a daemon publishes a last
        snapshot as it stops, which stays fresh for a few intervals)."""
        status = self.status
        if status is None:
            return False
        if snapshot.backend == "redis":
            return (snapshot.host, snapshot.pid) not in {(d.host, d.pid) for d in status.daemons}
        return status.daemon_pid not in (snapshot.pid, -1)  # -1: running, pid unreadable


def gather(
    catalog: Catalog, place: str, now: float, *, interval: float = 2.0, shown: int = FAILURES_SHOWN
) -> TopView:
    """Read everything the view shows; what fails is left out and its error kept."""
    errors: list[str] = []
    snapshots = read_part(errors, catalog.stats) or []
    status = read_part(errors, lambda: catalog.status(now))
    view = TopView(now, place, interval, tuple(snapshots), status)
    running, from_snapshots = _running(catalog, view, errors)
    failures, note = _failures(catalog, status, now, shown, errors)
    return replace(
        view,
        running=tuple(running),
        running_from_snapshots=from_snapshots,
        failures=tuple(failures),
        failures_note=note,
        errors=tuple(dict.fromkeys(errors)),  # Redis down: one line, not one per call
    )


def read_part(errors: list[str], read: Callable[[], T]) -> T | None:
    try:
        return read()
    except CatalogError as exc:
        errors.append(str(exc))
    except OSError as exc:
        errors.append(describe_os_error(exc))
    return None


def _running(catalog: Catalog, view: TopView, errors: list[str]) -> tuple[list[RunningRow], bool]:
    """The running jobs (``running_rows``), read in the same refresh as the counts, so the
    list and the header agree; True if a fresh snapshot could say their timeouts. Only if
    the jobs cannot be read are the fresh snapshots' attempts shown as they are."""
    fresh = view.fresh()
    jobs = read_part(errors, lambda: catalog.running(view.now))
    if jobs is not None:
        return running_rows(jobs, fresh, view.now), bool(fresh)
    rows = [RunningRow(a.job_id, a.target, a.attempt, a.started_at, a.timeout, snapshot.host)
            for snapshot in fresh for a in snapshot.running]  # fmt: skip
    return sorted(rows, key=lambda row: row.started_at), bool(fresh)


def running_rows(
    jobs: Iterable[RunningJob], snapshots: Iterable[Snapshot], now: float
) -> list[RunningRow]:
    """The jobs the backend holds as running, longest first. Each takes its attempt's start,
    timeout and host from a snapshot that lists that very attempt; one claimed since the
    snapshot (or sent ahead) has its claim's time and no timeout.

    The list is the backend's, not a snapshot's: a snapshot is up to an interval old, and
    would list an attempt that has ended since, or miss one that began.
    """
    listed = {(a.job_id, a.attempt): (a, s.host) for s in snapshots for a in s.running}
    rows = []
    for job in jobs:
        attempt, host = listed.get((job.id, job.attempt), (None, ""))
        if attempt is None:
            rows.append(RunningRow(job.id, job.target, job.attempt, now - job.running_for, None))
        else:
            rows.append(RunningRow(job.id, job.target, job.attempt, attempt.started_at,
                                   attempt.timeout, host))  # fmt: skip
    return sorted(rows, key=lambda row: row.started_at)


def _failures(
    catalog: Catalog, status: SpoolStatus | None, now: float, shown: int, errors: list[str]
) -> tuple[list[FailureRow], str]:
    """The newest failures; on a large failed/ only the newest ids are read (said in a note)."""
    count = status.counts.get("failed", 0) if status is not None else 0
    if count <= FAILED_READ_ALL:
        summaries = read_part(errors, lambda: catalog.jobs(["failed"], now)) or []
        note = ""
    else:
        ids = (read_part(errors, catalog.failed_ids) or [])[-FAILED_NEWEST_IDS:]
        summaries = [s for s in (_summary(catalog, i, now, errors) for i in ids) if s is not None]
        note = f"of the {len(ids)} newest ids"
    rows = [
        FailureRow(s.id, s.target, s.attempts, s.age, s.error or "", s.status == "rejected")
        for s in summaries
    ]
    rows.sort(key=lambda row: row.job_id, reverse=True)  # newest first among equal ages
    rows.sort(key=lambda row: row.age)
    return rows[:shown], note


def _summary(catalog: Catalog, job_id: str, now: float, errors: list[str]) -> JobSummary | None:
    stored = read_part(errors, lambda: catalog.find(job_id))
    return admin.summarize(stored, now) if stored is not None else None


def place_of(config: Config) -> str:
    """Where the jobs are, for the title: the folder, or the Redis server and key prefix."""
    if config.spool.backend != "redis":
        return str(config.spool.dir)
    from spoold.backends.redis.connection import prefix, safe_url

    return f"{safe_url(config.spool.url)} {prefix(config.spool)}"


# -- figures the header and `status --watch` share --


@dataclass(frozen=True)
class Rate:
    """Jobs finished (done or failed) per minute, and over how many full minutes."""

    per_minute: float
    minutes: int  # 0: no daemon has been up for a full minute yet
    up_for: float  # the youngest contributing daemon's uptime


def finished_rate(snapshots: Sequence[Snapshot], now: float) -> Rate | None:
    """Jobs finished per minute over the last full minutes the daemons were up for, up to 5.

    The per-minute ring leaves quiet minutes out, so a minute missing from it
    counts as none finished, but only once the daemon was up for all of it.
    None without snapshots.
    """
    if not snapshots:
        return None
    this_minute = int(now // 60 * 60)
    total, windows, youngest = 0.0, [], min(now - s.started_at for s in snapshots)
    for snapshot in snapshots:
        covered = min(RATE_WINDOW, int((this_minute - snapshot.started_at) // 60))
        if covered < 1:
            continue
        first = this_minute - covered * 60
        finished = sum(
            minute.done + minute.failed
            for minute in snapshot.minutes
            if first <= minute.at < this_minute
        )
        total += finished / covered
        windows.append(covered)
    return Rate(total, min(windows, default=0), youngest)


def rate_text(rate: Rate | None) -> str:
    """``12 jobs/min (last full min)``, ``4.2 jobs/min (avg of last 5 min)``."""
    if rate is None:
        return "jobs/min ? (no stats)"
    if rate.minutes == 0:
        return f"jobs/min - (up {short_duration(rate.up_for)})"
    figure = f"{rate.per_minute:.1f}".removesuffix(".0")
    if rate.minutes == 1:
        return f"{figure} jobs/min (last full min)"
    return f"{figure} jobs/min (avg of last {rate.minutes} min)"


def stats_summary(snapshots: Sequence[Snapshot], now: float) -> str | None:
    """``spoold status --watch``'s line: busy/max, the last minute's jobs, the last hour's
    failures, from the fresh snapshots; None without any snapshot."""
    if not snapshots:
        return None
    fresh = [s for s in snapshots if not s.stale(now)]
    if not fresh:
        last = ", ".join(
            f"{s.host} pid {s.pid}, {short_duration(now - s.taken_at)} ago" for s in snapshots
        )
        return f"stats      none fresh (the last: {last})"
    busy, slots = sum(s.busy for s in fresh), sum(s.slots for s in fresh)
    rate = finished_rate(fresh, now)
    if rate is None or rate.minutes == 0:
        last = "no full minute yet"
    else:
        this_minute = int(now // 60 * 60)
        finished = sum(
            m.done + m.failed for s in fresh for m in s.minutes if m.at == this_minute - 60
        )
        last = f"{finished} finished in the last full minute"
    failed = sum(s.failed_since(now - 3600) for s in fresh)
    daemons = "1 daemon" if len(fresh) == 1 else f"{len(fresh)} daemons"
    stale = len(snapshots) - len(fresh)
    daemons += f", {stale} stale" if stale else ""
    return f"stats      busy {busy}/{slots}, {last}, {failed} failed in the last hour ({daemons})"


def short_duration(value: float) -> str:
    """``12s``, ``4m05s``, ``2h03m``, ``3d04h``: two units, at most 6 characters."""
    value = max(0, int(value))
    if value < 100:
        return f"{value}s"
    if value < 3600:
        return f"{value // 60}m{value % 60:02d}s"
    if value < 100 * 3600:
        return f"{value // 3600}h{value % 3600 // 60:02d}m"
    return f"{value // 86400}d{value % 86400 // 3600:02d}h"


class Stopped(Exception):
    """SIGTERM (or SIGINT): leave the terminal as it was found, exit 0."""


def stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stopped
