"""The daemon's pidfile, held with ``flock`` for the daemon's whole life.

The kernel drops the lock when its holder dies, even by SIGKILL, so a stale
pidfile is simply locked again at the next start, and "locked" is what
"running" means. (python-daemon's own lockfile-based pidfile stays stale
after a SIGKILL and blocks every restart.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


class DetachError(Exception):
    """A detached start or a stop that did not work, worded in one line."""


@dataclass(frozen=True)
class PidfileState:
    """What a pidfile says: ``running`` is true while its flock is held."""

    path: Path
    exists: bool
    running: bool
    pid: int | None

    def describe(self) -> str:
        if not self.exists:
            return f"not running (no pidfile {self.path})"
        if not self.running:
            return f"not running (stale pidfile {self.path})"
        return f"running (pid {self.pid or '?'}, pidfile {self.path})"


class FlockPidfile:
    """A pidfile held with ``flock`` for as long as the process lives (a context manager).

    ``DaemonContext`` enters it after its forks, so the pid written is the
    daemon's own. The path is checked to still name the locked file after
    locking, because a stopping daemon unlinks it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> FlockPidfile:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Lock the pidfile and write our pid; DetachError if a live process holds it."""
        for _ in range(100):  # only loops while another daemon unlinks it under us
            fd = _open_locked(self.path)
            if _names_fd(self.path, fd):
                break
            os.close(fd)
        else:
            raise DetachError(f"{self.path} keeps being replaced; is another spoold starting?")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        """Remove the pidfile (while still holding the lock), then drop the lock."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if _names_fd(self.path, self.fd):
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def _open_locked(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise DetachError(f"cannot open pidfile {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DetachError(held_message(pidfile_state(path))) from None
    return fd


def held_message(state: PidfileState) -> str:
    return f"already running: pid {state.pid or '?'} holds the pidfile {state.path}"


def _names_fd(path: Path, fd: int) -> bool:
    """True if ``path`` still names the file open at ``fd``."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (info.st_dev, info.st_ino) == (mine.st_dev, mine.st_ino)


def pidfile_state(path: Path) -> PidfileState:
    """Read a pidfile without creating it; ``running`` means another process holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return PidfileState(path, exists=False, running=False, pid=None)
    except OSError as exc:
        raise DetachError(f"cannot read pidfile {path}: {exc.strerror}") from None
    try:
        running = _is_locked(fd)
        pid = _read_pid(fd)
    finally:
        os.close(fd)
    return PidfileState(path, exists=True, running=running, pid=pid)


def _is_locked(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
