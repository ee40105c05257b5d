"""``spoold top``: the curses program, a loop that gathers a ``TopView`` every
``interval`` seconds, draws it with ``render``, and reads keys (filter, select,
details, retry).

Only the standard library's ``curses``: an ops tool should start in milliseconds and
install nothing (docs: ../shared/notes/observability.md §5).
"""

from __future__ import annotations

import contextlib
import curses
import io
import os
import signal
import time

from spoold.backends import open_catalog
from spoold.backends.files.spool import Spool
from spoold.cli import output as cli_output
from spoold.cli.render import clean, cut, is_control, render, visible_rows
from spoold.cli.view import (
    FailureRow,
    Row,
    Stopped,
    TopView,
    gather,
    place_of,
    stop_on_signal,
)
from spoold.config import Config
from spoold.core.backend import Catalog, CatalogError
from spoold.errors import describe_os_error

# -- the program --


class TerminalError(Exception):
    """curses cannot use this terminal (an unknown ``$TERM``...): one line for the user."""


def run_top(config: Config, interval: float = 2.0) -> int:
    """The curses program; returns the exit status (0 after ``q``, Ctrl-C or SIGTERM)."""
    catalog = open_catalog(config)
    program = _Program(catalog, config, place_of(config), interval)
    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        curses.wrapper(program.run)
    except (KeyboardInterrupt, Stopped):
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
    return "".join("?" if is_control(char) and char != "\t" else char for char in line).replace(
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
