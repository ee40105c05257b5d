"""Test-only fault points: make the daemon die, or lose its watch, at a chosen step.

``SPOOLD_FAULT=<point>[:<n>]`` makes the daemon SIGKILL itself the n-th time
(default: the first) it passes ``<point>``, exactly as a crash or a power
cut would stop it there. ``SPOOLD_FAULT=no_watch`` runs without the inotify
watch, on rescans alone; ``SPOOLD_FAULT=broken_listener`` adds an event
listener that raises in every hook (core/events.py).
``SPOOLD_TEST_SCHEDULE_OFFSET=<seconds>`` moves the clock that schedules fire
by (and only that one), for tests of catch-up and daylight-saving days. Unset
(always, outside tests), a point costs one comparison. The points and what each proves are listed in
docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import signal
import time

POINTS = (
    "after_claim",  # a waiting file was renamed into active/, nothing started yet
    "after_launch",  # the attempt was handed to the launcher
    "after_marker",  # active/<id>.to-<state> is written, active/<id>.json still there
    "after_unlink",  # active/<id>.json is gone, the marker not yet moved out
    "after_move",  # the marker was renamed to its destination, folder not yet fsynced
    "in_cleaning_claim",  # a submitted file with daemon-owned fields is claimed, not cleaned
    "in_rename_fallback",  # a move's link is made, its unlink not (no RENAME_NOREPLACE)
    "watcher_dies",  # not a crash: the watch on incoming/ stops (the daemon must notice)
    "after_firing",  # a schedule's firing is in incoming/, its mark not yet moved to it
    # The Redis backend's:
    "after_redis_submit",  # a file from incoming/ is in Redis, the file not yet removed
    "after_redis_adopt",  # ... taken into Redis already claimed (refused, or to wait)
)

_name, _, _count = os.environ.get("SPOOLD_FAULT", "").partition(":")
# Seconds added to the clock the schedules are fired by, so that a test can be at
# any date (a day the clocks change, a week later) without waiting for it; or "@T":
# the clock reads T (Unix seconds) when the scheduler first looks, and runs on from
# there, so that a daemon slow to start under load misses no firing set just after T.
SCHEDULE_CLOCK_OFFSET = "SPOOLD_TEST_SCHEDULE_OFFSET"
_remaining = int(_count or 1) if _name else 0


def reached(point: str) -> bool:
    """True (once) when ``point`` is the armed fault and its turn has come."""
    global _remaining  # noqa: PLW0603 - one process-wide countdown, set from the environment
    if point != _name or _remaining <= 0:
        return False
    _remaining -= 1
    return _remaining == 0


def crash_point(point: str) -> None:
    """Die here by SIGKILL if this is the armed fault point."""
    if reached(point):
        os.kill(os.getpid(), signal.SIGKILL)


def watch_disabled() -> bool:
    return _name == "no_watch"


def broken_listener() -> bool:
    return _name == "broken_listener"


def schedule_clock_offset() -> float:
    """``$SPOOLD_TEST_SCHEDULE_OFFSET`` seconds (0 unset, always outside tests); for "@T",
    T minus the time now."""
    start = schedule_clock_start()
    if start is not None:
        return start - time.time()
    try:
        return float(os.environ.get(SCHEDULE_CLOCK_OFFSET, "0"))
    except ValueError:
        return 0.0


def schedule_clock_start() -> float | None:
    """T, where ``$SPOOLD_TEST_SCHEDULE_OFFSET`` is "@T": what the schedule clock reads at
    the scheduler's first look (None otherwise, always outside tests)."""
    said = os.environ.get(SCHEDULE_CLOCK_OFFSET, "")
    if not said.startswith("@"):
        return None
    try:
        return float(said[1:])
    except ValueError:
        return None
