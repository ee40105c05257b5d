"""Sweeping: kill what an attempt left behind, even outside its process group.

Killing an attempt's process group catches its ordinary children, but a
descendant can leave the group (``setsid``, a double fork). The launcher is
a child subreaper, so such a process becomes the launcher's own child as
soon as its parent dies; this module finds those children and ends them.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from spoold.worker import ATTEMPT_MARK


def sweep_escaped(running_leaders: set[int]) -> bool:
    """Kill and reap processes that outlived their attempt; True while some remain.

    The launcher is a child subreaper, so whatever an attempt leaves behind,
    even after ``setsid``, becomes the launcher's child once its parent dies.
    Such an orphan carries its attempt's mark in its environment: it may live
    while that attempt runs, and is killed (with its process group) after.
    An orphan without a mark hid it on purpose and is killed at once. An
    unreaped child keeps its pid, so signalling it cannot hit a stranger.
    """
    remaining = False
    for pid in _own_children():
        if pid in running_leaders:
            continue
        if _attempt_leader(pid) not in running_leaders:
            _kill_orphan(pid)
        if not _reaped(pid):
            remaining = True
    return remaining


def _own_children() -> list[int]:
    me = os.getpid()
    try:
        text = Path(f"/proc/{me}/task/{me}/children").read_text()
    except OSError:
        return []
    return [int(pid) for pid in text.split()]


def _attempt_leader(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(ATTEMPT_MARK.encode() + b"="):
            leader = entry.rpartition(b"/")[2]
            return int(leader) if leader.isdigit() else None
    return None


def _kill_orphan(pid: int) -> None:
    with contextlib.suppress(OSError):
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _reaped(pid: int) -> bool:
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid
