"""Badly behaved job classes (tests/test_bad_jobs.py): they hog memory or CPU, fork trees,
escape their process group, ignore SIGTERM or break their own file descriptors.

Each one writes the pids of every process it makes into a file (one JSON line per process,
one ``write`` each, in append mode) before it misbehaves, so the test can check from outside
that none of them survived the attempt. A forked helper never returns into the worker: it
always leaves with ``os._exit``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MB = 1 << 20
NAP = 300.0  # how long a leftover process sleeps: far longer than any test waits


def append_line(path: str, **fields: Any) -> None:
    """Append one JSON line with the fields plus the time, pid, process group and session."""
    line = {"time": time.time(), "pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0)}
    data = (json.dumps({**line, **fields}) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def count_lines(path: str, role: str) -> int:
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if line.endswith("}") and json.loads(line)["role"] == role)


def wait_for_lines(path: str, role: str, count: int, timeout: float = 10.0) -> None:
    """Block until ``count`` lines with ``role`` are in ``path`` (the helpers have started)."""
    deadline = time.monotonic() + timeout
    while count_lines(path, role) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {count_lines(path, role)} of {count} {role} lines")
        time.sleep(0.01)


def fork(body: Callable[[], object]) -> int:
    """Run ``body`` in a forked child that never returns from here; return the child's pid."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def nap() -> None:
    time.sleep(NAP)


class Hog:
    """Memory: grows without bound, or takes one fixed block."""

    def run(self, progress: str, step_mb: int = 10, cap_mb: int = 2048) -> str:
        """Append ``step_mb`` blocks (every byte written) until allocation fails.

        ``cap_mb`` is only a safety stop so that a missing limit fails the test instead of
        the machine: reaching it means nothing stopped the job.
        """
        append_line(progress, role="job", mb=0)
        blocks = []
        while len(blocks) * step_mb < cap_mb:
            blocks.append(bytearray(b"\x01") * (step_mb * MB))
            append_line(progress, role="progress", mb=len(blocks) * step_mb)
        return f"allocated {cap_mb} MB and nothing stopped it"

    def once(self, mb: int) -> int:
        """Allocate (and write) one block of ``mb`` MB, then return its size in MB."""
        block = bytearray(b"\x01") * (mb * MB)
        return len(block) // MB


class Spin:
    """CPU: records its pid, then spins forever without a system call."""

    def run(self, pidfile: str) -> None:
        append_line(pidfile, role="job")
        while True:
            pass


class Tree:
    """Forks ``fanout`` children, each forking ``fanout`` more, ``depth`` levels deep, all
    sleeping; waits until every one has recorded its pid, then sleeps ``seconds`` and returns.
    """

    def run(self, pidfile: str, depth: int = 3, fanout: int = 3, seconds: float = 0.0) -> int:
        append_line(pidfile, role="job")
        total = sum(fanout**level for level in range(1, depth + 1))
        for _ in range(fanout):
            fork(lambda: self._node(pidfile, 1, depth, fanout))
        wait_for_lines(pidfile, "node", total)
        time.sleep(seconds)
        return total

    def _node(self, pidfile: str, level: int, depth: int, fanout: int) -> None:
        append_line(pidfile, role="node", level=level)
        if level < depth:
            for _ in range(fanout):
                fork(lambda: self._node(pidfile, level + 1, depth, fanout))
        nap()


class Mute:
    """Breaks its own standard streams or every descriptor, then returns normally."""

    def close_stdio(self, value: Any) -> Any:
        sys.stdout.flush()
        sys.stderr.flush()
        os.close(1)
        os.close(2)
        return value

    def devnull_stdio(self, value: Any) -> Any:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        print("into the void")
        print("into the void too", file=sys.stderr)
        return value

    def close_all_fds(self, value: Any) -> Any:
        os.closerange(0, 1025)  # the report pipe too
        return value


class Escape:
    """Daemonizes a grandchild the classic way: fork, fork again, ``setsid``; the middle child
    exits at once, so the grandchild is in a session and group of its own, reparented away
    from the job. The grandchild sleeps in Python (``execs=False``: a forked copy, as
    python-daemon makes) or execs ``sleep`` (``execs=True``). The job records it, then sleeps
    ``seconds`` and returns."""

    def run(self, pidfile: str, seconds: float = 0.0, execs: bool = False) -> str:
        append_line(pidfile, role="job")
        middle = fork(lambda: fork(self._escaped(pidfile, execs)))
        os.waitpid(middle, 0)
        wait_for_lines(pidfile, "escaped", 1)
        time.sleep(seconds)
        return "escaped"

    @staticmethod
    def _escaped(pidfile: str, execs: bool) -> Callable[[], None]:
        def body() -> None:
            os.setsid()
            append_line(pidfile, role="escaped")
            if execs:
                os.execvp("sleep", ["sleep", str(int(NAP))])
            nap()

        return body


class Stubborn:
    """Ignores SIGTERM (and so does the child it forks), then sleeps ``seconds``."""

    def run(self, pidfile: str, seconds: float = 60.0) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        append_line(pidfile, role="job")
        fork(lambda: (append_line(pidfile, role="child"), nap()))
        wait_for_lines(pidfile, "child", 1)
        time.sleep(seconds)
