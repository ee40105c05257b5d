"""The spool on disk: its six folders, their listing, and the one-daemon lock.

The disk is the truth. A job is ``<id>.json`` in exactly one of the state
folders; this module names the folders and lists what is in them, and
``fsio`` does every write and move.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spoold.fsio import TEMP_PREFIX

STATES = ("tmp", "incoming", "scheduled", "active", "done", "failed")
WAITING_STATES = ("incoming", "scheduled", "active")
RECORD_STATES = ("done", "failed")
LOCK_NAME = ".spoold.lock"

# Folder modes: submitters (group members) may create files in tmp/ and
# incoming/; records are readable by the daemon's group only. The sticky bit
# on tmp/ stops one submitter from deleting another's half-written file.
FOLDER_MODES = {
    "tmp": 0o3770,
    "incoming": 0o2770,
    "scheduled": 0o2750,
    "active": 0o2750,
    "done": 0o2750,
    "failed": 0o2750,
}


@dataclass(frozen=True)
class Spool:
    """A spool root and the paths inside it."""

    root: Path

    def folder(self, state: str) -> Path:
        return self.root / state

    def path(self, state: str, name: str) -> Path:
        return self.root / state / name

    def create(self) -> list[Path]:
        """Create the root and any missing state folder; return what was made."""
        made: list[Path] = []
        if not self.root.exists():
            self.root.mkdir(parents=True, mode=0o2755)
            made.append(self.root)
        for state in STATES:
            folder = self.folder(state)
            if not folder.exists():
                folder.mkdir(mode=0o700)
                os.chmod(folder, FOLDER_MODES[state])  # mkdir's mode is masked by the umask
                made.append(folder)
        return made

    def job_names(self, state: str) -> list[str]:
        """Names of job files in a state folder, oldest id first."""
        return sorted(self._scan_names(state))

    def _scan_names(self, state: str) -> Iterator[str]:
        try:
            with os.scandir(self.folder(state)) as entries:
                for entry in entries:
                    if is_job_name(entry.name):
                        yield entry.name
        except FileNotFoundError:
            return

    def exists(self, state: str, name: str) -> bool:
        return os.path.lexists(self.path(state, name))

    def remove_own_temp_files(self) -> list[Path]:
        """Delete the temporary files a crashed daemon left in its own folders."""
        removed = []
        for state in ("scheduled", "active", "done", "failed"):
            for entry in _entries(self.folder(state)):
                if entry.name.startswith(TEMP_PREFIX):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
        return removed

    def remove_stale_client_files(self, max_age: float, now: float | None = None) -> list[Path]:
        """Delete files a client left in tmp/ longer than ``max_age`` seconds ago."""
        cutoff = (time.time() if now is None else now) - max_age
        removed = []
        for entry in _entries(self.folder("tmp")):
            info = entry.stat(follow_symlinks=False)
            if info.st_mtime < cutoff and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        return removed


def is_job_name(name: str) -> bool:
    """A name the daemon acts on: not a dotfile, ends in ``.json``."""
    return not name.startswith(".") and name.endswith(".json") and len(name) > len(".json")


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


class SpoolLocked(Exception):
    """Another daemon holds this spool."""


class SpoolLock:
    """An flock on ``<spool>/.spoold.lock`` holding the daemon's pid.

    The kernel drops the lock when its holder dies, even by SIGKILL, so a
    stale lock file never blocks a restart.
    """

    def __init__(self, spool: Spool) -> None:
        self.path = spool.root / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = read_lock_pid(self.path)
            raise SpoolLocked(
                f"another spoold (pid {pid or '?'}) is running on this spool"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_lock_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None


def running_daemon_pid(spool: Spool) -> int | None:
    """The pid of the daemon holding the spool lock, or None if none runs."""
    path = spool.root / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return read_lock_pid(path) or -1
        raise
    finally:
        os.close(fd)
    return None
