"""Job classes the daemon tests run (found through the config's ``python_path``).

Each one leaves evidence a test can check from outside: a line appended to
a file, a marker file, a pid. Lines are one JSON object each, written with
a single ``write`` in append mode so concurrent attempts do not interleave.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


def append_line(path: str, **fields: Any) -> None:
    """Append one JSON line with the fields plus the time and pid."""
    line = json.dumps({"time": time.time(), "pid": os.getpid(), **fields}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def count_lines(path: str) -> int:
    try:
        return len(Path(path).read_text().splitlines())
    except FileNotFoundError:
        return 0


class Noop:
    """Does nothing."""

    def run(self) -> None:
        return None


class Recorder:
    """Records that it started (time, pid, label) in ``log``; optionally sleeps."""

    def run(self, log: str, label: str = "", sleep: float = 0.0) -> str:
        append_line(log, label=label)
        if sleep:
            time.sleep(sleep)
        return label


class Span:
    """Records its start and its end (label, pid) in ``log``, sleeping ``sleep`` between:
    from outside, which attempts overlapped."""

    def run(self, log: str, label: str = "", sleep: float = 0.0) -> str:
        append_line(log, label=label, event="start")
        if sleep:
            time.sleep(sleep)
        append_line(log, label=label, event="end")
        return label


class Heir:
    """Records what it was told of its parent ($SPOOLD_PARENT, a follow-up's), and its id."""

    def run(self, log: str, label: str = "") -> str:
        told = os.environ.get("SPOOLD_PARENT")
        parent = json.loads(told) if told is not None else None
        append_line(log, label=label, parent=parent, job=os.environ.get("SPOOLD_JOB_ID"))
        return label


class Flaky:
    """Fails ``failures`` times, then succeeds; each attempt is a line in ``counter``."""

    def run(self, counter: str, failures: int) -> int:
        attempt = count_lines(counter) + 1
        append_line(counter, attempt=attempt)
        if attempt <= failures:
            raise RuntimeError(f"flaky failure {attempt} of {failures}")
        return attempt


class Sleeper:
    """Touches ``started`` (if given), then sleeps ``seconds``."""

    def run(self, seconds: float, started: str = "") -> float:
        if started:
            append_line(started)
        time.sleep(seconds)
        return seconds


class SlowFirst:
    """Records each attempt in ``log``; the first attempt sleeps ``seconds``, later ones do not."""

    def run(self, log: str, seconds: float) -> int:
        attempt = count_lines(log) + 1
        append_line(log, attempt=attempt)
        if attempt == 1:
            time.sleep(seconds)
        return attempt


class Boom:
    """Always raises ValueError."""

    def run(self, what: str = "boom") -> None:
        raise ValueError(what)


class SelfKill:
    """Kills its own process with a signal."""

    def segfault(self) -> None:
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(10)

    def sigkill(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)


class HardExit:
    """Leaves with os._exit(3), without any report."""

    def run(self) -> None:
        os._exit(3)


class Spawner:
    """Starts a grandchild ``sleep 300``, writes its pid to ``pidfile``, then sleeps."""

    def run(self, pidfile: str, seconds: float = 60.0) -> None:
        child = subprocess.Popen(["sleep", "300"])
        append_line(pidfile, child=child.pid)
        time.sleep(seconds)


class Static:
    """A staticmethod and a classmethod, which must be called on the class."""

    tag = "class attribute"

    def __init__(self, required: str) -> None:  # instantiating it would fail
        self.required = required

    @staticmethod
    def static_run(a: Any, b: Any) -> list[Any]:
        return ["static", a, b]

    @classmethod
    def class_run(cls, x: Any) -> list[Any]:
        return [cls.__name__, cls.tag, x]


class Echo:
    """Returns the positional and keyword arguments it got."""

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": list(args), "kwargs": kwargs}


class Keywords:
    """Takes keyword parameters with defaults."""

    def run(self, name: str, count: int = 1, *, loud: bool = False) -> str:
        text = " ".join([name] * count)
        return text.upper() if loud else text


class SetResult:
    """Returns a set, which JSON cannot hold."""

    def run(self) -> set[int]:
        return {1, 2, 3}


class Rendezvous:
    """Creates ``mine``, then waits (up to ``timeout``) until ``other`` exists."""

    def run(self, mine: str, other: str, timeout: float = 20.0) -> str:
        Path(mine).touch()
        deadline = time.monotonic() + timeout
        while not Path(other).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{other} never appeared: the jobs did not run at once")
            time.sleep(0.02)
        return "met"


class Partial:
    """A class with one allowed method and one that is not on the allowlist."""

    def allowed(self) -> str:
        return "allowed"

    def forbidden(self, marker: str) -> str:
        Path(marker).touch()
        return "forbidden"


CALLS: list[int] = []  # module state: what a reused worker (max_jobs_per_process > 1) keeps
KEPT: list[bytearray] = []


class Counter:
    """Counts its calls in a module global and records them with its pid."""

    def run(self, log: str) -> int:
        CALLS.append(len(CALLS) + 1)
        append_line(log, calls=len(CALLS))
        return len(CALLS)


class Keeper:
    """Keeps ``mb`` MB (every byte written) alive in a module global after it returns."""

    def run(self, log: str, mb: int) -> int:
        KEPT.append(bytearray(b"\x01") * (mb * 1024 * 1024))
        append_line(log, kept_mb=mb)
        return os.getpid()


class Gated:
    """Records its start in ``log``, waits (up to ``timeout``) until ``gate`` exists, then
    returns ``size`` characters, or raises on its first attempt if ``fail_first``."""

    def run(
        self, log: str, gate: str, size: int, fail_first: bool = False, timeout: float = 60.0
    ) -> str:
        attempt = sum(line.get("gate") == gate for line in _lines(log)) + 1
        append_line(log, gate=gate, attempt=attempt)
        deadline = time.monotonic() + timeout
        while not Path(gate).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{gate} never appeared")
            time.sleep(0.02)
        if fail_first and attempt == 1:
            raise RuntimeError("first attempt fails on purpose")
        return "x" * size


def _lines(path: str) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines()]
    except FileNotFoundError:
        return []
