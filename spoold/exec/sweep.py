"""Sweeping: kill what an attempt left behind, even outside its process group.

Killing an attempt's process group catches its ordinary children, but a
descendant can leave the group (``setsid``, a double fork). The launcher is
a child subreaper, and so is each attempt's first process: such a process
is adopted by its attempt while that runs and by the launcher after; this
module makes a process a subreaper, and finds its adopted children and ends
them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

_PR_SET_CHILD_SUBREAPER = 36
# The C function itself, looked up here, in the launcher, as this module is imported.
# Looked up in a fresh child instead, ctypes builds the function object there (Python
# code of ctypes' own, whose pages are copied): about 95 us and 38 page faults more per
# attempt, measured in forked children (docs/PERFORMANCE.md). worker.py calls it too.
prctl = ctypes.CDLL(None, use_errno=True).prctl


def become_subreaper() -> None:
    """Adopt what this process's descendants orphan (even after ``setsid``), in init's stead.

    That is what lets the sweep find them: they become this process's children.
    """
    prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def sweep_escaped(running_leaders: set[int]) -> bool:
    """Kill and reap the launcher's children that are not attempts; True while some remain.

    Each attempt's first process is itself a child subreaper, so while it
    runs it adopts whatever its descendants orphan, even across ``setsid``.
    Only when it exits do those processes pass up to the launcher, the next
    subreaper. So a child of the launcher that is not a running attempt is
    what an ended attempt left behind, and is killed with its process group.
    An unreaped child keeps its pid, so signalling it cannot hit a stranger.
    """
    remaining = False
    for pid in _own_children():
        if pid in running_leaders:
            continue
        _kill_orphan(pid)
        if not _reaped(pid):
            remaining = True
    return remaining


def _own_children() -> list[int]:
    # Read after every attempt, by the launcher and by each reused worker: plain
    # os calls, as a Python file object would add four system calls to the two.
    me = os.getpid()
    try:
        fd = os.open(f"/proc/{me}/task/{me}/children", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return []
    finally:
        os.close(fd)
    return [int(pid) for pid in b"".join(chunks).split()]


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
