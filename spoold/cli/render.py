"""``render``: a pure function from a ``TopView`` and a screen size to the lines
``spoold top`` draws, which the tests call with hand-built views.

Everything drawn is plain ASCII, and text that comes from jobs (errors, tracebacks,
class names of rejected files) has its control characters replaced, so a job cannot
send escape sequences to the operator's terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from spoold.cli.view import (
    FailureRow,
    Row,
    RunningRow,
    TopView,
    finished_rate,
    rate_text,
    short_duration,
)
from spoold.durations import seconds

SHOWN_STATES = ("incoming", "scheduled", "active", "done", "failed")
KEYS = "q quit  / filter  j/k move  Enter details  R retry"
KEYS_SHORT = "q quit  / filter  j/k  Enter  R retry"  # a narrow screen's footer


def clean(text: str) -> str:
    """One line of plain text: control characters (escapes, newlines, C1) become spaces."""
    return "".join(" " if is_control(char) else char for char in text).strip()


def is_control(char: str) -> bool:
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
    shown = [f"{state} {counts.get(state, 0)}" for state in SHOWN_STATES]
    held_back = sum(view.status.held_back.values())
    if held_back:  # ready jobs whose class is at its [limits]
        shown.append(f"held back {held_back} (class limits)")
    return shown


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
    hosts = len({row.host for row in rows if row.host}) > 1  # "": claimed since the snapshot
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
    seconds = row.elapsed(view.now)
    elapsed = short_duration(seconds)
    if row.timeout is None:
        return f"{elapsed}/?"
    if row.timeout <= 0:
        return f"{elapsed}/no limit"
    over = "  OVER" if seconds > row.timeout else ""
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
