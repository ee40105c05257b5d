"""``spoold top`` (a live terminal view) and ``spoold status --watch`` (the same, as plain text).

Three parts, each testable alone:

- the data step, ``gather``: one ``TopView`` from the backend's ``Catalog`` (the
  daemons' stats snapshots, the counts per state, the running attempts, the
  newest failures). A part the backend cannot read (Redis down, permission
  denied) is left empty and its error kept as one line: the view never dies
  of it and tries again at the next refresh;
- ``render``: a pure function from a ``TopView`` and a screen size to the
  lines to draw, which the tests call with hand-built views;
- the curses program, ``run_top``: a loop that gathers every ``interval``
  seconds, draws, and reads keys (filter, select, details, retry).

Only the standard library's ``curses``: an ops tool should start in
milliseconds and install nothing (docs: ../shared/notes/observability.md §5).
Everything drawn is plain ASCII, and text that comes from jobs (errors,
tracebacks, class names of rejected files) has its control characters
replaced, so a job cannot send escape sequences to the operator's terminal.
"""

from __future__ import annotations

import contextlib
import curses
import io
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import FrameType
from typing import TextIO, TypeVar

from spoold.backends import open_catalog
from spoold.backends.files import admin
from spoold.backends.files.spool import Spool
from spoold.cli import output as cli_output
from spoold.config import Config
from spoold.core.backend import Catalog, CatalogError, JobSummary, SpoolStatus
from spoold.durations import seconds
from spoold.errors import describe_os_error
from spoold.snapshot import Snapshot

T = TypeVar("T")

FAILURES_SHOWN = 50  # newest failures the view keeps (a screen shows fewer)
# Past this many records in failed/, read only the newest ids instead of every record:
# reading 100,000 records takes seconds, too long for a view that refreshes every 2.
FAILED_READ_ALL = 1000
FAILED_NEWEST_IDS = 200
RATE_WINDOW = 5  # minutes averaged for jobs/min, at most
SHOWN_STATES = ("incoming", "scheduled", "active", "done", "failed")
KEYS = "q quit  / filter  j/k move  Enter details  R retry"
KEYS_SHORT = "q quit  / filter  j/k  Enter  R retry"  # a narrow screen's footer


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
    snapshots = _part(errors, catalog.stats) or []
    status = _part(errors, lambda: catalog.status(now))
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


def _part(errors: list[str], read: Callable[[], T]) -> T | None:
    try:
        return read()
    except CatalogError as exc:
        errors.append(str(exc))
    except OSError as exc:
        errors.append(describe_os_error(exc))
    return None


def _running(catalog: Catalog, view: TopView, errors: list[str]) -> tuple[list[RunningRow], bool]:
    """From the fresh snapshots (which know each attempt's timeout), else from the jobs."""
    fresh = view.fresh()
    if fresh:
        rows = [
            RunningRow(a.job_id, a.target, a.attempt, a.started_at, a.timeout, snapshot.host)
            for snapshot in fresh
            for a in snapshot.running
        ]
        return sorted(rows, key=lambda row: row.started_at), True
    jobs = _part(errors, lambda: catalog.running(view.now)) or []
    rows = [
        RunningRow(job.id, job.target, job.attempt, view.now - job.running_for, None)
        for job in jobs
    ]
    return rows, False


def _failures(
    catalog: Catalog, status: SpoolStatus | None, now: float, shown: int, errors: list[str]
) -> tuple[list[FailureRow], str]:
    """The newest failures; on a large failed/ only the newest ids are read (said in a note)."""
    count = status.counts.get("failed", 0) if status is not None else 0
    if count <= FAILED_READ_ALL:
        summaries = _part(errors, lambda: catalog.jobs(["failed"], now)) or []
        note = ""
    else:
        ids = (_part(errors, catalog.failed_ids) or [])[-FAILED_NEWEST_IDS:]
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
    stored = _part(errors, lambda: catalog.find(job_id))
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


# -- drawing --


def clean(text: str) -> str:
    """One line of plain text: control characters (escapes, newlines, C1) become spaces."""
    return "".join(" " if _is_control(char) else char for char in text).strip()


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 32 or 127 <= code < 160


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, ending in ``...`` if it was longer."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: width - 3] + "..." if width > 6 else text[:width]


def cut_left(text: str, width: int) -> str:
    """Keep the end (an id's random part, a method's name), starting with ``..``."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return ".." + text[len(text) - width + 2 :] if width > 4 else text[-width:]


def visible_rows(view: TopView, filter_text: str = "") -> list[Row]:
    """The rows both tables show, running first, narrowed by ``filter_text`` (a substring of
    the id or the class.method, any case); the selection is an index into this list."""
    needle = filter_text.strip().lower()
    rows: list[Row] = [*view.running, *view.failures]
    if not needle:
        return rows
    return [row for row in rows if needle in row.job_id.lower() or needle in row.target.lower()]


def render(
    view: TopView,
    width: int,
    height: int,
    *,
    filter_text: str = "",
    selected: int = 0,
    message: str = "",
) -> list[str]:
    """The lines to draw on a ``width`` x ``height`` screen: at most ``height`` lines of at
    most ``width`` characters, the footer (keys, or ``message``) on the last one."""
    if width <= 0 or height <= 0:
        return []
    try:
        return _render(view, width, height, filter_text, selected, message)
    except Exception as exc:  # a drawing bug must not take the operator's view away
        return [cut(f"spoold top: cannot draw this view: {exc!r}", width)]


def _render(
    view: TopView, width: int, height: int, filter_text: str, selected: int, message: str
) -> list[str]:
    footer = _footer(view, filter_text, message, width)
    if height == 1:
        return [footer]
    header = _header(view, width)
    if height - 1 - len(header) < 4:  # rows matter more than a roomy header
        header = _short_header(view, width)[: height - 1]
    rows = visible_rows(view, filter_text)
    chosen = min(max(selected, 0), len(rows) - 1) if rows else -1
    body = _body(view, rows, chosen, width, height - 1 - len(header), bool(filter_text.strip()))
    lines = [*header, *body]
    lines += [""] * (height - 1 - len(lines))
    return [cut(line, width).rstrip() for line in lines] + [footer]


def _header(view: TopView, width: int) -> list[str]:
    clock = datetime.fromtimestamp(view.now).strftime("%H:%M:%S")
    title = f"spoold top  {view.place}"
    room = width - len(clock) - 2
    lines = [f"{cut(title, room):<{room}}  {clock}" if room >= 12 else title]
    lines.append(_daemons_line(view))
    lines += _packed(_figures(view), width)
    lines += _packed(_counts(view), width)
    retrying = f"(retrying every {seconds(view.interval)})"
    lines += [f"! {clean(error)} {retrying}" for error in view.errors[:2]]
    return [cut(line, width) for line in lines]


def _packed(parts: list[str], width: int) -> list[str]:
    """``parts`` on as few lines of ``width`` as they fit on, three spaces apart."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += "   " + part
        else:
            lines.append(part)
    return lines


def _short_header(view: TopView, width: int) -> list[str]:
    """A screen too short for the full header: the figures in a few words, then an error."""
    counts = view.status.counts if view.status is not None else {}
    words = [_daemon_word(view), f"busy {_busy(view)}", f"run {counts.get('active', '?')}"]
    words += [f"wait {counts.get('incoming', '?')}", f"fail {counts.get('failed', '?')}"]
    line = "  ".join(words)
    if len(line) > width:
        line = " ".join(words)
    lines = [line] + [f"! {clean(error)}" for error in view.errors[:1]]
    return [cut(text, width) for text in lines]


def _daemon_word(view: TopView) -> str:
    """The daemons' state in a word, for a screen with no room for the daemons' line."""
    if view.snapshots:
        if view.fresh():
            return "daemon up"
        return "daemon DOWN" if all(view.gone(s) for s in view.snapshots) else "daemon STALE"
    if view.status is None:
        return "daemon ?"
    up = view.status.daemons or view.status.daemon_pid is not None
    return "daemon up" if up else "daemon DOWN"


def _daemons_line(view: TopView) -> str:
    if view.snapshots:
        parts = []
        for snapshot in view.snapshots:
            age = short_duration(view.now - snapshot.taken_at)
            up = short_duration(view.now - snapshot.started_at)
            if view.gone(snapshot):
                state = f"NOT RUNNING; its last stats are {age} old"
            elif snapshot.stale(view.now):
                state = f"STALE: no stats for {age}: stuck?"
            else:
                state = f"up {up}, stats fresh"
            parts.append(f"{snapshot.host} pid {snapshot.pid} ({state})")
        noun = "daemon " if len(parts) == 1 else f"daemons {len(parts)}:"
        return f"{noun} {'; '.join(parts)}"
    status = view.status
    if status is None:
        return "daemon  ?"
    if status.daemons:  # Redis: what the daemons said of themselves, without stats
        parts = [f"{d.host} pid {d.pid} (heard of {short_duration(d.heard_ago)} ago)"
                 for d in status.daemons]  # fmt: skip
        return f"daemons {len(parts)}: {'; '.join(parts)}  (no stats published yet)"
    if status.daemon_pid is None:
        return "daemon  NOT RUNNING"
    pid = f" pid {status.daemon_pid}" if status.daemon_pid > 0 else ""
    return f"daemon  running{pid} (no stats published yet)"


def _busy(view: TopView) -> str:
    fresh = view.fresh()
    if fresh:
        return f"{sum(s.busy for s in fresh)}/{sum(s.slots for s in fresh)}"
    if view.status is not None and view.status.daemons:
        daemons = view.status.daemons
        return f"{sum(d.busy for d in daemons)}/{sum(d.max for d in daemons)}"
    return "?"


def _figures(view: TopView) -> list[str]:
    fresh = view.fresh()
    parts = [f"busy {_busy(view)}", rate_text(finished_rate(fresh, view.now) if fresh else None)]
    if fresh:
        waits = [s.oldest_wait for s in fresh if s.oldest_wait is not None]
        parts.append(f"oldest wait {short_duration(max(waits))}" if waits else "oldest wait -")
        held = sum(s.held for s in fresh)
        if held:
            parts.append(f"{held} outcomes HELD (the daemon's own trouble: see its log)")
    elif view.status is not None and view.status.oldest_waiting_age is not None:
        age = short_duration(view.status.oldest_waiting_age)
        parts.append(f"oldest waiting job submitted {age} ago")
    return parts


def _counts(view: TopView) -> list[str]:
    if view.status is None:
        return ["jobs ?"]
    counts = view.status.counts
    return [f"{state} {counts.get(state, 0)}" for state in SHOWN_STATES]


def _footer(view: TopView, filter_text: str, message: str, width: int) -> str:
    if message:
        return cut(clean(message), width)
    shown = f"[filter: {filter_text.strip()}, Esc clears]  " if filter_text.strip() else ""
    refresh = f"  (every {seconds(view.interval)})"
    for text in (f"{shown}{KEYS}{refresh}", f"{shown}{KEYS}", f"{shown}{KEYS_SHORT}"):
        if len(text) <= width:
            return text
    return cut(text, width)


@dataclass
class _Section:
    title: str
    columns: str
    lines: list[str]  # one per row, the marker first
    selected: int  # index into lines, -1: not in this section
    empty: str


def _body(
    view: TopView, rows: list[Row], chosen: int, width: int, budget: int, filtered: bool
) -> list[str]:
    if budget <= 0:
        return []
    running = [row for row in rows if isinstance(row, RunningRow)]
    failures = [row for row in rows if isinstance(row, FailureRow)]
    sections = [
        _running_section(view, running, chosen if chosen < len(running) else -1, width, filtered),
        _failures_section(view, failures, chosen - len(running), width, filtered),
    ]
    if budget == 1:
        return [f"running {len(running)}  failed {len(failures)}  (a taller window shows them)"]
    return _lay_out(sections, budget)


def _lay_out(sections: list[_Section], budget: int) -> list[str]:
    """Fit both tables in ``budget`` lines: blank lines go first, then column headings,
    then rows (split between the tables, each scrolled to keep the selection in view)."""
    wanted = [max(1, len(section.lines)) for section in sections]
    for spacing, headings in ((1, True), (0, True), (0, False)):
        room = budget - len(sections) * (1 + spacing + headings)  # blank, title, headings
        if room >= sum(wanted) or not headings:
            break
    room = max(0, room)
    first = min(wanted[0], max(room - wanted[1], room // 2, 1 if room else 0))
    counts = [first, room - first]
    out: list[str] = []
    for section, count in zip(sections, counts, strict=True):
        if spacing:
            out.append("")
        out.extend(_section_lines(section, count, headings))
    return out[:budget]


def _section_lines(section: _Section, count: int, headings: bool) -> list[str]:
    total = len(section.lines)
    start = 0
    if section.selected >= count > 0:
        start = section.selected - count + 1
    shown = section.lines[start : start + count]
    title = section.title
    if total and not shown:
        title += "  (no room for the rows: a taller window shows them)"
    elif len(shown) < total:
        title += f"  (rows {start + 1}-{start + len(shown)} of {total}: j/k scroll)"
    lines = [title]
    if headings and section.lines:  # an empty table needs no column names
        lines.append(section.columns)
    if not section.lines and count:
        lines.append(f"  {section.empty}")
    lines.extend(shown)
    return lines


def _marker(index: int, selected: int) -> str:
    return "> " if index == selected else "  "


def _fit(natural: int, wanted: int, least: int) -> int:
    """A column of ``natural`` width cut to ``wanted``, but not below ``least``."""
    return max(min(natural, wanted), min(natural, least))


def _running_section(
    view: TopView, rows: list[RunningRow], selected: int, width: int, filtered: bool
) -> _Section:
    """ID, ELAPSED/TIMEOUT, TRY, CLASS.METHOD (and HOST with several daemons): what a narrow
    screen cuts off comes last."""
    hosts = len({row.host for row in rows}) > 1
    times = [_elapsed_text(view, row) for row in rows]
    time_w = max([len("ELAPSED/TIMEOUT"), *map(len, times)])
    host_w = max([4, *(len(row.host) for row in rows)]) + 2 if hosts else 0
    id_w, target_w = _id_target_widths(rows, width - (2 + 2 + time_w + 2 + 3 + 2) - host_w)
    columns = f"  {'ID':<{id_w}}  {'ELAPSED/TIMEOUT':<{time_w}}  TRY  {'CLASS.METHOD':<{target_w}}"
    columns += "  HOST" if hosts else ""
    lines = []
    for index, (row, elapsed) in enumerate(zip(rows, times, strict=True)):
        line = (
            f"{_marker(index, selected)}{cut_left(row.job_id, id_w):<{id_w}}"
            f"  {elapsed:<{time_w}}  {row.attempt:>3}  {cut_left(clean(row.target), target_w)}"
        )
        if hosts:
            line = f"{line:<{len(line) + target_w - len(cut_left(clean(row.target), target_w))}}"
            line += f"  {clean(row.host)}"
        lines.append(line)
    total = len(view.running)
    count = f"{len(rows)} of {total}" if filtered else str(total)
    source = "" if view.running_from_snapshots else "  (read from the jobs: no stats, no timeouts)"
    empty = "(none match the filter)" if filtered and total else "(none)"
    return _Section(f"RUNNING {count}{source}", columns.rstrip(), lines, selected, empty)


def _elapsed_text(view: TopView, row: RunningRow) -> str:
    elapsed = short_duration(view.now - row.started_at)
    if row.timeout is None:
        return f"{elapsed}/?"
    if row.timeout <= 0:
        return f"{elapsed}/no limit"
    over = "  OVER" if view.now - row.started_at > row.timeout else ""
    return f"{elapsed}/{short_duration(row.timeout)}{over}"


def _failures_section(
    view: TopView, rows: list[FailureRow], selected: int, width: int, filtered: bool
) -> _Section:
    """ID, AGE, TRIES, CLASS.METHOD, LAST ERROR (which keeps a third of a narrow screen)."""
    error_w = min(30, width // 4)
    id_w, target_w = _id_target_widths(rows, width - (2 + 2 + 6 + 2 + 5 + 2 + 2) - error_w)
    columns = f"  {'ID':<{id_w}}  {'AGE':<6}  TRIES  {'CLASS.METHOD':<{target_w}}  LAST ERROR"
    lines = []
    for index, row in enumerate(rows):
        error = clean(row.error) or "-"
        if row.rejected:
            error = f"rejected: {error}"
        lines.append(
            f"{_marker(index, selected)}{cut_left(row.job_id, id_w):<{id_w}}"
            f"  {short_duration(row.age):<6}  {row.attempts:>5}"
            f"  {cut_left(clean(row.target), target_w):<{target_w}}  {error}"
        )
    total = len(view.failures)
    count = f"{len(rows)} of {total}" if filtered else str(total)
    note = f", {view.failures_note}" if view.failures_note else ""
    empty = "(none match the filter)" if filtered and total else "(none)"
    return _Section(f"FAILED {count}  (newest first{note})", columns, lines, selected, empty)


def _id_target_widths(rows: Sequence[Row], room: int) -> tuple[int, int]:
    """Widths of the id and class.method columns in ``room`` characters: each its longest
    value if both fit, else the id gives way first (its end is kept: the random part),
    then class.method, down to 12 each."""
    id_w = max([2, *(len(row.job_id) for row in rows)])
    target_w = max([12, *(len(clean(row.target)) for row in rows)])
    if id_w + 2 + target_w <= room:
        return id_w, target_w
    id_w = _fit(id_w, room - 2 - target_w, 12)
    target_w = _fit(target_w, room - 2 - id_w, 12)
    return id_w, target_w


# -- the program --


class _Stop(Exception):
    """SIGTERM: leave the screen as it was found."""


class TerminalError(Exception):
    """curses cannot use this terminal (an unknown ``$TERM``...): one line for the user."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run_top(config: Config, interval: float = 2.0) -> int:
    """The curses program; returns the exit status (0 after ``q``, Ctrl-C or SIGTERM)."""
    catalog = open_catalog(config)
    program = _Program(catalog, config, place_of(config), interval)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        curses.wrapper(program.run)
    except (KeyboardInterrupt, _Stop):
        pass
    except curses.error as exc:  # the screen is already restored by curses.wrapper
        term = os.environ.get("TERM", "")
        raise TerminalError(f"cannot draw on this terminal (TERM={term!r}): {exc}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


class _Program:
    """The screen's state between keys: the view, the filter, the selection, the footer."""

    def __init__(self, catalog: Catalog, config: Config, place: str, interval: float) -> None:
        self.catalog = catalog
        self.config = config
        self.place = place
        self.interval = interval
        self.view = TopView(time.time(), place, interval)
        self.filter = ""
        self.selected = 0
        self.selected_id: str | None = None
        self.message = ""
        self.due = 0.0  # when to read again (monotonic)

    def run(self, screen: curses.window) -> None:
        with contextlib.suppress(curses.error):
            curses.curs_set(0)
        with contextlib.suppress(curses.error, AttributeError):
            curses.set_escdelay(25)  # Esc answers at once, not after a second
        while True:
            if time.monotonic() >= self.due:
                self.refresh()
            self.draw(screen)
            key = self.key(screen, self.due - time.monotonic())
            if key is None:
                continue
            self.message = ""
            if not self.act(screen, key):
                return

    def refresh(self) -> None:
        self.view = gather(self.catalog, self.place, time.time(), interval=self.interval)
        self.due = time.monotonic() + self.interval
        rows = visible_rows(self.view, self.filter)
        ids = [row.job_id for row in rows]
        if self.selected_id in ids:  # the selection stays on its job as rows come and go
            self.selected = ids.index(self.selected_id)
        self.select(self.selected)

    def select(self, index: int) -> None:
        rows = visible_rows(self.view, self.filter)
        self.selected = min(max(index, 0), max(len(rows) - 1, 0))
        self.selected_id = rows[self.selected].job_id if rows else None

    def selected_row(self) -> Row | None:
        rows = visible_rows(self.view, self.filter)
        return rows[self.selected] if 0 <= self.selected < len(rows) else None

    def draw(self, screen: curses.window, message: str | None = None) -> None:
        height, width = screen.getmaxyx()
        lines = render(
            self.view,
            width,
            height,
            filter_text=self.filter,
            selected=self.selected,
            message=self.message if message is None else message,
        )
        screen.erase()
        for number, line in enumerate(lines):
            _put(screen, number, line, _attribute(number, line, len(lines)))
        screen.refresh()

    @staticmethod
    def key(screen: curses.window, wait: float) -> str | int | None:
        """The next key, or None when ``wait`` seconds pass without one."""
        screen.timeout(max(0, int(wait * 1000)))
        try:
            return screen.get_wch()
        except curses.error:
            return None

    def act(self, screen: curses.window, key: str | int) -> bool:
        """Do what ``key`` asks; False to quit."""
        if key in ("q", "Q"):
            return False
        if key == "/":
            self.ask_filter(screen)
        elif key in (curses.KEY_UP, "k"):
            self.select(self.selected - 1)
        elif key in (curses.KEY_DOWN, "j"):
            self.select(self.selected + 1)
        elif key == curses.KEY_PPAGE:
            self.select(self.selected - 10)
        elif key == curses.KEY_NPAGE:
            self.select(self.selected + 10)
        elif key in ("\n", "\r", curses.KEY_ENTER):
            self.details(screen)
        elif key == "R":
            self.retry(screen)
        elif key == "\x1b" and self.filter:
            self.filter = ""
            self.select(0)
        return True

    def prompt(self, screen: curses.window, text: str) -> str | int:
        """Show ``text`` in the footer and wait for a key, refreshing the view meanwhile."""
        while True:
            self.draw(screen, text)
            key = self.key(screen, self.due - time.monotonic())
            if key is not None:
                return key
            self.refresh()

    def ask_filter(self, screen: curses.window) -> None:
        draft = self.filter
        while True:
            key = self.prompt(
                screen, f"filter (id or class.method): {draft}_   Enter applies, Esc cancels"
            )
            if key in ("\n", "\r", curses.KEY_ENTER):
                self.filter = draft.strip()
                self.select(0)
                return
            if key == "\x1b":
                return
            if key in (curses.KEY_BACKSPACE, "\x7f", "\b"):
                draft = draft[:-1]
            elif isinstance(key, str) and key.isprintable():
                draft += key

    def details(self, screen: curses.window) -> None:
        row = self.selected_row()
        if row is None:
            self.message = "no job selected"
            return
        _page(screen, row.job_id, details_lines(self.catalog, row.job_id))
        self.due = 0.0  # the job may have moved on while we read

    def retry(self, screen: curses.window) -> None:
        row = self.selected_row()
        if not isinstance(row, FailureRow):
            self.message = "R retries a failed job: select one in FAILED first"
            return
        refusal = retry_refusal(self.config)
        if refusal is not None:
            self.message = refusal
            return
        key = self.prompt(screen, f"retry {row.job_id} ({clean(row.target)})? y/n")
        if key not in ("y", "Y"):
            self.message = f"not retried: {row.job_id}"
            return
        self.message = retry_job(self.catalog, row.job_id)
        self.due = 0.0


def _attribute(number: int, line: str, count: int) -> int:
    if line.startswith("> "):
        return curses.A_REVERSE
    if number == 0 or line.startswith(("RUNNING", "FAILED", "! ")) or number == count - 1:
        return curses.A_BOLD
    return curses.A_NORMAL


def _put(screen: curses.window, row: int, text: str, attribute: int = 0) -> None:
    height, width = screen.getmaxyx()
    if row >= height:
        return
    with contextlib.suppress(curses.error):  # the bottom-right cell cannot be written
        screen.addnstr(row, 0, text, width, attribute)


def _page(screen: curses.window, title: str, lines: list[str]) -> None:
    """Show ``lines`` (wrapped to the screen), scrollable; any other key returns."""
    top = 0
    while True:
        height, width = screen.getmaxyx()
        wrapped = [part for line in lines for part in _wrap(line, max(width, 1))]
        room = max(height - 1, 1)
        top = min(max(top, 0), max(len(wrapped) - room, 0))
        screen.erase()
        for number, line in enumerate(wrapped[top : top + room]):
            _put(screen, number, line)
        end = min(top + room, len(wrapped))
        footer = f"{title}  lines {top + 1}-{end} of {len(wrapped)}"
        footer += "  j/k PgUp/PgDn scroll, any other key returns"
        _put(screen, height - 1, cut(footer, width), curses.A_BOLD)
        screen.refresh()
        key = _Program.key(screen, 3600)
        if key in (curses.KEY_DOWN, "j"):
            top += 1
        elif key in (curses.KEY_UP, "k"):
            top -= 1
        elif key in (curses.KEY_NPAGE, " "):
            top += room
        elif key == curses.KEY_PPAGE:
            top -= room
        elif key is not None and key != curses.KEY_RESIZE:
            return


def _wrap(line: str, width: int) -> list[str]:
    return [line[start : start + width] for start in range(0, len(line), width)] or [""]


def details_lines(catalog: Catalog, job_id: str) -> list[str]:
    """What ``spoold show ID`` prints, as lines with their control characters made visible."""
    buffer = io.StringIO()
    try:
        stored = catalog.find(job_id)
        with contextlib.redirect_stdout(buffer):
            cli_output.show(stored, as_json=False)
    except CatalogError as exc:
        return [f"cannot show {job_id}: {exc}"]
    except OSError as exc:
        return [f"cannot show {job_id}: {describe_os_error(exc)}"]
    return [_visible(line) for line in buffer.getvalue().splitlines()]


def _visible(line: str) -> str:
    return "".join("?" if _is_control(char) and char != "\t" else char for char in line).replace(
        "\t", "    "
    )


def retry_refusal(config: Config) -> str | None:
    """Why this user may not retry on this spool, or None. The file spool asks the
    filesystem (retry writes incoming/ and removes the record from failed/); Redis
    decides when asked, so there it is always None."""
    if config.spool.backend == "redis":
        return None
    spool = Spool(config.spool.dir)
    for state in ("incoming", "failed"):
        folder = spool.folder(state)
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"you may not retry here: {folder} is not writable by you (uid {os.getuid()})"
    return None


def retry_job(catalog: Catalog, job_id: str) -> str:
    """Retry one failed job; the outcome in one line."""
    try:
        outcome = catalog.retry([job_id])
    except CatalogError as exc:
        return f"retry failed: {exc}"
    except OSError as exc:
        return f"retry failed: {describe_os_error(exc)}"
    if outcome.errors:
        return f"retry failed: {'; '.join(outcome.errors)}"
    return f"retried {', '.join(outcome.retried)}: it waits in incoming again"


# -- status --watch --


def watch_status(print_round: Callable[[], None], catalog: Catalog, interval: float) -> int:
    """Print ``spoold status`` every ``interval`` seconds under a timestamp line until
    Ctrl-C or SIGTERM (exit status 0). A round the backend cannot answer says so and
    the next one tries again."""
    stream = sys.stdout
    handlers = {signum: signal.signal(signum, _stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        first = True
        while True:
            if not first:
                print(file=stream)
            first = False
            _watch_round(print_round, catalog, stream)
            stream.flush()
            time.sleep(interval)
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _watch_round(print_round: Callable[[], None], catalog: Catalog, stream: TextIO) -> None:
    now = time.time()
    stamp = datetime.fromtimestamp(now).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    print(f"--- {stamp} ---", file=stream)
    errors: list[str] = []
    _part(errors, print_round)
    snapshots = _part(errors, catalog.stats) or []
    summary = stats_summary(snapshots, now)
    if summary is not None:
        print(summary, file=stream)
    for error in dict.fromkeys(errors):
        print(f"error      {clean(error)}", file=stream)
